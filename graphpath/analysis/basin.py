"""`python -m graphpath.basin`: how far can a solution's weights be pushed and still come back?

For a noise scale sigma, every model of a group (each seed of a run, one stage) is perturbed by
`--perturbations` independent draws (graphpath.analysis.perturb.perturb_: by default every
parameter gets W + sigma * RMS(W) * N(0, 1)) and retrained for the step budget on fresh graphs
of its own data; a run has recovered when its held-out MSE *after the retraining budget* is within
RECOVERY_RULE's level: threshold_factor x the model's own unperturbed held-out MSE (floored at
RECOVERY_FLOOR). The bar is
relative so that it is the same multiple of every model's own loss, and radii compare across rows
(pre-trained, fine-tuned, hand-built); perturb's absolute bar (perturb.THRESHOLD_RULE) is not used.
At each sigma the recovered runs are pooled over the group's seeds and perturbations: k of m,
with a 95% Wilson interval (a lone model, the hand-built one, gets as many draws as the largest
group pools, so its intervals are as narrow). A sigma *holds* when k / m >= 1/2.

The retraining lr is calibrated per group by its unperturbed control (LR_RULE), before any sigma is
tried: the same retraining with no perturbation is run at each lr of LR_GRID, largest first, and the
group's lr is the largest at which every control run ends within its bar. Why: a retraining that
pushes the *unperturbed* model out of its bar measures itself, not the basin (30 fresh-Adam steps at
lr 1e-3 took pre-trained models from ~0.15-0.2 to 0.3-0.49), so its radius means nothing; among the
lrs that leave the unperturbed model where it is, the largest gives the perturbed one the most
room to climb back. "Every control run" is the strictest share: with m runs (6 by default: 3 seeds x
2 draws, or the hand-built model's 6 draws) all within the bar, the 95% Wilson interval of the
share that stays within it is [0.61, 1] for m = 6; the controls use the same draws (and retraining
data streams) as every sigma, so each perturbed run has its unperturbed twin. When no lr on the grid passes, the group has no radius: it is reported as "no
retraining budget keeps the unperturbed model in its basin" and no sigma is tried. The lr is chosen
on unperturbed runs only (the perturbed runs are not looked at), so the radius bracketed at it is not
selected on the perturbed data. `--lr` (or `lr` in the config's [perturb] table) gives the lr
outright: no calibration, one control at that lr, and the output says the lr was given.

The search: start at `--start`; while sigma holds, multiply it by `--factor` (widening until
recovery fails); if the start already fails, divide until one holds. Then bisect geometrically
between the largest sigma that held and the smallest above it that failed, until their ratio is
at most `--ratio` or `--budget` sigmas have been tried. The result is the bracket [lo, hi]:
lo held, hi failed, each with its k / m and Wilson interval; `resolved` says whether both
intervals exclude 1/2. When the budget runs out before any sigma fails, the radius is
*censored*: `hi` is null and `censored` says "above" and the largest sigma tried (the radius is
at least lo); "below" when no sigma down to the smallest tried held. Recovery need not fall
monotonically in sigma, so the bracket is where this search found the boundary.

The Wilson interval treats the m runs as independent; runs of one seed share that seed's model,
so with several seeds each group also reports the per-seed counts at lo and hi.

Models and data (graphpath.analysis.targets): RUN_DIR is a run or a group of seeds; its
pre-training checkpoints on pre-training data and fine-tuned checkpoints on fine-tuning data
(`--stage` picks one, `--data SET` names a study set instead), and with `--with-handcrafted` the
hand-built model on the run's pre-training data; `handcrafted --n N` for the hand-built model
alone. A model outside the range a basin is measured in (perturb.RANGE_RULE) is refused: the
others are measured and written, then the command exits 2 naming it. Output: RUN_DIR/basin.json
(schema in docs/contracts.md), held against other writers (graphpath_common.locks) and rewritten
after every control and every sigma tried: an interrupt (exit 130) or a failure (exit 2) keeps every sigma measured
before it, the unfinished group marked `complete: false` and the provenance status saying why.
`experiments/basin-thorough.toml` is the thorough preset.
"""
from __future__ import annotations

