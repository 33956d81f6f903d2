"""Python side of the compiled sampler: turns a `GraphSpec` into the kernel's tables and calls it.

`fast_arrays(spec, size, key)` returns exactly `size` accepted graphs as narrow uint8 arrays
(what a pre-built shard stores); the stream is fixed by the 64-bit `key` and the index of the
first raw graph, nothing else. `sampler.sample_arrays` uses it by default.

First call in a fresh checkout compiles the kernel (~5 s on a quiet core, once; numba caches it beside the
source in __pycache__); later processes load it in well under a second.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from . import kernel
from .spec import GraphSpec

FIELDS = ("edges", "num_vertices", "target", "label", "path_length")


def study_keep_table(spec: GraphSpec) -> np.ndarray:
    """(V + 1,) float64: the study rule's keep probability for each key (key V = unreachable).

    The key is the label for target 'fixed' and the 1-2 distance for 'on_path' (docs/study.md, Data).
    """
    unreachable = spec.max_vertices
    distance = np.arange(unreachable + 1)
    threshold = spec.threshold
    if spec.target == "fixed":
        keep = np.where(distance >= threshold, 1.0, 1.0 / (2.0 * np.maximum(threshold - distance, 1)))
        keep[unreachable] = spec.unreachable_keep_prob
    else:
        keep = np.where(distance >= threshold, 1.0, 1.0 / (3.0 * np.maximum(threshold - distance, 1)))
        keep[unreachable] = 0.0
    keep[0] = 0.0  # vertex 2 is never vertex 1
    return keep


def keep_bound_table(keep: np.ndarray) -> np.ndarray:
    """(V + 1, V + 1): [n, k] = best keep probability over the keys an n-vertex graph can still
    have once BFS layer k passed without reaching vertex 2: k+1..n-1, or unreachable."""
    unreachable = len(keep) - 1
    bound = np.zeros((unreachable + 1, unreachable + 1))
    for n in range(unreachable + 1):
        for k in range(unreachable + 1):
            bound[n, k] = max([keep[unreachable], *keep[k + 1:n]])
    return bound


def erdos_renyi_thresholds(spec: GraphSpec) -> np.ndarray:
    """(V + 1,) uint64: edge probability min(avg_degree / (n - 1), 1) as a 32-bit threshold."""
    n = np.arange(spec.max_vertices + 1)
    p = np.minimum(spec.avg_degree / np.maximum(n - 1, 1), 1.0)
    return np.floor(p * 2.0**32).astype(np.uint64)


@lru_cache(maxsize=64)
def uniform_label_set(spec: GraphSpec, pilot: int = 200_000, min_frequency: float = 1e-4) -> tuple:
    """Labels the family produces often enough to balance on (frequency >= min_frequency in a
    fixed-seed pilot draw). A property of the spec alone, so every shard agrees on it."""
    arrays, _ = fast_arrays(spec.replace(balance="none"), pilot, key=0)
    values, counts = np.unique(arrays["label"], return_counts=True)
    return tuple(int(v) for v in values[counts >= min_frequency * pilot])


def uniform_quota(spec: GraphSpec, size: int) -> np.ndarray:
    """(V + 1,) int64: graphs wanted per label so that `size` splits as evenly as possible."""
    labels = uniform_label_set(spec)
    quota = np.zeros(spec.max_vertices + 1, dtype=np.int64)
    quota[list(labels)] = size // len(labels)
    quota[list(labels[: size % len(labels)])] += 1
    return quota


@lru_cache(maxsize=64)
def _tables(spec: GraphSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kernel's read-only tables for `spec` (cached: small batches call the kernel often)."""
    keep = study_keep_table(spec) if spec.balance == "study" else np.ones(spec.max_vertices + 1)
    return keep, keep_bound_table(keep), erdos_renyi_thresholds(spec)


def fast_arrays(spec: GraphSpec, size: int, key: int, first_index: int = 0,
                early_exit: bool = True, counts: dict | None = None) -> tuple[dict, int]:
    """Exactly `size` accepted graphs of `spec` from stream `key`, as uint8 arrays:
    edges [size, spec.max_edges, 2], the rest [size]. Returns (arrays, next raw index).

    `counts`, if given, receives per-key `raw` (only with early_exit=False) and `kept` counts
    (key = label, or the 1-2 distance for study-balanced on-path sets).
    """
    if spec.task != "distance":
        raise ValueError(f"the kernel samples the distance task; task {spec.task!r} relabels its graphs "
                         "(use sampler.sample_arrays or tasks.sample_task_arrays)")
    width, top = spec.max_edges, spec.max_vertices
    edges = np.zeros((size, width, 2), dtype=np.uint8)
    columns = {name: np.zeros(size, dtype=np.uint8) for name in FIELDS[1:]}
    raw = np.zeros(top + 1, dtype=np.int64)
    kept = np.zeros(top + 1, dtype=np.int64)
    keep, keep_bound, er_threshold = _tables(spec)
    remaining = uniform_quota(spec, size) if spec.balance == "uniform" else np.zeros(top + 1, dtype=np.int64)
    t_hi = spec.target_max if spec.target == "any" else (spec.t_max or spec.n_max)
    next_index = kernel.fill(
        np.uint64(key % 2**64), int(first_index), kernel.FAMILY_CODES[spec.family], spec.n_min,
        spec.n_max, kernel.TARGET_CODES[spec.target], t_hi, kernel.BALANCE_CODES[spec.balance],
        bool(early_exit), spec.n_draw == "example", spec.t_max_rule == "redraw", er_threshold, keep, keep_bound, remaining,
        edges, columns["num_vertices"], columns["target"], columns["label"], columns["path_length"],
        raw, kept)
    if counts is not None:
        counts["raw"], counts["kept"] = raw, kept
    return {"edges": edges, **columns}, int(next_index)


def warm_up() -> None:
    """Compile (or load from cache) the kernel now, e.g. before forking workers."""
    fast_arrays(GraphSpec(n_max=4), 1, key=0)
