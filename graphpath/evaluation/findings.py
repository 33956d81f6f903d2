"""The study's findings, each a test on the subgroup it is about.

Every finding names a model, a set, a subgroup of that set (graphpath.evaluation.subgroups), a
metric with its interval over seeds and test graphs (graphpath.evaluation.statistics), and a
one-sided test against a threshold fixed here, before any run, with its rationale beside it.
The p-values of all findings are corrected together (Benjamini-Hochberg, `statistics.adjust`).
A finding *holds* when its corrected p-value is below ALPHA, *does not hold* when the opposite
one-sided test is (the data contradict it), and is *inconclusive* otherwise; it is *not
applicable* when the run's sizes leave its subgroup empty by construction (e.g. no target beyond
the fine-tuning sizes when finetune_n_max = n_max), and *not measured* when the evaluation lacks
the data.

The phase findings test counts over seeds: how many seeds show a phase change in pre-training,
against the detector's false-positive rate on curves with no transition
(graphpath.training.phases.NULL_FALSE_POSITIVE_RATE), and how many learn distances 1, 2, 3 in
that order, against the chance of a random order. Few seeds bound how small these p-values can
get; `binomial_note` says how small for the run's seed count, and the report prints it.
"""
from __future__ import annotations

import math

import numpy as np

from graphpath.evaluation.statistics import ALPHA, Estimate, adjust, log_ratio, mean_log, p_value
from graphpath.evaluation.subgroups import errors

# ---- thresholds, fixed before any run ----------------------------------------------------------
# Pre-training "reaches a low loss": RMS error at most a tenth of a hop, so every rounded answer is
# far inside its +-0.5 margin (the study reached 0.0016, RMS 0.04 hop, after 3.14e8 examples).
LOW_MSE = 0.01
# "Fine-tuning is cheap": the fine-tune set's MSE on new targets falls at least 5x within the
# fine-tuning budget (the study: 0.5531 -> 0.01472, 38x in 100 steps).
CHEAP_RATIO = 5.0
# "Generalizes": RMS error under half a hop, so most predictions round to the true distance.
GOOD_MSE = 0.25
# "Fails": RMS error of a whole hop or more: the answer is not the distance.
FAIL_MSE = 1.0
# The study's order of learning: distance 1 (the (1, 2) edge), then 2, then 3.
STUDY_ORDER = ("1", "2", "3")


def _estimate_dict(estimate: Estimate | None) -> dict | None:
    return None if estimate is None else estimate.to_dict()


def _finding(key, finding, model, set_name, subgroup, criterion, threshold, rationale, estimate=None,
             p=None, p_against=None, per_seed=None, evidence="", status=None) -> dict:
    return {"key": key, "finding": finding, "model": model, "set": set_name, "subgroup": subgroup,
            "criterion": criterion, "threshold": threshold, "rationale": rationale,
            "estimate": _estimate_dict(estimate), "per_seed": per_seed, "p": p, "p_against": p_against,
            "status": status, "evidence": evidence}


class Evidence:
    """What the findings read: per-model predictions (S, B) per set, the sets' graphs and their
    subgroup labels. models: {"learned": {set: (S, B)}, "learned-pretrain": {...}}."""

    def __init__(self, models: dict, batches: dict, groups: dict, data: dict):
        self.models, self.batches, self.groups, self.data = models, batches, groups, data

    def squared(self, model: str, set_name: str, mask_of=None) -> np.ndarray | None:
        """(S, N) squared errors of the model on the set's examples where mask_of(groups, batch)."""
        predictions = self.models.get(model, {}).get(set_name)
        if predictions is None:
            return None
        batch = self.batches[set_name]
        squared, _ = errors(predictions, batch.label.numpy())
        if mask_of is None:
            return squared
        mask = mask_of(self.groups[set_name], batch)
        return squared[:, mask]