import argparse
import copy
import math
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm import tqdm

from data_gen.splits import split_batch
from graphpath_common import provenance
from graphpath_common.cli import ArgumentParser, first_line, run_cli
from graphpath_common.keys import reject_unknown_keys
from graphpath_common.locks import hold
from graphpath_common.rundir import RunDir
from graphpath_common.toml import read_toml

from graphpath.analysis.output import write_json
from graphpath.analysis.intervals import wilson
from graphpath.analysis.perturb import (RANGE_RULE, PerturbConfig, PerturbError, held_out_loss,
                                        out_of_range, perturb_, recover)
from graphpath.analysis.targets import Subject, add_arguments, subjects
from graphpath.core.checkpoint import CheckpointError

PROG = "python -m graphpath.basin"
SCHEMA_VERSION = 4
# Below an MSE of 1e-4 (an error of 0.01 on integer distances) a model is exact for every purpose of
# this study; "twice its own loss" must not ask a model that is exact to float rounding (the hand-built
# one, MSE ~ 0) to get back to rounding noise.
RECOVERY_FLOOR = 1e-4
RECOVERY_RULE = ("a perturbed model has recovered when, after the retraining budget, its held-out MSE is at or "
                 f"below threshold_factor x max(its own unperturbed held-out MSE, {RECOVERY_FLOOR:g}): a multiple of "
                 "each model's own loss, so a radius means the same thing for every model; the group's `control` "
                 "runs the same retraining unperturbed (a bar the control misses makes the radius uninterpretable)")


# The retraining lrs tried, largest first (module docstring; LR_RULE).
LR_GRID = (1e-3, 3e-4, 1e-4, 3e-5, 1e-5)
LR_RULE = ("each group's retraining lr is calibrated on its unperturbed control before any sigma is tried: the "
           "lrs of the grid are tried from the largest down, every model x draw retrained unperturbed, and the group "
           "uses the largest lr at which every control run ends within its recovery bar; if none does, the group is "
           "reported as having no retraining budget that keeps the unperturbed model in its basin (no radius). "
           "Rationale: a retraining that moves the unperturbed model out of its bar measures the retraining, not "
           "the basin; of the lrs that do not, the largest lets a perturbed model climb back furthest. The lr is "
           "chosen on unperturbed runs only, so the radius is not selected on the perturbed data")
NO_BUDGET = "no retraining budget keeps the unperturbed model in its basin"


def recovery_threshold(cfg: PerturbConfig, loss_before: float) -> float:
    """RECOVERY_RULE's level for a model whose unperturbed held-out MSE is `loss_before`."""
    return cfg.threshold_factor * max(loss_before, RECOVERY_FLOOR)
DEFAULTS = dict(kind="all", scale="relative", seeds=[0, 1], steps=30, batch_size=64, eval_size=256,
                threshold_factor=2.0, figures=False)  # the page's cheap default; see --help


@dataclass(frozen=True)
class Search:
    start: float = 0.1  # first sigma tried
    factor: float = 2.0  # widening / narrowing step
    ratio: float = 1.5  # stop once hi / lo <= this
    budget: int = 7  # most sigmas tried per group
    floor: float = 1e-3  # never narrow below this sigma

    def __post_init__(self):
        values = (self.start, self.factor, self.ratio, self.floor)
        if not (all(isinstance(v, (int, float)) and math.isfinite(v) for v in values) and self.start > 0
                and self.factor > 1 and self.ratio > 1 and 0 < self.floor <= self.start
                and isinstance(self.budget, int) and self.budget >= 2):
            raise PerturbError(f"the search needs finite start > 0, factor > 1, ratio > 1, 0 < floor <= start and "
                               f"budget >= 2 (got {asdict(self)})")


