"""Why do off-path targets fail? Probes and the model's loss on matched on-path and off-path targets, with intervals.

Shapes: S seeds (models of one group), N graphs per kind, D width.

The same graph samples for every seed (so seeds and graphs are crossed, as
graphpath.evaluation.statistics assumes), split by what the target is (`kinds`):

    on           targets on a shortest 1 -> 2 path other than t = 2 (`test-onpath-large`; t = 2, the
                 pre-training target, is 73-80% of that set and would make "on path" mean "t = 2")
    reachable    off-path targets that are in the graph and reachable from 1 (`test-any-large`)
    unreachable  off-path targets in the graph but not reachable (label: the family's "infinity")
    absent       off-path targets that are not vertices of the graph (t > n)

The comparison is *matched*: on and reachable are compared within cells of equal vertex count n
and distance d = d(1, t) (`matched_weights`: every on-path graph is weighted so that the on-path
sample has the reachable sample's (n, d) distribution over the cells both have; reachable graphs in
cells with no on-path graph are left out), so a difference is not the two sets' different mix of
graph sizes and distances. Unreachable and absent targets have no distance to match on; they are
reported apart (their MSE over seeds, and its ratio to the matched on-path MSE), outside the tests.

Per seed, at the last stream point (the read-out's input, fixed before looking at any number):

    mse           the model's squared errors per graph (weighted as above)
    reach         out-of-fold AUROC of the target-token probes "the target is within k hops of
                  vertex 1", on and reachable, scored with the same matched weights as the MSE
                  (roc_auc_score's sample_weight; the probes are fitted unweighted) and averaged
                  over the same k on both sides (those not near-trivial on either)
    distance_r2   out-of-fold R^2 of a distance probe fitted on reachable targets; `transfer_r2` the
                  on-path probe scored on them

Findings, each a one-sided test against a threshold fixed here, Benjamini-Hochberg corrected
together at graphpath.evaluation.statistics.ALPHA:

    fails         matched MSE reachable / MSE on > FAIL_RATIO (log-ratio interval over seeds and graphs)
    readout       distance R^2 on reachable targets > READOUT_R2 (t over seeds)
    reach_kept    AUROC reachable - AUROC on > -REACH_MARGIN (t over seeds)
    reach_lost    AUROC reachable - AUROC on < -REACH_MARGIN (t over seeds)

verdict: "no-failure" unless `fails` holds; then "readout" (the stream holds the distance, the
read-out misses it), "reach-not-distance" (reach is as readable off path as on it, the distance is
not), "reach-missing" (reachability is less linearly readable at the read-out input on off-path
targets, matched on n and distance), or "undetermined" when no
explanation's test holds (too few seeds or too wide intervals to say).
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from scipy import stats

from data_gen.splits import split_batch
from graphpath.analysis import probe_fits as P
from graphpath.analysis.intervals import over_seeds
from graphpath.evaluation import statistics as S

FAIL_RATIO = 2.0  # off-path MSE at least twice on-path: the failure the study reports (61.4 vs 0.10)
READOUT_R2 = 0.8  # a linear probe reading the distance this well means the information is there
REACH_MARGIN = 0.05  # AUROC within 0.05 of on-path counts as "as readable"


MIN_KIND = 16  # fewer graphs of a kind than this (4 folds of 4) cannot be probed or compared


def target_distance(batch) -> torch.Tensor:
    """(B,) int64 d(1, t); -1 when t is unreachable or not a vertex of the graph."""
    d = P.distances_from(batch, 1)  # (B, n)
    t = (batch.target.long() - 1).clamp(max=batch.max_vertices - 1)
    return torch.where(batch.target <= batch.num_vertices, d[torch.arange(len(batch)), t], -1)


def kinds(batch) -> dict[str, torch.Tensor]:
    """(B,) bool masks: on (on path, t != 2), reachable, unreachable, absent (off path); disjoint."""
    on_path = P.on_path_targets(batch)
    present = batch.target <= batch.num_vertices
    d = target_distance(batch)
    return {"on": on_path & (batch.target != 2), "reachable": ~on_path & present & (d >= 0),
            "unreachable": ~on_path & present & (d < 0), "absent": ~on_path & ~present}


def samples(presets: dict, size: int, seed: int) -> dict:
    """{on, reachable, unreachable, absent}: up to `size` graphs of each kind (None when fewer than
    MIN_KIND), shared by every seed. On-path graphs come from `test-onpath-large` (8 x size drawn:
    t = 2 is most of them), off-path ones from `test-any-large` (4 x size drawn)."""
    on_all = split_batch("sample-inspect", spec=presets["test-onpath-large"], size=8 * size, key=1, seed=seed)
    anyt = split_batch("sample-inspect", spec=presets["test-any-large"], size=4 * size, key=2, seed=seed)
    on_kinds, any_kinds = kinds(on_all), kinds(anyt)  # BFS once per sample
    out = {}
    for name, source, masks in (("on", on_all, on_kinds), ("reachable", anyt, any_kinds),
                                ("unreachable", anyt, any_kinds), ("absent", anyt, any_kinds)):
        rows = masks[name].nonzero().flatten()[:size]
        out[name] = source[rows].trim() if len(rows) >= MIN_KIND else None
    return out


def cells(batch) -> list[tuple[int, int]]:
    """(n, d(1, t)) of every graph: the matching cells."""
    return list(zip(batch.num_vertices.tolist(), target_distance(batch).tolist()))


def matched_weights(on_cells: list, off_cells: list) -> tuple[np.ndarray, np.ndarray]:
    """(w_on (N_on,), w_off (N_off,)), each with mean 1 over the graphs kept: an on-path graph in cell c
    gets p_off(c) / p_on(c) (the reachable sample's share of c over its share of the on-path sample, both
    over the cells they share), a reachable graph 1 in a shared cell, 0 elsewhere; so a weighted mean of
    a per-graph value is the mean over the reachable sample's (n, d) mix in both (direct
    standardisation). ValueError when no cell is shared."""
    shared = set(on_cells) & set(off_cells)
    if not shared:
        raise ValueError("the on-path and reachable off-path samples share no (n, distance) cell")
    off_kept = np.array([c in shared for c in off_cells], dtype=float)
    on_kept = np.array([c in shared for c in on_cells], dtype=float)
    off_count, on_count = Counter(c for c in off_cells if c in shared), Counter(c for c in on_cells if c in shared)
    total_off, total_on = off_kept.sum(), on_kept.sum()
    w_on = np.array([(off_count[c] / total_off) / (on_count[c] / total_on) if c in shared else 0.0 for c in on_cells])
    w_on = w_on * len(on_cells) / w_on.sum()
    w_off = off_kept * len(off_cells) / off_kept.sum()
    return w_on, w_off


@torch.no_grad()
def measure_seed(model, last: str, sample: dict, hops: int, seed: int, weights=None) -> dict:
    """One model's numbers at stream point `last` (see the module docstring): per-graph squared errors
    of every kind present (`sq_<kind>`, unweighted), reach AUROC on and reachable, the distance probes.
    `weights` (w_on, w_off) from `matched_weights`: the reach AUROCs are scored with them (the same
    (n, d) mix on both sides) and averaged over the same k on both sides (`reach_matched` true)."""
    out = {}
    feats = {}
    per_k = {}
    weight_of = dict(zip(("on", "reachable"), weights)) if weights is not None else {}
    for name, group in sample.items():
        if group is None:
            continue
        prediction, cache = model.run_with_cache(group, names=[last])
        out[f"sq_{name}"] = (prediction.double() - group.label.double()).pow(2).tolist()
        feats[name] = cache[last][:, 0]
        if name in ("on", "reachable"):
            per_k[name] = P.binary_probe(feats[name], P.target_reach_labels(group, hops), seed,
                                         weight_of.get(name))["auroc"]
    both = np.isfinite(per_k["on"]) & np.isfinite(per_k["reachable"]) if weights is not None else None
    for name, auroc in per_k.items():
        keep = both if both is not None else np.isfinite(auroc)
        out[f"reach_{name}"] = float(auroc[keep].mean()) if keep.any() else None
    out["reach_matched"] = weights is not None
    off, on = sample["reachable"], sample["on"]
    out["distance_r2_off"] = P.scalar_probe(feats["reachable"], off.label, seed)["r2"]
    out["transfer_r2"] = P.transfer_r2(feats["on"], on.label, feats["reachable"], off.label)
    return out


def t_test(values, threshold: float, alternative: str) -> float | None:
    """One-sided one-sample t-test p-value over seeds (scipy.stats.ttest_1samp); None with fewer than 2
    finite values or no spread."""
    values = [v for v in values if v is not None and np.isfinite(v)]
    if len(values) < 2 or np.std(values) == 0:
        return None
    return float(stats.ttest_1samp(values, threshold, alternative=alternative).pvalue)


def mse_interval(squared) -> dict:
    """{"mean", "ci95", "n", "scale": "log", "ci_kind"} of a (weighted) MSE over seeds and graphs: the
    interval is on log(MSE) (graphpath.evaluation.statistics.mean_log, seeds and graphs crossed), so it
    stays above 0 as an MSE must, like the ratio's. squared (S, N) per-graph (weighted) squared errors."""
    est = S.mean_log(np.asarray(squared, dtype=np.float64))
    return {"mean": est.value, "ci95": None if est.low is None else [est.low, est.high], "n": est.seeds,
            "scale": "log", "ci_kind": est.kind}