def _mse_finding(ev: Evidence, key, finding, model, set_name, subgroup, mask_of, threshold, claim, rationale,
                 applicable=True) -> dict:
    word = "<" if claim == "below" else ">"
    criterion = f"MSE {word} {threshold:g} on {subgroup}"
    if not applicable:
        return _finding(key, finding, model, set_name, subgroup, criterion, threshold, rationale,
                        status="not applicable", evidence=f"no {subgroup} at these sizes")
    squared = ev.squared(model, set_name, mask_of)
    if squared is None:
        return _finding(key, finding, model, set_name, subgroup, criterion, threshold, rationale,
                        status="not measured", evidence=f"{model} was not scored on {set_name}")
    if squared.shape[1] == 0:
        return _finding(key, finding, model, set_name, subgroup, criterion, threshold, rationale,
                        status="not measured", evidence=f"{set_name} holds no {subgroup}")
    estimate = mean_log(squared)
    other = "above" if claim == "below" else "below"
    return _finding(key, finding, model, set_name, subgroup, criterion, threshold, rationale, estimate,
                    p_value(estimate, threshold, claim), p_value(estimate, threshold, other),
                    squared.mean(axis=1).tolist(), _describe(estimate, "MSE"))


def _describe(estimate: Estimate, what: str) -> str:
    ci = "" if estimate.low is None else f" [{estimate.low:.4g}, {estimate.high:.4g}]"
    basis = (f"{estimate.seeds} seeds pooled" if estimate.seeds > 1 else "1 seed") + f", {estimate.graphs:,} graphs"
    return f"{what} {estimate.value:.4g}{ci} ({basis})"


def _finetune_cheap(ev: Evidence) -> dict:
    key, finding = "finetune-cheap", "fine-tuning is cheap"
    subgroup = "targets t != 2 (the fine-tuned question)"
    rationale = ("a 5x fall of the fine-tune set's MSE on targets other than the pre-training one "
                 "(the study: 38x in 100 steps)")
    criterion = f"MSE before / after > {CHEAP_RATIO:g} on {subgroup}"
    mask = lambda groups, batch: groups["target"] == "other-target"  # noqa: E731
    before, after = ev.squared("learned-pretrain", "finetune", mask), ev.squared("learned", "finetune", mask)
    if before is None or after is None or before.shape != after.shape or before.shape[1] == 0:
        return _finding(key, finding, "learned", "finetune", subgroup, criterion, CHEAP_RATIO, rationale,
                        status="not measured", evidence="the pre-training checkpoint was not scored on the fine-tune set")
    estimate = log_ratio(before, after, paired=True)
    per_seed = (before.mean(axis=1) / np.maximum(after.mean(axis=1), 1e-12)).tolist()
    text = (f"{_describe(estimate, 'ratio')}; MSE {before.mean():.4g} -> {after.mean():.4g}")
    return _finding(key, finding, "learned", "finetune", subgroup, criterion, CHEAP_RATIO, rationale, estimate,
                    p_value(estimate, CHEAP_RATIO, "above"), p_value(estimate, CHEAP_RATIO, "below"), per_seed, text)