def search(trial, cfg: Search) -> dict:
    """Widen, then bisect, the sigma at which `trial(sigma) -> {"holds": bool, ...}` stops holding.
    Returns {"lo", "hi" (trial dicts or None), "closed", "censored" (None | "above" | "below"),
    "trials" (every trial, in the order run)}."""
    trials = []

    def run(sigma):
        trials.append(trial(sigma))
        return trials[-1]

    good = bad = None
    first = run(cfg.start)
    if first["holds"]:
        good = first
        while len(trials) < cfg.budget:
            nxt = run(good["sigma"] * cfg.factor)
            if not nxt["holds"]:
                bad = nxt
                break
            good = nxt
    else:
        bad = first
        while len(trials) < cfg.budget and bad["sigma"] / cfg.factor >= cfg.floor * (1 - 1e-9):
            nxt = run(bad["sigma"] / cfg.factor)
            if nxt["holds"]:
                good = nxt
                break
            bad = nxt
    while good is not None and bad is not None and bad["sigma"] / good["sigma"] > cfg.ratio and len(trials) < cfg.budget:
        mid = run(math.sqrt(good["sigma"] * bad["sigma"]))
        good, bad = (mid, bad) if mid["holds"] else (good, mid)
    censored = "above" if bad is None else "below" if good is None else None
    closed = censored is None and bad["sigma"] / good["sigma"] <= cfg.ratio * (1 + 1e-9)
    return {"lo": good, "hi": bad, "closed": closed, "censored": censored, "trials": trials}


def end(t: dict | None) -> dict | None:
    """A bracket end as basin.json records it."""
    if t is None:
        return None
    return {"sigma": t["sigma"], "recovered": t["recovered"], "runs": t["runs"], "ci95": t["ci95"],
            "by_seed": {key: sum(v) for key, v in t["by_model"].items()}}


class Group:
    """The models pooled at each sigma: each with its held-out batch, loss before and threshold."""

    def __init__(self, members: list[Subject], cfg: PerturbConfig, device, draws: int | None = None):
        self.cfg, self.device = cfg, device
        self.draws = list(cfg.seeds) if draws is None else list(range(draws))  # perturbation seeds per model
        self.members, self.refused = [], {}
        for subject in members:
            batch = split_batch("heldout-perturb", spec=subject.spec, size=cfg.eval_size,
                                seed=cfg.eval_seed).to(device)
            model = subject.model.to(device).eval()
            before = held_out_loss(model, batch)
            reason = out_of_range(before, batch)
            row = {"key": subject.key, "seed": subject.seed, "loss_before": before,
                   "threshold": recovery_threshold(cfg, before),
                   "threshold_multiple": recovery_threshold(cfg, before) / before if before > 0 else None,
                   "data": subject.data,
                   "parameter_count": subject.parameter_count, "target": subject.description}
            if reason:
                self.refused[subject.key] = {**row, "refused": reason}
            else:  # a perturbation that cannot apply (a group matching no parameter) is bad input, found
                #      before the controls run and write anything: sigma 0 on a copy touches nothing
                perturb_(copy.deepcopy(model), cfg.kind, 0.0, 0, cfg.group, cfg.scale)
                self.members.append((subject, model, batch, row))

    def control(self, lr: float | None = None) -> dict:
        """The same retraining, unperturbed (at `lr`, default the configured one): whether each model
        can meet its own bar at all."""
        return self.trial(None, lr=lr)

    def trial(self, sigma: float | None, bar=None, lr: float | None = None) -> dict:
        """Every model x draw perturbed at `sigma` (None: not perturbed, the control) and retrained at
        `lr` (default the configured one); recovered when the held-out MSE after the budget is within
        the model's bar (RECOVERY_RULE). `within_at_start` counts the runs already within the bar
        before any retraining."""
        cfg = self.cfg if lr is None else replace(self.cfg, lr=lr)
        by_model, final, at_start = {}, {}, 0
        for subject, model, batch, row in self.members:
            hits, losses = [], []
            for draw in self.draws:
                perturbed = copy.deepcopy(model)
                if sigma is not None:
                    perturb_(perturbed, self.cfg.kind, sigma, draw, self.cfg.group, self.cfg.scale)
                curve = recover(perturbed, subject.spec, batch, cfg, draw, self.device)
                end = curve[-1][1]
                hits.append(math.isfinite(end) and end <= row["threshold"])
                at_start += curve[0][1] <= row["threshold"]
                losses.append(end if math.isfinite(end) else None)
                if bar is not None:
                    bar.update(1)
            by_model[subject.key], final[subject.key] = hits, losses
        k = sum(sum(v) for v in by_model.values())
        m = sum(len(v) for v in by_model.values())
        return {"sigma": sigma, "lr": cfg.lr, "recovered": k, "runs": m, "rate": k / m, "ci95": wilson(k, m),
                "holds": k / m >= 0.5, "within_at_start": at_start, "by_model": by_model, "final": final}