def verdict(per_seed: list[dict], on_cells: list, off_cells: list) -> dict:
    """The findings, their corrected p-values and the verdict, from every seed's `measure_seed` and
    the (n, d) cells of the on-path and reachable samples (`cells`)."""
    w_on, w_off = matched_weights(on_cells, off_cells)
    on_sq = [np.asarray(s["sq_on"]) * w_on for s in per_seed]
    off_sq = [np.asarray(s["sq_reachable"]) * w_off for s in per_seed]
    ratio = S.log_ratio(off_sq, on_sq, paired=False)
    pooled = S.log_ratio([s["sq_reachable"] for s in per_seed], [s["sq_on"] for s in per_seed], paired=False)
    apart = {}
    for kind in ("unreachable", "absent"):
        if all(f"sq_{kind}" in s for s in per_seed):
            apart[kind] = {"mse": mse_interval([s[f"sq_{kind}"] for s in per_seed]),
                           "ratio_to_matched_on": S.log_ratio([s[f"sq_{kind}"] for s in per_seed], on_sq,
                                                              paired=False).to_dict(),
                           "count": len(per_seed[0][f"sq_{kind}"])}
    diffs = [None if s["reach_reachable"] is None or s["reach_on"] is None else s["reach_reachable"] - s["reach_on"]
             for s in per_seed]
    r2 = [s["distance_r2_off"] for s in per_seed]
    raw = {"fails": S.p_value(ratio, FAIL_RATIO, "above"), "readout": t_test(r2, READOUT_R2, "greater"),
           "reach_kept": t_test(diffs, -REACH_MARGIN, "greater"), "reach_lost": t_test(diffs, -REACH_MARGIN, "less")}
    adjusted = dict(zip(raw, S.adjust(list(raw.values()))))
    holds = {k: p is not None and p < S.ALPHA for k, p in adjusted.items()}
    if not holds["fails"]:
        word = "no-failure"
    elif holds["readout"]:
        word = "readout"
    elif holds["reach_kept"]:
        word = "reach-not-distance"
    elif holds["reach_lost"]:
        word = "reach-missing"
    else:
        word = "undetermined"
    shared = set(on_cells) & set(off_cells)
    return {"matching": {"cells": len(shared), "on_kept": int((w_on > 0).sum()), "on_count": len(on_cells),
                         "off_kept": int((w_off > 0).sum()), "off_count": len(off_cells)},
            "mse_ratio": ratio.to_dict(), "mse_ratio_unmatched": pooled.to_dict(),
            "mse_on": mse_interval(on_sq), "mse_off": mse_interval(off_sq), "apart": apart,
            "reach_matched": all(s.get("reach_matched", False) for s in per_seed),
            "reach_on": over_seeds([s["reach_on"] for s in per_seed]),
            "reach_off": over_seeds([s["reach_reachable"] for s in per_seed]), "reach_difference": over_seeds(diffs),
            "distance_r2_off": over_seeds(r2), "transfer_r2": over_seeds([s["transfer_r2"] for s in per_seed]),
            "p_values": raw, "p_adjusted": adjusted, "holds": holds, "verdict": word,
            "thresholds": {"fail_ratio": FAIL_RATIO, "readout_r2": READOUT_R2, "reach_margin": REACH_MARGIN,
                           "alpha": S.ALPHA}}
