"""A suite of graph tasks on the same input: one graph family and edge tokens, different questions.

Every task is a `GraphSpec` with a `task` field (what the label means) and a `target` mode (what
the target token means); all labels are integers in [0, max_vertices] and regressed by the
model's scalar read-out with MSE (the package's loss). A task's constant-predictor baseline is
the MSE of always answering the label mean, i.e. the label variance (`constant_baseline`).

    name              target token t                 label                               balance
    distance-12       2                              BFS distance 1 -> 2 (unreachable V)  study (pretrain rule)
    distance-onpath   a vertex on a shortest 1-2 path distance 1 -> t                     study (finetune rule)
    distance-any      uniform in [2, V]              distance 1 -> t (V if none, t > n)   none
    reachable         uniform in [2, V]              1 if t is reachable from 1, else 0   uniform (50 / 50)
    degree            uniform in [2, V]              neighbours of t (0 when t > n)       none
    reach-count       1                              vertices reachable from 1, 1 excluded none
    eccentricity      1                              largest distance from 1 to a vertex  uniform
                                                     it reaches (0 when 1 is isolated)

The three distance tasks are the study's (spec.task "distance", sampled as before, byte for
byte). The others draw graphs of the same family with balance "none", relabel them here from
numpy bitset BFS, and, for balance "uniform", keep equal counts of every label the task produces
at least once in 10^4 (the label set comes from a fixed-seed pilot, so every shard agrees).
"""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

from .bfs import adjacency_bitsets, distances_from
from .fast import fast_arrays
from .spec import GraphSpec, SpecError

SUITE = ("distance-12", "distance-onpath", "distance-any", "reachable", "degree", "reach-count",
         "eccentricity")
# suite name -> GraphSpec fields beyond the sizes
SUITE_FIELDS = {
    "distance-12": dict(task="distance", target="fixed", balance="study"),
    "distance-onpath": dict(task="distance", target="on_path", balance="study"),
    "distance-any": dict(task="distance", target="any", balance="none"),
    "reachable": dict(task="reachable", target="any", balance="uniform"),
    "degree": dict(task="degree", target="any", balance="none"),
    "reach-count": dict(task="reach_count", target="source", balance="none"),
    "eccentricity": dict(task="eccentricity", target="source", balance="uniform"),
}


def task_spec(name: str, n_max: int = 15, n_min: int = 3, **fields) -> GraphSpec:
    """The suite's task `name` on reference graphs with n in [n_min, n_max] (other GraphSpec
    fields override the suite's, e.g. balance="none")."""
    if name not in SUITE_FIELDS:
        raise SpecError(f"unknown task {name!r} (choose from {', '.join(SUITE)})")
    return GraphSpec(family="reference", n_min=n_min, n_max=n_max, **{**SUITE_FIELDS[name], **fields})


def task_labels(spec: GraphSpec, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(label, target) int64 [B] of `spec.task` for sampled graphs (edges [B, M, 2], num_vertices,
    target [B]); the target is 1 for tasks about vertex 1 itself."""
    size = len(arrays["num_vertices"])
    top = spec.max_vertices
    adjacency = adjacency_bitsets(np.asarray(arrays["edges"]), top)  # (B, V + 1) uint64
    rows = np.arange(size)
    target = np.asarray(arrays["target"], dtype=np.int64)
    if spec.task == "degree":
        bits = adjacency[rows, target]
        degree = np.zeros(size, dtype=np.int64)
        for v in range(top):  # popcount, one bit position at a time
            degree += ((bits >> np.uint64(v)) & np.uint64(1)).astype(np.int64)
        return degree, target
    from_one = distances_from(adjacency, 1, top)  # (B, V + 1); vertices beyond n are unreachable
    reached = from_one[:, 1:] < top
    if spec.task == "reachable":
        return reached[rows, target - 1].astype(np.int64), target
    one = np.ones(size, dtype=np.int64)
    if spec.task == "reach_count":
        return reached.sum(axis=1) - 1, one
    if spec.task == "eccentricity":
        return np.where(reached, from_one[:, 1:], 0).max(axis=1), one
    raise SpecError(f"task {spec.task!r} has no relabelling (the distance task samples its labels)")


def _source_spec(spec: GraphSpec) -> GraphSpec:
    """The distance spec whose graphs the task relabels: same family and sizes, no balancing."""
    return spec.replace(task="distance", balance="none", target="fixed" if spec.target == "source" else "any")


def _relabelled(spec: GraphSpec, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    label, target = task_labels(spec, arrays)
    return {**arrays, "label": label.astype(arrays["label"].dtype),
            "target": target.astype(arrays["target"].dtype)}


@lru_cache(maxsize=64)
def task_label_set(spec: GraphSpec, pilot: int = 100_000, min_frequency: float = 1e-4) -> tuple:
    """Labels the task produces at least `min_frequency` of the time in a fixed-seed pilot (a
    property of the spec alone, so every shard and backend agrees on it)."""
    arrays = _relabelled(spec, fast_arrays(_source_spec(spec), pilot, key=0)[0])
    values, counts = np.unique(arrays["label"], return_counts=True)
    return tuple(int(v) for v in values[counts >= min_frequency * pilot])


def sample_task_arrays(spec: GraphSpec, size: int, draw: Callable, rng: np.random.Generator) -> dict:
    """Exactly `size` graphs of a relabelled task. `draw(source_spec, count)` samples the
    unbalanced source graphs (numpy arrays); `rng` interleaves a balanced set's labels."""
    source = _source_spec(spec)
    if spec.balance == "none":
        return _relabelled(spec, draw(source, size))
    labels = task_label_set(spec)
    quota = {label: size // len(labels) + (i < size % len(labels)) for i, label in enumerate(labels)}
    parts: dict[int, list] = {label: [] for label in labels}
    while any(quota.values()):
        arrays = _relabelled(spec, draw(source, max(4 * size, 4096)))
        for label in labels:
            rows = np.flatnonzero(arrays["label"] == label)[: quota[label]]
            if len(rows):
                parts[label].append({name: value[rows] for name, value in arrays.items()})
                quota[label] -= len(rows)
    width = max(p["edges"].shape[1] for chunks in parts.values() for p in chunks)
    chunks = [p for label in labels for p in parts[label]]
    out = {name: np.concatenate([np.pad(p[name], ((0, 0), (0, width - p[name].shape[1]), (0, 0)))
                                 if name == "edges" else p[name] for p in chunks])
           for name in chunks[0]}
    order = rng.permutation(size)  # interleave labels: any prefix is balanced too
    return {name: value[order] for name, value in out.items()}


def constant_baseline(labels: np.ndarray) -> dict:
    """The best constant predictor under MSE on `labels`: {loss, constant (the mean), mse (the
    variance)}; a model beats the task only below this mse."""
    labels = np.asarray(labels, dtype=np.float64)
    return {"loss": "mse", "constant": float(labels.mean()), "mse": float(labels.var())}