def _large_partly(ev: Evidence) -> dict:
    """Targets beyond the fine-tuning sizes are worse than targets within them, yet not failed."""
    key, finding = "onpath-large-partly", "large on-path targets generalize partly"
    ft = int(ev.data.get("finetune_n_max", 7))
    n_max = int(ev.data.get("n_max", 15))
    subgroup = f"on-path targets t > {ft} (vertex ids no fine-tuning graph has)"
    reference = f"on-path targets 2 < t <= {ft}"
    rationale = (f"worse than the targets fine-tuning asked (MSE ratio > 1) and still under the failure "
                 f"bar (MSE < {FAIL_MSE:g}): both must hold (intersection-union test, p = the larger p)")
    criterion = f"MSE({subgroup}) / MSE({reference}) > 1 and MSE < {FAIL_MSE:g}"
    if ft >= n_max:
        return _finding(key, finding, "learned", "test-onpath-large", subgroup, criterion, FAIL_MSE, rationale,
                        status="not applicable", evidence=f"finetune_n_max = n_max = {n_max}: no target lies beyond "
                                                          "the fine-tuning sizes")
    large = ev.squared("learned", "test-onpath-large", lambda g, b: b.target.numpy() > ft)
    small = ev.squared("learned", "test-onpath-large",
                       lambda g, b: (b.target.numpy() <= ft) & (g["target"] == "other-target"))
    if large is None or small is None or large.shape[1] == 0 or small.shape[1] == 0:
        return _finding(key, finding, "learned", "test-onpath-large", subgroup, criterion, FAIL_MSE, rationale,
                        status="not measured", evidence="test-onpath-large was not scored or lacks one of the groups")
    ratio, level = log_ratio(large, small, paired=False), mean_log(large)
    p_worse, p_not_failed = p_value(ratio, 1.0, "above"), p_value(level, FAIL_MSE, "below")
    p = None if p_worse is None or p_not_failed is None else max(p_worse, p_not_failed)
    against = [p_value(ratio, 1.0, "below"), p_value(level, FAIL_MSE, "above")]
    p_against = None if None in against else min(1.0, 2 * min(against))  # either part failing refutes it
    text = f"{_describe(level, 'MSE')}; {_describe(ratio, 'ratio to ' + reference)}"
    return _finding(key, finding, "learned", "test-onpath-large", subgroup, criterion, FAIL_MSE, rationale, level,
                    p, p_against, large.mean(axis=1).tolist(), text)


def _poisson_binomial_tail(successes: int, probabilities: list[float]) -> float:
    """P(at least `successes` of independent events with these probabilities)."""
    distribution = np.zeros(len(probabilities) + 1)
    distribution[0] = 1.0
    for p in probabilities:
        distribution[1:] = distribution[1:] * (1 - p) + distribution[:-1] * p
        distribution[0] *= 1 - p
    return float(distribution[successes:].sum())


def _phases(phases_per_run: list[dict | None]) -> list[dict]:
    from graphpath.training.phases import NULL_FALSE_POSITIVE_RATE, learning_order

    runs = [p for p in phases_per_run if p is not None]
    occur = _finding("phase-changes", "phase changes occur", "learned", "pretrain (training curves)",
                     "held-out loss per distance, pre-training",
                     "seeds with >= 1 change vs the detector's null rate", NULL_FALSE_POSITIVE_RATE,
                     "a change is a plateau at the label's mean-guess loss left by an abrupt 5x fall "
                     "(graphpath.training.phases); under no transition a seed shows one with probability "
                     "1 - (1 - rate)^curves")
    order = _finding("phase-order", "distances are learned shortest first", "learned", "pretrain (training curves)",
                     "first change of distances 1, 2, 3", "seeds learning them in the study's order vs a random order",
                     None, "of k distances with a change, a random order is the study's with probability 1/k!")
    if not runs or any("curves_checked" not in p for p in runs):
        for f in (occur, order):
            f.update(status="not measured", evidence="phases.json has no held-out phase detection (an older run)")
        return [occur, order]
    seeds_with, chances, orders, order_chances = 0, [], [], []
    for p in runs:
        curves = [c for c in p["curves_checked"] if c["stage"] == "pretrain"]
        changes = [c for c in p["phase_changes"] if c["stage"] == "pretrain"]
        seeds_with += bool(changes)
        chances.append(1 - (1 - NULL_FALSE_POSITIVE_RATE) ** max(1, len(curves)))
        detected = tuple(label for label in STUDY_ORDER if any(c["label"] == label for c in changes))
        seen = learning_order(changes, detected) if len(detected) >= 2 else None
        orders.append(seen)
        if seen is not None and len(seen) >= 2:
            order_chances.append((tuple(seen) == tuple(sorted(seen, key=int)), 1 / math.factorial(len(seen))))
    occur.update(p=_poisson_binomial_tail(seeds_with, chances), per_seed=[bool(
        [c for c in p["phase_changes"] if c["stage"] == "pretrain"]) for p in runs],
        evidence=f"{seeds_with}/{len(runs)} seed(s) with a change; null chance per seed {max(chances):.3g}")
    order["per_seed"] = [None if o is None else "".join(f"{x}, " for x in o).rstrip(", ") for o in orders]
    if not order_chances:
        order.update(status="not measured", evidence="no seed has a detected change for two of distances 1, 2, 3")
    else:
        matches = sum(m for m, _ in order_chances)
        order.update(p=_poisson_binomial_tail(matches, [c for _, c in order_chances]),
                     evidence=f"{matches}/{len(order_chances)} seed(s) with >= 2 of distances 1-3 learned them "
                              f"shortest first; orders: {'; '.join(str(o) for o in order['per_seed'])}")
    return [occur, order]


