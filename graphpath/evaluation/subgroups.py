"""Subgroups of an evaluation set: which question each test example really asks.

Shapes
    S  seeds (runs pooled), B  graphs in a set

The study's test sets are mixtures. Most on-path examples ask for t = 2, the pre-training target;
off-path sets mix reachable targets with unreachable ones and with targets that are not in the
graph at all (t > n). Each set is therefore broken down along these dimensions, each a partition
of the set (so every dimension's subgroups sum back to the whole set):

| dimension   | subgroups |
|-------------|-----------|
| target      | `pretrain-target` (t = 2, the pre-training target), `other-target` |
| size        | `within-finetune` (n <= finetune_n_max), `beyond-finetune` |
| target-size | the four crossings of the two above (`other-target/beyond-finetune` is the truly new cell) |
| kind        | `on-path` (t on a shortest 1-2 path), `off-path` (reachable, not on such a path), `unreachable` (t in the graph, no path from 1), `not-in-graph` (t > n) |
| distance    | the label: `1`, `2`, ..., `unreachable` |
| seen        | `seen-in-training` (the graph's edge multiset occurs in the training stream checked, graphpath.evaluation.overlap), `unseen` |

Every subgroup's MSE and accuracy come with intervals over seeds and test graphs
(graphpath.evaluation.statistics), except subgroups of fewer than MIN_GRAPHS_FOR_INTERVAL graphs; `normalized_mse` divides by the whole set's constant-predictor
MSE (its label variance), the scale on which sets with different label ranges compare.
`onpath_grid` scores on-path examples with t != 2 by (n, distance).
"""
from __future__ import annotations

import numpy as np

from data_gen import GraphBatch
from data_gen.bfs import adjacency_bitsets, distances_from

from graphpath.evaluation.scores import rounded
from graphpath.evaluation.statistics import mean_log, mean_logit

PRETRAIN_TARGET = 2  # the study pre-trains on the distance from vertex 1 to vertex 2
KINDS = ("on-path", "off-path", "unreachable", "not-in-graph")
MIN_COUNT = 1  # subgroups with fewer graphs are left out (none are: an empty group has no row)
MIN_GRAPHS_FOR_INTERVAL = 20  # a subgroup (or grid cell) with fewer test graphs shows its value with
# no interval. Rationale, measured before the rule (tests/test_subgroups.py::
# test_small_subgroups_get_no_interval_because_they_under_cover simulates it): 5 seeds, squared
# errors with lognormal graph effects and chi-square noise, the crossed log-scale interval of
# graphpath.evaluation.statistics covers the true MSE 0.88-0.91 of the time at 2-10 graphs against
# 0.925-0.945 at 20 and more (nominal 0.95; 1,500-2,000 simulated studies each, Monte Carlo SE about
# 0.006); a row of 3 graphs with an interval reads as a finding it is not.


def target_kinds(batch: GraphBatch) -> np.ndarray:
    """(B,) str: each example's target kind (KINDS), from BFS distances from vertices 1 and 2."""
    arrays = batch.numpy()
    unreachable = batch.max_vertices
    adjacency = adjacency_bitsets(arrays["edges"], unreachable)
    from_one = distances_from(adjacency, 1, unreachable)  # (B, V + 1)
    from_two = distances_from(adjacency, 2, unreachable)
    rows = np.arange(len(batch))
    t, n = arrays["target"], arrays["num_vertices"]
    to_t, t_to_two, one_to_two = from_one[rows, t], from_two[rows, t], from_one[:, 2]
    on_path = (one_to_two < unreachable) & (to_t + t_to_two == one_to_two)
    kind = np.where(t > n, "not-in-graph",
                    np.where(to_t >= unreachable, "unreachable", np.where(on_path, "on-path", "off-path")))
    return kind.astype(object)


