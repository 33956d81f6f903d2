"""Has a job reached its plateau? The stated criterion every study gates its cells on.

A study trains each arm (pre-training, from-scratch, fine-tuning) for a fixed number of steps; an
arm stopped while its loss still falls measures the budget, not the method. Each job's stage is
judged from its own `metrics.jsonl` by a `Criterion`, written in the study's preset before the
run (`[convergence.pretrain]`, `[convergence.finetune]`):

    series      "eval_loss": the held-out loss at each evaluation (the stage's `heldout-*` split,
                which no study reports), "val_loss": the validation loss at each evaluation (the
                stage's `validation_dataset`: a held-out sample of a dataset-trained stage's own
                distribution, which no study reports), or "loss": the training loss averaged over
                each `log_every` steps
    S           the stage's steps; f = `window` (a fraction of S); E = `end` x S, where the judged
                windows end: the stage's last step (end = 1), or the start of a warmup-stable-decay
                schedule's decay, so the plateau is judged at constant lr (see below)
    last        mean of the series over steps (E - f S, E]
    previous    mean over steps (E - 2 f S, E - f S]
    change      (previous - last) / last: the relative improvement over the last window
    plateau     change <= `tolerance`, or (previous - last) <= `floor` x the constant-predictor loss
                when `floor` is set. A loss still falling by more fails; a flat or rising one
                (overfitting a fixed dataset) passes: more steps would not lower it. The floor
                judges what is left on the scale of the task (the share of the label variance
                still to gain): a loss falling as a power law towards 0 keeps losing a fixed
                fraction per window, so a relative tolerance alone is never met near 0.
    learned     last <= `max_ratio` x the constant-predictor loss of the data the series is
                measured on (its label variance), when `max_ratio` is set: a pre-trained model
                that has not learned its task is not a pre-trained model.
    converged   plateau and learned

The window test is the patience rule of early stopping (Prechelt 1998, "Early stopping - but
when?", criterion GL/PQ: stop once the relative improvement over a strip of evaluations falls
below a threshold), applied after the fact. Under a cosine schedule the last window anneals at a
low learning rate; an arm far from its plateau still falls by more than a few percent there, and
so does one at its plateau: annealing lowers the loss of any arm (the lr's noise floor falls), so
windows at the end of a cosine confound the two. A warmup-stable-decay schedule (decay "wsd")
separates them: windows ending at `end` = decay_step / steps compare two stretches at one constant
lr, where a loss that no longer falls has reached what more steps at that lr can give; the short
final decay then anneals (Hagele et al. 2024, section 3: its result matches a cosine's at equal
steps). `learned` is judged on the same last window, before the decay lowers the loss further.
A flat loss at constant lr can still hide progress that only the decay shows (Wen et al. 2024,
"Understanding warmup-stable-decay learning rates: a river valley loss landscape perspective"):
a high lr's noise floor masks it. `method = "halving"` judges the result itself instead:

    halving     the series' value at the end of the stage (after any decay) against its value at
                the end of the same arm trained for half the steps (a run of its own, its schedule
                scaled: `halved_stage`); previous = the half run's, last = the full run's, and
                change, plateau and learned as above. It is the issue's "doubling the steps
                changes the final loss by less than x", for the arm the study reports: if the
                second half of the budget gained less than the tolerance, the gain per doubling of
                steps is about that small. It bounds the gain per doubling, not the distance to
                the plateau: under a power law in steps every doubling gains about the same
                fraction.

`doubling_check` is the direct test: the same arm trained for twice the steps (Hernandez et al.
2021 train every from-scratch size to convergence); it passes when the upper 95% bound of the
relative improvement from doubling, paired over seeds, is at most the tolerance.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from graphpath_common.keys import reject_unknown_keys
from graphpath_common.rundir import RunDir

from graphpath.sweeps.runner import SweepError

SERIES = ("eval_loss", "val_loss", "loss")
METHODS = ("windows", "halving")


class ConvergenceError(SweepError):
    """A criterion that cannot be applied (bad keys, a window without evaluations); one line."""


@dataclass(frozen=True)
class Criterion:
    window: float = 0.25  # fraction of the stage's steps in each of the two compared windows
    tolerance: float = 0.05  # largest relative improvement over the last window that counts as a plateau
    max_ratio: float | None = None  # last-window loss / constant-predictor loss must not exceed this
    floor: float | None = None  # an improvement below this x the constant-predictor loss is a plateau too
    series: str = "eval_loss"  # eval_loss (held-out) | val_loss (validation_dataset) | loss (training, per log line)
    end: float = 1.0  # where the two windows end, as a fraction of the stage's steps (1: the stage's end)
    method: str = "windows"  # windows: two windows of one run | halving: its final value against a half-length run's

    def __post_init__(self):
        if not (isinstance(self.window, (int, float)) and 0 < self.window <= 0.5):
            raise ConvergenceError(f"convergence window must lie in (0, 0.5], got {self.window!r}")
        if not (isinstance(self.tolerance, (int, float)) and self.tolerance >= 0):
            raise ConvergenceError(f"convergence tolerance must be >= 0, got {self.tolerance!r}")
        if self.max_ratio is not None and not (isinstance(self.max_ratio, (int, float)) and self.max_ratio > 0):
            raise ConvergenceError(f"convergence max_ratio must be > 0 or left out, got {self.max_ratio!r}")
        if self.floor is not None and not (isinstance(self.floor, (int, float)) and self.floor >= 0):
            raise ConvergenceError(f"convergence floor must be >= 0 or left out, got {self.floor!r}")
        if not (isinstance(self.end, (int, float)) and 2 * self.window <= self.end <= 1):
            raise ConvergenceError(f"convergence end must lie in [2 x window, 1] = [{2 * self.window:g}, 1], "
                                   f"got {self.end!r}")
        if self.method not in METHODS:
            raise ConvergenceError(f"convergence method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.series not in SERIES:
            raise ConvergenceError(f"convergence series must be one of {', '.join(SERIES)}, got {self.series!r}")

    @classmethod
    def from_dict(cls, values: dict | None, where: str = "convergence") -> "Criterion":
        values = dict(values or {})
        reject_unknown_keys(cls, values, ConvergenceError, where)
        return cls(**values)

    def to_dict(self) -> dict:
        """The set fields; `end` and `method` only where not their defaults (what studies recorded before them)."""
        defaults = {"end": 1.0, "method": "windows"}
        return {k: v for k, v in asdict(self).items() if v is not None and not (k in defaults and v == defaults[k])}

    def describe(self) -> str:
        if self.method == "halving":
            text = (f"{self.series} at the end improved by at most {self.tolerance:.0%} on the same arm trained for half "
                    "the steps")
            if self.floor is not None:
                text += f" (or by at most {self.floor:g} x the constant-predictor loss)"
            if self.max_ratio is not None:
                text += f", and ended at most {self.max_ratio:g} x the constant-predictor loss"
            return text
        where = "the last two windows" if self.end == 1 else f"the two windows before {self.end:.0%} of the steps"
        text = (f"{self.series} improved by at most {self.tolerance:.0%} between {where} of "
                f"{self.window:.0%} of the steps")
        if self.floor is not None:
            text += f" (or by at most {self.floor:g} x the constant-predictor loss)"
        if self.max_ratio is not None:
            text += f", and ended at most {self.max_ratio:g} x the constant-predictor loss"
        return text

    def check_every(self, steps: int, every: int, what: str) -> None:
        """ConvergenceError unless each window holds at least one point of the series (a point
        every `every` steps; a window of at least `every` steps holds one)."""
        if every > self.window * steps:
            raise ConvergenceError(f"{what}: a point every {every} steps leaves a window of {self.window:g} x "
                                   f"{steps} steps empty; log or evaluate at least every {int(self.window * steps)} steps")


def criteria(values: dict | None, defaults: dict[str, Criterion]) -> dict[str, Criterion]:
    """{stage: Criterion} from a study's `[convergence]` table (sub-tables named by stage)."""
    values = dict(values or {})
    reject_unknown_keys(tuple(defaults), values, ConvergenceError, "convergence")
    out = {}
    for stage, default in defaults.items():
        given = values.get(stage)
        if given is not None and not isinstance(given, dict):
            raise ConvergenceError(f"[convergence.{stage}] must be a table, got {given!r}")
        out[stage] = Criterion.from_dict({**default.to_dict(), **(given or {})}, f"convergence.{stage}")
    return out