def findings(ev: Evidence, phases_per_run: list[dict | None]) -> list[dict]:
    """Every finding, tested, corrected together and given a verdict."""
    ft, n_max = int(ev.data.get("finetune_n_max", 7)), int(ev.data.get("n_max", 15))
    out = [
        _mse_finding(ev, "pretrain-low-loss", "pre-training reaches a low loss", "learned-pretrain", "pretrain",
                     "every graph (all ask t = 2)", None, LOW_MSE, "below",
                     "RMS error <= 0.1 hop: far inside the rounding margin (the study: 0.0016)"),
        _finetune_cheap(ev),
        _mse_finding(ev, "onpath-small-generalizes", "on-path small targets generalize", "learned",
                     "test-onpath-small", f"targets t != 2 in graphs larger than fine-tuning (n > {ft})",
                     lambda g, b: g["target-size"] == "other-target/beyond-finetune", GOOD_MSE, "below",
                     "RMS error under half a hop on the new question (t != 2) in the new sizes: the study's "
                     "claim that small targets generalize to larger graphs", applicable=ft < n_max),
        _large_partly(ev),
        _mse_finding(ev, "offpath-fails", "off-path targets fail", "learned", "test-any-small",
                     "reachable targets off every shortest 1-2 path (fine-tuning sizes)",
                     lambda g, b: g["kind"] == "off-path", FAIL_MSE, "above",
                     "RMS error of a hop or more on targets fine-tuning never asked, in graphs of the "
                     "fine-tuning sizes (unreachable and absent targets are reported apart)"),
        *_phases(phases_per_run),
    ]
    for key, values in (("p_adjusted", adjust([f["p"] for f in out])),
                        ("p_against_adjusted", adjust([f["p_against"] for f in out]))):
        for f, value in zip(out, values):
            f[key] = value
    for f in out:
        if f["status"] is None:
            if f["p_adjusted"] is not None and f["p_adjusted"] < ALPHA:
                f["status"] = "holds"
            elif f["p_against_adjusted"] is not None and f["p_against_adjusted"] < ALPHA:
                f["status"] = "does not hold"
            else:
                f["status"] = "inconclusive"
        f["holds"] = {"holds": True, "does not hold": False}.get(f["status"])
    return out


def binomial_note(seeds: int) -> str:
    """What a seed count can show for the seed-count findings (phases), in words."""
    from graphpath.training.phases import NULL_FALSE_POSITIVE_RATE

    best_occur = (1 - (1 - NULL_FALSE_POSITIVE_RATE) ** 10) ** seeds
    best_order = (1 / 2) ** seeds
    return (f"With {seeds} seed(s) the smallest p-value the phase findings can reach is about "
            f"{best_occur:.2g} (a change in every seed) and {best_order:.2g} (two distances in the study's "
            f"order in every seed; {(1 / 6) ** seeds:.2g} with three).")