def example_groups(batch: GraphBatch, data: dict, seen: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """{dimension: (B,) subgroup name per example} for one set. data: `study_presets` keywords
    (finetune_n_max); seen (B,) bool or None (no training stream was checked: no `seen` dimension)."""
    arrays = batch.numpy()
    t, n, label = arrays["target"], arrays["num_vertices"], arrays["label"]
    finetune_n_max = int(data.get("finetune_n_max", 7))
    target = np.where(t == PRETRAIN_TARGET, "pretrain-target", "other-target").astype(object)
    size = np.where(n <= finetune_n_max, "within-finetune", "beyond-finetune").astype(object)
    groups = {"target": target, "size": size, "target-size": target + "/" + size,
              "kind": target_kinds(batch),
              "distance": np.where(label >= batch.max_vertices, "unreachable", label.astype(str)).astype(object)}
    if seen is not None:
        groups["seen"] = np.where(seen, "seen-in-training", "unseen").astype(object)
    return groups


def errors(predictions: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(squared errors, right answers) as (S, B) float arrays; predictions (S, B), label (B,)."""
    predictions = np.atleast_2d(np.asarray(predictions, dtype=np.float64))
    squared = (predictions - label[None, :]) ** 2
    hits = (rounded(np.nan_to_num(predictions, nan=-1.0, posinf=1e9, neginf=-1e9)) == label[None, :])
    return squared, hits.astype(np.float64)


def subgroup_row(squared: np.ndarray, hits: np.ndarray, mask: np.ndarray, constant_mse: float) -> dict:
    """One subgroup's numbers: count, MSE and accuracy with intervals, per-seed values,
    normalized MSE (MSE / the whole set's constant-predictor MSE)."""
    sq, ok = squared[:, mask], hits[:, mask]
    mse, accuracy = (_enough(estimate.to_dict(), int(mask.sum())) for estimate in (mean_log(sq), mean_logit(ok)))
    if constant_mse > 0:
        normalized = {"value": mse["value"] / constant_mse,
                      "ci95": None if mse["ci95"] is None else [bound / constant_mse for bound in mse["ci95"]]}
    else:  # every label equal: the constant predictor is exact and there is no scale to divide by
        normalized = {"value": None, "ci95": None}
    return {"count": int(mask.sum()), "mse": mse, "accuracy": accuracy,
            "normalized_mse": normalized,
            "per_seed": {"mse": sq.mean(axis=1).tolist(), "accuracy": ok.mean(axis=1).tolist()}}


def _enough(estimate: dict, count: int) -> dict:
    """An Estimate's dict, its interval dropped (ci_kind "too-few-graphs") under MIN_GRAPHS_FOR_INTERVAL graphs."""
    if count >= MIN_GRAPHS_FOR_INTERVAL:
        return estimate
    return {**estimate, "ci95": None, "ci_kind": "too-few-graphs"}


def _order(dimension: str, names) -> list[str]:
    names = sorted(set(names))
    if dimension == "kind":
        return [k for k in KINDS if k in names]
    if dimension == "distance":
        return sorted((x for x in names if x != "unreachable"), key=int) + (["unreachable"] if "unreachable" in names else [])
    return names


def subgroup_table(predictions: np.ndarray, batch: GraphBatch, groups: dict[str, np.ndarray]) -> dict:
    """{dimension: {subgroup: subgroup_row}} for one set and one model (its S runs' predictions
    (S, B) on the set's graphs). The constant predictor is the set's mean label."""
    label = batch.label.numpy()
    squared, hits = errors(predictions, label)
    constant_mse = float(label.var())
    table = {}
    for dimension, names in groups.items():
        table[dimension] = {name: subgroup_row(squared, hits, names == name, constant_mse)
                            for name in _order(dimension, names) if (names == name).sum() >= MIN_COUNT}
    return table


def onpath_grid(predictions: np.ndarray, batch: GraphBatch, groups: dict[str, np.ndarray]) -> dict:
    """MSE, accuracy (with intervals) and count per (n, distance) over on-path examples whose target
    is not the pre-training target: {"n": [...], "d": [...], "cells": [[row or None]]}."""
    keep = (groups["kind"] == "on-path") & (groups["target"] == "other-target")
    n, label = batch.num_vertices.numpy(), batch.label.numpy()
    squared, hits = errors(predictions, label)
    n_values = sorted(set(n[keep].tolist()))
    d_values = sorted(set(label[keep].tolist()))
    cells = []
    for row_n in n_values:
        row = []
        for d in d_values:
            mask = keep & (n == row_n) & (label == d)
            if not mask.any():
                row.append(None)
                continue
            count = int(mask.sum())
            mse, accuracy = (_enough(estimate.to_dict(), count)
                             for estimate in (mean_log(squared[:, mask]), mean_logit(hits[:, mask])))
            row.append({"count": count, "mse": mse["value"], "mse_ci95": mse["ci95"],
                        "accuracy": accuracy["value"], "accuracy_ci95": accuracy["ci95"]})
        cells.append(row)
    return {"n": n_values, "d": d_values, "cells": cells}