def check_series(steps, values, total_steps: int, criterion: Criterion, baseline: float | None = None) -> dict:
    """The verdict on one series ((step, value) pairs of one stage; see the module docstring)."""
    steps = np.asarray(steps, dtype=float)
    values = np.asarray(values, dtype=float)
    edge_end = total_steps * criterion.end
    edge_last, edge_previous = edge_end - total_steps * criterion.window, edge_end - 2 * total_steps * criterion.window
    last = values[(steps > edge_last) & (steps <= edge_end)]
    previous = values[(steps > edge_previous) & (steps <= edge_last)]
    out = {"converged": False, "plateau": False, "learned": None, "last": None, "previous": None,
           "change": None, "ratio": None, "points": [int(previous.size), int(last.size)], "steps": int(total_steps)}
    if last.size == 0 or previous.size == 0:
        return {**out, "reason": f"no {criterion.series} in one of the two windows"}
    if not (np.isfinite(last).all() and np.isfinite(previous).all()):
        return {**out, "reason": f"{criterion.series} is not finite"}
    return _judge(out, float(previous.mean()), float(last.mean()), criterion, baseline)


def check_halving(half_final: float, final: float, total_steps: int, criterion: Criterion,
                  baseline: float | None = None) -> dict:
    """The verdict of method "halving" (module docstring): `final`, the series at the end of the
    stage; `half_final`, at the end of the same arm trained for half the steps."""
    out = {"converged": False, "plateau": False, "learned": None, "last": None, "previous": None,
           "change": None, "ratio": None, "points": [1, 1], "steps": int(total_steps)}
    if not (np.isfinite(half_final) and np.isfinite(final)):
        return {**out, "reason": f"{criterion.series} is not finite"}
    return _judge(out, float(half_final), float(final), criterion, baseline)