def bracket_fields(found: dict, plan: Search) -> dict:
    """basin.json's bracket fields of one group from a finished `search`."""
    lo, hi = end(found["lo"]), end(found["hi"])
    resolved = (lo is not None and hi is not None and lo["ci95"][0] > 0.5 and hi["ci95"][1] < 0.5)
    top = max(t["sigma"] for t in found["trials"])
    bottom = min(t["sigma"] for t in found["trials"])
    note = {"above": f"every sigma up to {top:.4g} held; the budget of {plan.budget} sigmas ran out, "
                     f"so the radius is at least {top:.4g} (censored above)",
            "below": f"no sigma down to {bottom:.4g} held (censored below: the radius is under "
                     f"{bottom:.4g})", None: None}[found["censored"]]
    return {"lo": lo, "hi": hi, "closed": found["closed"], "censored": found["censored"],
            "censored_note": note, "resolved": resolved}


UNFINISHED = {"lo": None, "hi": None, "closed": False, "censored": None, "censored_note": None, "resolved": False}


def passes(control: dict) -> bool:
    """LR_RULE's test of one lr: every unperturbed run ended within its bar."""
    return control["runs"] > 0 and control["recovered"] == control["runs"]


def calibrate(control, grid) -> tuple[float | None, list[dict]]:
    """LR_RULE: `control(lr) -> trial dict` at each lr of `grid`, largest first, until one passes.
    Returns (the chosen lr or None, every control tried, in order). Only unperturbed runs are seen."""
    tried = []
    for lr in sorted(grid, reverse=True):
        tried.append(control(lr))
        if passes(tried[-1]):
            return lr, tried
    return None, tried


def measure(groups: dict[str, list[Subject]], cfg: PerturbConfig, plan: Search, device, progress: bool,
            save=None, lr_grid: tuple | None = LR_GRID) -> dict:
    """basin.json's `groups`: {name: {models, refused, complete, retraining_lr, control, lo, hi, closed,
    censored, resolved, trials}}. Each group's lr is calibrated first (LR_RULE over `lr_grid`; None:
    cfg.lr was given, one control at it, no calibration), then its sigma is bracketed at that lr; a
    group no lr passes gets `no_radius` and no search. `save(groups_so_far)`, when given, is called
    after every control and every sigma tried, so what was measured survives an interrupt or a later
    failure; a group still being calibrated or searched has `complete: false` and no bracket."""
    out: dict[str, dict] = {}
    pooled = max(len(members) for members in groups.values())  # models in the largest group
    for name, members in groups.items():
        # a lone model (the hand-built one) gets as many runs per sigma as a group of seeds pools
        group = Group(members, cfg, device, len(cfg.seeds) * pooled if len(members) == 1 else None)
        result = {"models": [row for *_, row in group.members], "refused": list(group.refused.values()),
                  "complete": False, **UNFINISHED, "trials": []}
        out[name] = result
        if group.members:
            runs = len(group.members) * len(group.draws)
            grid = [cfg.lr] if lr_grid is None else list(lr_grid)
            record = {"lr": None, "source": "given" if lr_grid is None else "calibrated", "grid": grid,
                      "rule": ("given (--lr or the config's lr): not calibrated; the control at it is reported"
                               if lr_grid is None else LR_RULE), "controls": []}
            result["retraining_lr"] = record
            with tqdm(total=(len(grid) + plan.budget) * runs, desc=f"basin {name}", unit="run",
                      disable=not progress) as bar:
                def control(lr, bar=bar, group=group, record=record, result=result):
                    c = group.trial(None, bar, lr=lr)
                    record["controls"].append(c)
                    result["control"] = c  # the latest; once chosen, the control at the chosen lr
                    if save is not None:
                        save(out)
                    return c

                if lr_grid is None:
                    chosen = control(cfg.lr)["lr"]
                else:
                    chosen, _ = calibrate(control, grid)
                record["lr"] = chosen
                if chosen is None:
                    result["no_radius"] = (f"{NO_BUDGET}: at every lr tried ({', '.join(f'{lr:g}' for lr in grid)}) "
                                           f"some unperturbed run ended above its bar, so no sigma was tried")
                else:
                    def step(sigma, bar=bar, group=group, result=result, lr=chosen):
                        t = group.trial(sigma, bar, lr=lr)
                        result["trials"].append(t)
                        if save is not None:
                            save(out)
                        return t
                    found = search(step, plan)
                    result.update(bracket_fields(found, plan))
        result["complete"] = True
        if save is not None:
            save(out)
    return out


