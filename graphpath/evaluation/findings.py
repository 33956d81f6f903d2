"""The study's findings, each a test on the subgroup it is about.

Every finding names a model, a set, a subgroup of that set (graphpath.evaluation.subgroups), a
metric with its interval over seeds and test graphs (graphpath.evaluation.statistics), and a
one-sided test against a threshold written here with its rationale beside it. The thresholds were
written after an earlier run of an earlier recipe on seeds 0-2 had been seen (SEEDS_SEEN_BEFORE):
only verdicts on seeds 3 and up are fresh tests; `threshold_provenance` says so in eval.json.
The p-values of all findings are corrected together (Benjamini-Hochberg, `statistics.adjust`),
which controls the false discovery rate among the findings that hold, not the family-wise error.
A finding *holds* when its corrected p-value is below ALPHA, *does not hold* when the opposite
one-sided test is (the data contradict it), and is *inconclusive* otherwise; it is *not
applicable* when the run's sizes leave its subgroup empty by construction (e.g. no target beyond
the fine-tuning sizes when finetune_n_max = n_max), and *not measured* when the evaluation lacks
the data.

The phase findings test counts over seeds: how many seeds show a phase change in pre-training,
against the detector's false-positive rate on curves with no transition
(graphpath.training.phases.NULL_FALSE_POSITIVE_RATE; distances whose mean-guess loss is under
MIN_REFERENCE are not judged by the detector, by construction), and how many learn distances 1, 2,
3 in that order, by the step each one's held-out loss settles below SETTLE_LOSS
(graphpath.training.phases.settle_steps), against the chance 1/6 of a random order of three (an
exact binomial test). Few seeds bound how small these p-values can get; `binomial_note` says how
small for the run's seeds and the curves the detector checked, and the report prints it.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from graphpath.evaluation.statistics import ALPHA, Estimate, adjust, log_ratio, mean_log, p_value
from graphpath.evaluation.subgroups import errors

# ---- thresholds --------------------------------------------------------------------------------
# Written after an earlier run (an earlier recipe, seeds 0-2) had been seen: a verdict on those
# seeds is not a test of a threshold fixed in advance; seeds 3 and up are fresh.
SEEDS_SEEN_BEFORE = (0, 1, 2)
# Pre-training "reaches a low loss": RMS error at most a tenth of a hop, so every rounded answer is
# far inside its +-0.5 margin (the study reached 0.0016, RMS 0.04 hop, after 3.14e8 examples).
LOW_MSE = 0.01
# "Fine-tuning is cheap": the fine-tune set's MSE on new targets falls at least 5x within the
# fine-tuning budget (the study: 0.5531 -> 0.01472, 38x in 100 steps).
CHEAP_RATIO = 5.0
# "Generalizes": RMS error under half a hop, so most predictions round to the true distance.
GOOD_MSE = 0.25
# "Fails": RMS error of a whole hop or more: the answer is not the distance. Below it, the answer
# is on average within a hop of the distance (it still tracks the path, though rounding may miss);
# "generalizes partly" is the band between GOOD_MSE and this.
FAIL_MSE = 1.0
# The study's order of learning: distance 1 (the (1, 2) edge), then 2, then 3.
STUDY_ORDER = ("1", "2", "3")
# Under a random order of three distances the study's order comes up with probability 1/3! = 1/6:
# the chance the order finding's exact binomial test is against.
ORDER_CHANCE = 1 / math.factorial(len(STUDY_ORDER))


def _estimate_dict(estimate: Estimate | None) -> dict | None:
    return None if estimate is None else estimate.to_dict()


def _finding(key, finding, model, set_name, subgroup, criterion, threshold, rationale, estimate=None,
             p=None, p_against=None, per_seed=None, evidence="", status=None, seen=None) -> dict:
    return {"key": key, "finding": finding, "model": model, "set": set_name, "subgroup": subgroup,
            "criterion": criterion, "threshold": threshold, "rationale": rationale,
            "estimate": _estimate_dict(estimate), "per_seed": per_seed, "p": p, "p_against": p_against,
            "status": status, "evidence": evidence, "seen": seen}


def threshold_provenance(seeds: list) -> dict:
    """eval.json `threshold_provenance`: when the thresholds were written, and which of the run's
    seeds are fresh (not seen before the thresholds were)."""
    fresh = [s for s in seeds if s is not None and s not in SEEDS_SEEN_BEFORE]
    seen = [s for s in seeds if s in SEEDS_SEEN_BEFORE]
    text = ("Thresholds written in code (graphpath/evaluation/findings.py) after an earlier run on seeds "
            f"{SEEDS_SEEN_BEFORE[0]}-{SEEDS_SEEN_BEFORE[-1]} was seen; seeds {SEEDS_SEEN_BEFORE[-1] + 1}+ are fresh. "
            + (f"Fresh seeds in this run: {', '.join(map(str, fresh))}." if fresh else
               "This run has no fresh seed: every verdict here is on seeds the thresholds were written after.")
            + (f" Seen before: {', '.join(map(str, seen))}." if seen and fresh else ""))
    return {"seeds_seen_before": list(SEEDS_SEEN_BEFORE), "fresh_seeds": fresh, "seen_seeds": seen, "text": text}


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

    def seen(self, set_name: str, mask_of=None) -> dict | None:
        """Shares of the subgroup's graphs seen in training ({"every-seed", "some-seeds", "graphs"}),
        or None when no training stream was checked (no `seen` dimension)."""
        groups, batch = self.groups.get(set_name), self.batches.get(set_name)
        if groups is None or batch is None or "seen" not in groups:
            return None
        status = groups["seen"]
        if mask_of is not None:
            status = status[mask_of(groups, batch)]
        if not len(status):
            return None
        return {"every-seed": float((status == "seen-in-training").mean()),
                "some-seeds": float((status == "seen-by-some-seeds").mean()), "graphs": int(len(status))}


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
                    squared.mean(axis=1).tolist(), _describe(estimate, "MSE"), seen=ev.seen(set_name, mask_of))


def _describe(estimate: Estimate, what: str) -> str:
    ci = "" if estimate.low is None else f" [{estimate.low:.4g}, {estimate.high:.4g}]"
    basis = (f"{estimate.seeds} seeds pooled" if estimate.seeds > 1 else "1 seed") + f", {estimate.graphs:,} graphs"
    return f"{what} {estimate.value:.4g}{ci} ({basis})"


def _finetune_cheap(ev: Evidence) -> dict:
    key, finding = "finetune-cheap", "fine-tuning is cheap"
    subgroup = "targets t != 2 (the fine-tuned question)"
    rationale = ("a 5x fall of the fine-tune set's MSE on targets other than the pre-training one "
                 "(the study: 38x in 100 steps). The fall is measured on the fine-tune set, drawn like the "
                 "fine-tuning stream, so 'after' is close to a training error; with no from-scratch control "
                 "it does not show that pre-training made fine-tuning cheap")
    criterion = f"MSE before / after > {CHEAP_RATIO:g} on {subgroup}"
    mask = lambda groups, batch: groups["target"] == "other-target"  # noqa: E731
    before, after = ev.squared("learned-pretrain", "finetune", mask), ev.squared("learned", "finetune", mask)
    if before is None or after is None or before.shape != after.shape or before.shape[1] == 0:
        return _finding(key, finding, "learned", "finetune", subgroup, criterion, CHEAP_RATIO, rationale,
                        status="not measured", evidence="the pre-training checkpoint was not scored on the fine-tune set")
    estimate = log_ratio(before, after, paired=True)
    per_seed = (before.mean(axis=1) / np.maximum(after.mean(axis=1), 1e-12)).tolist()
    caveats = finetune_caveats(ev)
    text = (f"{_describe(estimate, 'ratio')}; MSE {before.mean():.4g} -> {after.mean():.4g} (pooled); "
            + caveats["text"])
    out = _finding(key, finding, "learned", "finetune", subgroup, criterion, CHEAP_RATIO, rationale, estimate,
                   p_value(estimate, CHEAP_RATIO, "above"), p_value(estimate, CHEAP_RATIO, "below"), per_seed, text,
                   seen=ev.seen("finetune", mask))
    out["caveats"] = caveats
    return out


def finetune_caveats(ev: Evidence) -> dict:
    """What the fine-tuning numbers cannot show: the pre-trained model's normalised MSE on the whole
    fine-tune set (MSE over the set's label variance: above 1 is worse than predicting the mean),
    the share of the set's graphs that occur in training, and that there is no from-scratch control."""
    from graphpath_common.study import STUDY_LABEL_VARIANCE
    from graphpath.evaluation.report import STUDY

    study_before = next(value for key, _, value, *_ in STUDY if key == "finetune-before")
    whole = ev.squared("learned-pretrain", "finetune")
    batch = ev.batches.get("finetune")
    normalized = None
    if whole is not None and batch is not None:
        variance = float(batch.label.numpy().var())
        normalized = float(whole.mean() / variance) if variance > 0 else None
    seen = ev.seen("finetune")
    study_normalized = study_before / STUDY_LABEL_VARIANCE["finetune"]
    parts = []
    if normalized is not None:
        word = "worse than" if normalized > 1 else "better than"
        parts.append(f"on the scale of a constant predictor (MSE over the fine-tune set's label variance) the "
                     f"pre-trained model starts at {normalized:.4g} (the study: {study_normalized:.3g}), {word} a "
                     f"constant predictor (1)")
    if seen is not None:
        parts.append(f"{seen['every-seed']:.1%} of the fine-tune set's graphs occur in every seed's training "
                     "streams, so 'after' is close to a training error, not a test")
    parts.append("no model was fine-tuned from scratch, so nothing here separates what pre-training gave "
                 "from what fine-tuning learns alone")
    return {"normalized_before": normalized, "study_normalized_before": study_normalized,
            "seen_every_seed": None if seen is None else seen["every-seed"], "scratch_control": False,
            "text": "; ".join(parts) + "."}


def _large_partly(ev: Evidence) -> dict:
    """Targets beyond the fine-tuning sizes are worse than targets within them, yet not failed."""
    key, finding = "onpath-large-partly", "large on-path targets generalize partly"
    ft = int(ev.data.get("finetune_n_max", 7))
    n_max = int(ev.data.get("n_max", 15))
    subgroup = f"on-path targets t > {ft} (vertex ids no fine-tuning graph has)"
    reference = f"on-path targets 2 < t <= {ft} in graphs n > {ft}"
    rationale = (f"worse than the targets fine-tuning asked, in graphs of the same sizes (MSE ratio > 1), and "
                 f"still under the failure bar (MSE < {FAIL_MSE:g}: RMS error under one hop, so the answer is on "
                 f"average within a hop of the distance, between 'generalizes' ({GOOD_MSE:g}) and 'fails'): both "
                 f"must hold (intersection-union test, p = the larger p)")
    criterion = f"MSE({subgroup}) / MSE({reference}) > 1 and MSE < {FAIL_MSE:g}"
    if ft >= n_max:
        return _finding(key, finding, "learned", "test-onpath-large", subgroup, criterion, FAIL_MSE, rationale,
                        status="not applicable", evidence=f"finetune_n_max = n_max = {n_max}: no target lies beyond "
                                                          "the fine-tuning sizes")
    large = ev.squared("learned", "test-onpath-large", lambda g, b: b.target.numpy() > ft)
    reference_mask = lambda g, b: ((b.target.numpy() > 2) & (b.target.numpy() <= ft)  # noqa: E731
                                   & (b.num_vertices.numpy() > ft))
    small = ev.squared("learned", "test-onpath-large", reference_mask)
    if large is None or small is None or large.shape[1] == 0 or small.shape[1] == 0:
        return _finding(key, finding, "learned", "test-onpath-large", subgroup, criterion, FAIL_MSE, rationale,
                        status="not measured", evidence="test-onpath-large was not scored or lacks one of the groups")
    ratio, level = log_ratio(large, small, paired=False), mean_log(large)
    p_worse, p_not_failed = p_value(ratio, 1.0, "above"), p_value(level, FAIL_MSE, "below")
    p = None if p_worse is None or p_not_failed is None else max(p_worse, p_not_failed)
    against = [p_value(ratio, 1.0, "below"), p_value(level, FAIL_MSE, "above")]
    p_against = None if None in against else min(1.0, 2 * min(against))  # either part failing refutes it
    text = (f"{_describe(level, 'MSE')} on {large.shape[1]:,} graphs (t > {ft}); reference MSE "
            f"{small.mean():.4g} on {small.shape[1]:,} graphs (2 < t <= {ft}, n > {ft}); "
            f"{_describe(ratio, 'ratio')}")
    out = _finding(key, finding, "learned", "test-onpath-large", subgroup, criterion, FAIL_MSE, rationale, level,
                   p, p_against, large.mean(axis=1).tolist(), text,
                   seen=ev.seen("test-onpath-large", lambda g, b: b.target.numpy() > ft))
    out["counts"] = {"subgroup": int(large.shape[1]), "reference": int(small.shape[1])}
    out["reference"] = {"subgroup": reference, "mse": float(small.mean()), "graphs": int(small.shape[1]),
                        "seen": ev.seen("test-onpath-large", reference_mask)}
    return out


def _poisson_binomial_tail(successes: int, probabilities: list[float]) -> float:
    """P(at least `successes` of independent events with these probabilities)."""
    distribution = np.zeros(len(probabilities) + 1)
    distribution[0] = 1.0
    for p in probabilities:
        distribution[1:] = distribution[1:] * (1 - p) + distribution[:-1] * p
        distribution[0] *= 1 - p
    return float(distribution[successes:].sum())


def _not_judged(runs: list[dict]) -> str:
    """'distances 3, 4' the detector leaves out by construction (mean-guess loss < MIN_REFERENCE)."""
    labels = sorted({label for p in runs for label in ((p.get("settle") or {}).get("not_judged") or {})}, key=int)
    return ", ".join(labels)


def _phases(phases_per_run: list[dict | None]) -> list[dict]:
    from graphpath.training.phases import MIN_REFERENCE, NULL_FALSE_POSITIVE_RATE, SETTLE_LOSS, settle_order

    runs = [p for p in phases_per_run if p is not None]
    occur = _finding("phase-changes", "phase changes occur", "learned", "pretrain (training curves)",
                     "held-out loss per distance, pre-training",
                     "seeds with >= 1 change vs the detector's null rate", NULL_FALSE_POSITIVE_RATE,
                     "a change is a plateau at the label's mean-guess loss left by an abrupt 5x fall that lasts to the end of pre-training "
                     "(graphpath.training.phases); under no transition a seed shows one with probability "
                     "1 - (1 - rate)^curves. Distances whose mean-guess loss is under "
                     f"{MIN_REFERENCE:g} (near the mean label) are excluded by construction: they have no "
                     "plateau to fall from, so the detector never judges them")
    order = _finding("phase-order", "shorter distances are learned first", "learned", "pretrain (training curves)",
                     f"step from which each distance's held-out loss stays below {SETTLE_LOSS:g}",
                     f"seeds whose distances 1, 2, 3 settle below {SETTLE_LOSS:g} in that order vs chance "
                     f"{ORDER_CHANCE:.3g}", SETTLE_LOSS,
                     f"a distance counts as learned from the first logged step its held-out loss stays below "
                     f"{SETTLE_LOSS:g} (RMS 0.32 hop; the bar the page applies to the study's own log); a random "
                     f"order of three distances is the study's (1, 2, 3) with probability 1/6, so the count of "
                     f"seeds in that order is an exact binomial test against 1/6 (a tie or a distance that never "
                     f"settles counts as not in order)")
    if not runs or any("curves_checked" not in p for p in runs):
        for f in (occur, order):
            f.update(status="not measured", evidence="phases.json has no held-out phase detection (an older run)")
        return [occur, order]
    seeds_with, chances = 0, []
    for p in runs:
        curves = [c for c in p["curves_checked"] if c["stage"] == "pretrain"]
        changes = [c for c in p["phase_changes"] if c["stage"] == "pretrain"]
        seeds_with += bool(changes)
        chances.append(1 - (1 - NULL_FALSE_POSITIVE_RATE) ** max(1, len(curves)))
    judged = sorted({c["label"] for p in runs for c in p["curves_checked"]
                     if c["stage"] == "pretrain" and c["label"] != "all"}, key=int)
    excluded = _not_judged(runs)
    occur.update(p=_poisson_binomial_tail(seeds_with, chances), per_seed=[bool(
        [c for c in p["phase_changes"] if c["stage"] == "pretrain"]) for p in runs],
        evidence=f"{seeds_with}/{len(runs)} seed(s) with a change; null chance per seed {max(chances):.3g}; "
                 f"the detector judged distances {', '.join(judged) or 'none'}"
                 + (f" and, by construction, not distances {excluded} (mean-guess loss under {MIN_REFERENCE:g})"
                    if excluded else ""))
    if any("settle" not in p for p in runs):
        order.update(status="not measured", evidence="no held-out curves per distance to measure the order from")
        return [occur, order]
    steps = [{label: p["settle"]["steps"].get(label) for label in STUDY_ORDER} for p in runs]
    verdicts = [settle_order(s, STUDY_ORDER) for s in steps]
    order["per_seed"] = [", ".join("never" if s[label] is None else str(s[label]) for label in STUDY_ORDER)
                         for s in steps]
    order["settle"] = [{"steps": s, "order": v} for s, v in zip(steps, verdicts)]
    matches = sum(v == "shortest first" for v in verdicts)
    binomial = stats.binomtest(matches, len(runs), ORDER_CHANCE, alternative="greater").pvalue
    against = stats.binomtest(matches, len(runs), ORDER_CHANCE, alternative="less").pvalue
    order.update(p=float(binomial), p_against=float(against),
                 evidence=f"{matches}/{len(runs)} seed(s) learned distances 1, 2, 3 in that order (settle steps "
                          f"below {SETTLE_LOSS:g}: " + "; ".join(order["per_seed"]) + f"); chance {ORDER_CHANCE:.3g} "
                          "per seed")
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


def binomial_note(phases_per_run: list[dict | None]) -> str:
    """What the run's seeds can show for the seed-count findings (phases), in words: the smallest
    p-values reachable, from the number of curves the detector actually checked in each seed."""
    from graphpath.training.phases import NULL_FALSE_POSITIVE_RATE

    runs = [p for p in phases_per_run if p is not None]
    seeds = len(runs) or len(phases_per_run)
    curves = [len([c for c in (p.get("curves_checked") or []) if c["stage"] == "pretrain"]) for p in runs]
    best_occur = float(np.prod([1 - (1 - NULL_FALSE_POSITIVE_RATE) ** max(1, c) for c in curves])) if curves else None
    best_order = ORDER_CHANCE ** seeds
    checked = ", ".join(map(str, curves)) if curves else "no"
    occur = ("" if best_occur is None else
             f"{best_occur:.2g} for \"phase changes occur\" (a change in every seed; the detector checked "
             f"{checked} curve(s) per seed) and ")
    return (f"With {seeds} seed(s) the smallest p-value the phase findings can reach is {occur}"
            f"{best_order:.2g} for \"shorter distances are learned first\" (every seed in the study's order, "
            f"chance 1/6 each).")