def _judge(out: dict, previous: float, last: float, criterion: Criterion, baseline: float | None) -> dict:
    """plateau, learned and converged from the two compared values (module docstring)."""
    out["last"], out["previous"] = last, previous
    out["change"] = (out["previous"] - out["last"]) / max(out["last"], 1e-12)
    needs_baseline = criterion.max_ratio is not None or criterion.floor is not None
    if needs_baseline and (baseline is None or not baseline > 0):
        return {**out, "reason": "no constant-predictor loss to compare with"}
    out["plateau"] = out["change"] <= criterion.tolerance or (
        criterion.floor is not None and out["previous"] - out["last"] <= criterion.floor * baseline)
    over = "the half-length run" if criterion.method == "halving" else "the last window"
    reasons = [] if out["plateau"] else [f"still improving {out['change']:.1%} over {over}"]
    if criterion.max_ratio is not None:
        out["ratio"] = out["last"] / baseline
        out["learned"] = out["ratio"] <= criterion.max_ratio
        if not out["learned"]:
            reasons.append(f"loss {out['ratio']:.3g} x the constant predictor's (limit {criterion.max_ratio:g})")
    out["converged"] = bool(out["plateau"] and out["learned"] is not False)
    out["reason"] = "; ".join(reasons) or "converged"
    return out


def stage_series(run_dir, stage: str, series: str) -> tuple[list[int], list[float], int]:
    """(steps, values, last step) of one stage's series in a job's metrics.jsonl."""
    rows = [m for m in RunDir(run_dir).read_metrics(ConvergenceError) if m.get("stage") == stage]
    points = [(m["step"], m[series]) for m in rows if series in m and m["step"] > 0]
    if not rows:
        raise ConvergenceError(f"{run_dir} has no {stage} metrics")
    return [p[0] for p in points], [p[1] for p in points], max(m["step"] for m in rows)


def check_job(run_dir, stage: str, criterion: Criterion, baseline: float | None = None, half_run=None) -> dict:
    """The verdict on one job's stage; method "halving" needs `half_run`, the job of the same arm
    trained for half the steps (`halved_stage`)."""
    steps, values, total = stage_series(run_dir, stage, criterion.series)
    if criterion.method == "windows":
        return {**check_series(steps, values, total, criterion, baseline), "stage": stage}
    if half_run is None:
        raise ConvergenceError(f"{run_dir}: method \"halving\" needs the half-length run of the same arm")
    half_steps, half_values, half_total = stage_series(half_run, stage, criterion.series)
    final, half = _value_at(steps, values, total), _value_at(half_steps, half_values, half_total)
    if final is None or half is None:
        return {**check_halving(np.nan, np.nan, total, criterion, baseline), "stage": stage,
                "reason": f"no {criterion.series} at the end of the run or of its half-length run"}
    return {**check_halving(half, final, total, criterion, baseline), "stage": stage, "half_steps": int(half_total)}


def _value_at(steps, values, step: int) -> float | None:
    at = [v for s, v in zip(steps, values) if s == step]
    return float(at[-1]) if at else None


def halved_stage(stage: dict) -> dict:
    """A stage table (steps, warmup_steps, decay_step, eval/log/checkpoint intervals as in a
    preset) for half the steps: the same schedule shape, its decay at the same fraction of the
    steps; the warm-up, the lr and the batch are kept (they do not scale with the budget)."""
    steps = stage.get("steps", 1000)
    half = dict(stage, steps=max(1, steps // 2))
    if stage.get("decay_step") is not None:
        half["decay_step"] = max(1, round(stage["decay_step"] * half["steps"] / steps))
    return half


def label_variance(labels) -> float:
    """The constant predictor's MSE: the labels' variance (it answers their mean)."""
    labels = np.asarray(labels, dtype=float)
    return float(labels.var()) if labels.size else math.nan


def gate_summary(verdicts: dict[str, dict]) -> dict:
    """{jobs, converged, failed: [keys]} over a study's jobs (`verdicts` = {job key: verdict})."""
    failed = sorted(key for key, verdict in verdicts.items() if not verdict["converged"])
    return {"jobs": len(verdicts), "converged": len(verdicts) - len(failed), "failed": failed}


def doubling_check(normal, doubled, tolerance: float) -> dict:
    """Does training twice as long still help? Per seed, improvement = (normal - doubled) / normal
    (paired: one seed's two runs share data and initialisation); 95% t-interval over seeds
    (graphpath.evaluation.scores.mean_ci). Passes when the upper bound is at most `tolerance`."""
    from graphpath.evaluation.scores import ci_summary

    normal, doubled = np.asarray(normal, dtype=float), np.asarray(doubled, dtype=float)
    improvement = (normal - doubled) / normal
    summary = ci_summary(improvement)
    upper = None if summary["ci95"] is None else summary["ci95"][1]
    return {"improvement": summary, "per_seed": improvement.tolist(), "tolerance": tolerance,
            "passed": upper is not None and upper <= tolerance,
            "rule": "upper 95% bound of the paired relative improvement from doubling the steps <= tolerance"}