def _config(args) -> tuple[PerturbConfig, Search, bool]:
    """The recovery settings, the search and whether the lr was given (--lr or the config's lr: no
    calibration)."""
    values = dict(DEFAULTS)
    search_values = {}
    if args.config:
        table = read_toml(args.config, PerturbError, "config ")
        search_values = dict(table.get("search", {}))
        reject_unknown_keys(Search, search_values, PerturbError, f"{args.config} [search]")
        perturb = table.get("perturb", {})
        reject_unknown_keys(PerturbConfig, perturb, PerturbError, f"{args.config} [perturb]")
        values.update(perturb)
    values.update({k: v for k, v in (("steps", args.steps), ("seeds", args.perturbations and
                                                              list(range(args.perturbations))),
                                     ("threads", args.threads)) if v})
    if args.lr is not None:
        values["lr"] = args.lr
    values.setdefault("eval_every", values["steps"])
    values["model"] = None  # the models come from graphpath.analysis.targets  # the held-out loss before and after recovery only
    search_values.update({k: getattr(args, k) for k in ("start", "factor", "ratio", "budget")
                          if getattr(args, k) is not None})
    try:
        cfg = PerturbConfig(**values)
    except TypeError as error:
        raise PerturbError(str(error)) from None
    try:  # PerturbConfig has checked lr (a finite number in (0, 1])
        return cfg, Search(**search_values), "lr" in values
    except TypeError as error:
        raise PerturbError(str(error)) from None


def _main(argv) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, "perturb and retrain")
    parser.add_argument("--config", help="TOML with [perturb] (recovery) and [search] tables")
    parser.add_argument("--perturbations", type=int, help=f"perturbation draws per model per sigma "
                                                          f"(default {len(DEFAULTS['seeds'])})")
    parser.add_argument("--steps", type=int, help=f"recovery steps (default {DEFAULTS['steps']})")
    parser.add_argument("--lr", type=float, help="retraining lr, given outright: no calibration (default: each "
                                                 f"group's calibrated on its unperturbed control over "
                                                 f"{', '.join(f'{lr:g}' for lr in LR_GRID)}; LR_RULE)")
    parser.add_argument("--start", type=float, help=f"first sigma (default {Search.start})")
    parser.add_argument("--factor", type=float, help=f"widening factor (default {Search.factor})")
    parser.add_argument("--ratio", type=float, help=f"stop once hi / lo <= this (default {Search.ratio})")
    parser.add_argument("--budget", type=int, help=f"most sigmas per group (default {Search.budget})")
    parser.add_argument("--out", help="output path (default RUN_DIR/basin.json)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.perturbations is not None and args.perturbations < 1:
        raise PerturbError(f"--perturbations must be >= 1, got {args.perturbations}")
    cfg, plan, lr_given = _config(args)
    torch.set_num_threads(cfg.threads)
    invocation = provenance.entry(provenance.command_line(PROG, argv), cfg.device, cfg.threads)
    try:
        found = subjects(args.model, PROG, (args.stage,) if args.stage else None, args.data,
                         args.with_handcrafted, args.n)
    except CheckpointError as error:
        raise PerturbError(str(error)) from None
    groups: dict[str, list[Subject]] = {}
    for subject in found:
        groups.setdefault(subject.group, []).append(subject)
    home = Path("runs") / f"handcrafted-n{args.n}" if args.model == "handcrafted" else Path(args.model)
    out = Path(args.out) if args.out else RunDir(home).basin
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("model", "n", "data", "out", "figures",
                                                                  "with_handcrafted", "edge_tokens", "threshold")}
    if not lr_given:
        settings["lr"] = None  # calibrated per group: each group's retraining_lr
    head = {"schema": SCHEMA_VERSION, "settings": settings, "search": asdict(plan), "recovery_rule": RECOVERY_RULE,
            "lr_rule": "given" if lr_given else LR_RULE, "lr_grid": None if lr_given else list(LR_GRID),
            "recovery_factor": cfg.threshold_factor, "recovery_floor": RECOVERY_FLOOR, "range_rule": RANGE_RULE}

    def save(groups_so_far: dict, status: str = "running") -> None:
        entry = dict(invocation, status=status) if status == "running" else provenance.finish(invocation, status)
        write_json(out, {**head, "groups": groups_so_far, "provenance": entry})

    measured: dict = {}
    with hold(out.parent, PROG):  # writable, and no other writer, before the search runs
        try:
            measured = measure(groups, cfg, plan, torch.device(cfg.device), not args.quiet,
                               save=lambda g: (measured.update(g), save(g)), lr_grid=None if lr_given else LR_GRID)
        except KeyboardInterrupt:
            if measured:
                save(measured, "interrupted")  # every sigma finished before the interrupt is kept
            raise
        except Exception as error:
            if measured:
                save(measured, f"failed: {first_line(error)}")
            raise
        save(measured, "finished")
    for name, g in measured.items():
        print(f"{name}: {summary(g)}")
    print(f"wrote {out}")
    refused = [r for g in measured.values() for r in g["refused"]]
    if refused:
        raise PerturbError(f"{len(refused)} model(s) refused, the others written to {out}: {refused[0]['key']}: "
                           f"{refused[0]['refused']}")
    return 0


def lr_line(g: dict) -> str:
    """The group's retraining lr and every control tried, in words."""
    record = g.get("retraining_lr")
    if not record:
        return ""
    tried = ", ".join(f"lr {c['lr']:g}: {c['recovered']}/{c['runs']}" for c in record["controls"])
    if record["source"] == "given":
        return f"lr {record['lr']:g} given (not calibrated; unperturbed control {tried})"
    if record["lr"] is None:
        return f"no lr on the grid passes the control ({tried})"
    return f"lr {record['lr']:g} calibrated (unperturbed control within the bar: {tried})"


def summary(g: dict) -> str:
    """One line: the lr, the bracket, its counts and intervals, or why there is none."""
    fmt = lambda e: f"sigma {e['sigma']:.3g} ({e['recovered']}/{e['runs']} recovered, Wilson {e['ci95'][0]:.2f}-{e['ci95'][1]:.2f})"  # noqa: E731
    if not g.get("models"):
        return "no model measured (all refused)"
    lr = lr_line(g)
    if g.get("no_radius"):
        return f"{g['no_radius']}; {lr}"
    if g["censored"]:
        return f"{g['censored_note']}; {lr}"
    return (f"radius in [{g['lo']['sigma']:.3g}, {g['hi']['sigma']:.3g}]: holds at {fmt(g['lo'])}, fails at "
            f"{fmt(g['hi'])}{'' if g['resolved'] else '; not resolved at 95%'}; {lr}")


def main(argv=None) -> int:
    return run_cli(PROG, _main, argv, PerturbError)


if __name__ == "__main__":
    sys.exit(main())
