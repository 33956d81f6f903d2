"""Vectorized samplers: draw graphs of a family, pick targets, label by batched BFS, balance.

Every function takes a `numpy.random.Generator` (or a seed) and never touches global RNG state.
`sample(spec, size, rng)` returns exactly `size` balanced, labelled graphs as a `GraphBatch`;
`StreamingSampler` serves an endless sequence of batches for training that does not pre-build.
Both use the compiled kernel (`fast.py`) by default; `backend="numpy"` runs the vectorized
numpy code in this file instead (same distributions, different draws), kept as the cross-check.
"""
from __future__ import annotations

import numpy as np

from .batch import GraphBatch
from .bfs import adjacency_bitsets, distances_from
from .fast import fast_arrays
from .spec import GraphSpec
from .tasks import sample_task_arrays


def as_generator(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        raise ValueError("a seed or numpy.random.Generator is required (no global RNG state)")
    return np.random.default_rng(rng)


# ---- graph families: each returns edges (B, M, 2) int64 with a < b, padding (0, 0) at the end ----

def _compact(a: np.ndarray, b: np.ndarray, keep: np.ndarray, order_key: np.ndarray | None = None):
    """Stack kept (min, max) pairs to the front of each row, padding with (0, 0)."""
    low, high = np.minimum(a, b), np.maximum(a, b)
    key = ~keep if order_key is None else np.where(keep, order_key, np.inf)
    order = np.argsort(key, axis=1, kind="stable")
    low = np.take_along_axis(np.where(keep, low, 0), order, axis=1)
    high = np.take_along_axis(np.where(keep, high, 0), order, axis=1)
    width = max(int(keep.sum(axis=1).max(initial=0)), 1)
    return np.stack([low, high], axis=-1)[:, :width].astype(np.int64)


def reference_edges(num_vertices: np.ndarray, n_max: int, rng: np.random.Generator) -> np.ndarray:
    """The study's family: n candidate pairs drawn uniformly; self-pairs dropped; repeats kept."""
    size = len(num_vertices)
    a = (rng.random((size, n_max)) * num_vertices[:, None]).astype(np.int64) + 1
    b = (rng.random((size, n_max)) * num_vertices[:, None]).astype(np.int64) + 1
    slot = np.arange(n_max)[None, :] < num_vertices[:, None]
    return _compact(a, b, slot & (a != b))


def erdos_renyi_edges(num_vertices: np.ndarray, n_max: int, avg_degree: float,
                      rng: np.random.Generator) -> np.ndarray:
    """Each pair i < j <= n is an edge independently with probability avg_degree / (n - 1)."""
    i, j = np.triu_indices(n_max, k=1)
    i, j = i + 1, j + 1
    size = len(num_vertices)
    p = np.minimum(avg_degree / (num_vertices - 1), 1.0)
    keep = (rng.random((size, len(i))) < p[:, None]) & (j[None, :] <= num_vertices[:, None])
    order_key = rng.random((size, len(i)))  # edges in random order
    return _compact(np.broadcast_to(i, keep.shape), np.broadcast_to(j, keep.shape), keep, order_key)


def tree_edges(num_vertices: np.ndarray, n_max: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform random labelled trees, by decoding a uniform Pruefer sequence (batched)."""
    size = len(num_vertices)
    rows = np.arange(size)
    prufer = (rng.random((size, max(n_max - 2, 1))) * num_vertices[:, None]).astype(np.int64) + 1
    degree = np.zeros((size, n_max + 2), dtype=np.int64)
    present = np.arange(n_max + 2)[None, :]
    degree[(present >= 1) & (present <= num_vertices[:, None])] = 1
    steps = num_vertices - 2
    for k in range(n_max - 2):
        active = k < steps
        np.add.at(degree, (rows[active], prufer[active, k]), 1)
    a = np.zeros((size, n_max - 1), dtype=np.int64)
    b = np.zeros((size, n_max - 1), dtype=np.int64)
    for k in range(n_max - 2):
        active = k < steps
        leaf = np.argmax(degree == 1, axis=1)
        parent = prufer[:, k]
        a[active, k], b[active, k] = leaf[active], parent[active]
        degree[rows[active], leaf[active]] -= 1
        degree[rows[active], parent[active]] -= 1
    # the last edge joins the two vertices still of degree 1
    ones = degree == 1
    first = np.argmax(ones, axis=1)
    last = n_max + 1 - np.argmax(ones[:, ::-1], axis=1)
    a[rows, steps], b[rows, steps] = first, last
    keep = np.arange(n_max - 1)[None, :] < (num_vertices - 1)[:, None]
    return _compact(a, b, keep, rng.random(keep.shape))


def path_edges(num_vertices: np.ndarray, n_max: int, rng: np.random.Generator) -> np.ndarray:
    """A path through all n vertices in uniformly random order, its edges in random order."""
    size = len(num_vertices)
    keys = rng.random((size, n_max))
    keys[np.arange(n_max)[None, :] >= num_vertices[:, None]] = np.inf
    order = np.argsort(keys, axis=1) + 1  # a random permutation of 1..n, then the absent ids
    keep = np.arange(n_max - 1)[None, :] < (num_vertices - 1)[:, None]
    return _compact(order[:, :-1], order[:, 1:], keep, rng.random(keep.shape))


def draw_edges(spec: GraphSpec, num_vertices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if spec.family == "reference":
        return reference_edges(num_vertices, spec.n_max, rng)
    if spec.family == "erdos_renyi":
        return erdos_renyi_edges(num_vertices, spec.n_max, spec.avg_degree, rng)
    if spec.family == "tree":
        return tree_edges(num_vertices, spec.n_max, rng)
    return path_edges(num_vertices, spec.n_max, rng)


# ---- targets ----------------------------------------------------------------------------------

def on_path_targets(from_one: np.ndarray, from_two: np.ndarray, num_vertices: np.ndarray,
                    t_max: int | None, rng: np.random.Generator) -> np.ndarray:
    """A vertex on a shortest 1-2 path: its position k (distance from 1) drawn with weight
    proportional to k, then uniformly among the path vertices at that position (as the study).

    Requires 2 reachable from 1. With `t_max`, only vertices with id <= t_max are candidates
    (vertex 2 always is, so a candidate exists).
    """
    size, width = from_one.shape
    length = from_one[:, 2]
    ids = np.arange(width)[None, :]
    candidate = (from_one + from_two == length[:, None]) & (from_one >= 1) & (ids <= num_vertices[:, None])
    if t_max is not None:
        candidate &= ids <= t_max
    # per-position candidate counts, so a position's total weight is k however many vertices it has
    position = np.where(candidate, from_one, 0)
    counts = np.zeros((size, width + 1), dtype=np.int64)
    np.add.at(counts, (np.broadcast_to(np.arange(size)[:, None], position.shape), position), candidate)
    per_vertex = np.take_along_axis(counts, position, axis=1)
    weight = np.where(candidate, from_one / np.maximum(per_vertex, 1), 0.0)
    cumulative = np.cumsum(weight, axis=1)
    u = rng.random(size) * cumulative[:, -1]
    return np.minimum((cumulative <= u[:, None]).sum(axis=1), width - 1).astype(np.int64)


# ---- balancing --------------------------------------------------------------------------------

def study_keep_probability(spec: GraphSpec, label: np.ndarray, path_length: np.ndarray) -> np.ndarray:
    """The study's acceptance rule (docs/study.md, Data), as a probability per graph."""
    unreachable = spec.max_vertices
    threshold = spec.threshold
    if spec.target == "fixed":
        d = label
        keep = np.where(d >= threshold, 1.0, 1.0 / (2.0 * np.maximum(threshold - d, 1)))
        return np.where(d == unreachable, spec.unreachable_keep_prob, keep)
    d = path_length  # on_path: balance the 1-2 distance; a missing path was already rejected
    keep = np.where(d >= threshold, 1.0, 1.0 / (3.0 * np.maximum(threshold - d, 1)))
    return np.where(d == unreachable, 0.0, keep)


def draw_raw(spec: GraphSpec, count: int | np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Unbalanced labelled graphs: `count` of them with uniform n, or one per entry of an array of
    vertex counts. on_path: only graphs where 2 is reachable (and, with t_max_rule 'redraw', whose
    target is <= t_max) survive; `row` gives each survivor's position among the draws."""
    if np.ndim(count) == 0:
        num_vertices = rng.integers(spec.n_min, spec.n_max + 1, size=int(count))
    else:
        num_vertices = np.asarray(count, dtype=np.int64)
    count = len(num_vertices)
    row = np.arange(count)
    edges = draw_edges(spec, num_vertices, rng)
    adjacency = adjacency_bitsets(edges, spec.max_vertices)
    from_one = distances_from(adjacency, 1, spec.max_vertices)
    path_length = from_one[:, 2]
    if spec.target == "fixed":
        target = np.full(count, 2, dtype=np.int64)
    elif spec.target == "any":
        target = rng.integers(2, spec.target_max + 1, size=count)
    else:
        connected = path_length < spec.max_vertices
        from_one, path_length, num_vertices, edges, adjacency, row = (
            from_one[connected], path_length[connected], num_vertices[connected], edges[connected],
            adjacency[connected], row[connected])
        from_two = distances_from(adjacency, 2, spec.max_vertices)
        redraw = spec.t_max_rule == "redraw"
        target = on_path_targets(from_one, from_two, num_vertices, None if redraw else spec.t_max, rng)
        if redraw and spec.t_max is not None:  # the study redraws a graph whose target is too large
            small = target <= spec.t_max
            from_one, path_length, num_vertices, edges, target, row = (
                from_one[small], path_length[small], num_vertices[small], edges[small], target[small],
                row[small])
    # vertices beyond n do not exist: their column stays at the unreachable label
    label = np.take_along_axis(from_one, target[:, None], axis=1)[:, 0]
    return dict(edges=edges, num_vertices=num_vertices.astype(np.int64), target=target,
                label=label, path_length=path_length, row=row)


def _select(arrays: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {name: value[mask] for name, value in arrays.items()}


def _concat(parts: list[dict[str, np.ndarray]], width: int) -> dict[str, np.ndarray]:
    out = {}
    for name in parts[0]:
        values = [p[name] for p in parts]
        if name == "edges":
            values = [np.pad(v, ((0, 0), (0, width - v.shape[1]), (0, 0))) for v in values]
        out[name] = np.concatenate(values)
    return out


def uniform_labels(spec: GraphSpec, rng: np.random.Generator, pilot: int = 200_000,
                   min_frequency: float = 1e-4) -> np.ndarray:
    """Labels the family produces often enough to balance on: frequency >= min_frequency in a
    seeded pilot draw (rarer labels, e.g. a 14-hop path in a 15-vertex reference graph, would
    need billions of draws and are left out)."""
    labels = draw_raw(spec, pilot, rng)["label"]
    values, counts = np.unique(labels, return_counts=True)
    return values[counts >= min_frequency * len(labels)]


BACKENDS = ("numba", "numpy")


def sample_arrays(spec: GraphSpec, size: int, rng, chunk: int = 65_536,
                  backend: str = "numba") -> dict[str, np.ndarray]:
    """Exactly `size` labelled graphs balanced by `spec.balance`, as int64 numpy arrays.

    backend "numba" (default) runs the compiled kernel (`fast.py`) on a stream keyed by one
    64-bit draw from `rng`; "numpy" runs the vectorized code below, the readable cross-check.
    The two give the same distribution, not the same graphs. `chunk` (raw graphs per numpy
    draw) matters to the numpy backend only.
    """
    rng = as_generator(rng)
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if spec.task != "distance":  # graphs of the same family, relabelled (tasks.py)
        return sample_task_arrays(spec, size, lambda source, count: sample_arrays(
            source, count, rng, chunk=chunk, backend=backend), rng)
    if backend == "numba":
        return _sample_arrays_numba(spec, size, rng)
    if spec.n_draw == "example":
        return _sample_per_example(spec, size, rng, chunk)
    width = spec.max_edges if spec.family != "erdos_renyi" else 1
    if spec.balance == "uniform":
        labels = uniform_labels(spec, rng)
        quota = np.full(len(labels), size // len(labels))
        quota[: size % len(labels)] += 1
        taken = np.zeros(len(labels), dtype=np.int64)
    parts, have = [], 0
    # a chunk a little larger than what is still needed (all of it when nothing is rejected)
    chunk = min(chunk, size if spec.balance == "none" else max(8 * size, 4096))
    while have < size:
        raw = draw_raw(spec, chunk, rng)
        raw.pop("row")
        if spec.balance == "study":
            keep = rng.random(len(raw["label"])) < study_keep_probability(spec, raw["label"], raw["path_length"])
        elif spec.balance == "uniform":
            slot = np.searchsorted(labels, raw["label"])
            known = (slot < len(labels)) & (labels[np.minimum(slot, len(labels) - 1)] == raw["label"])
            keep = np.zeros(len(slot), dtype=bool)
            for i in range(len(labels)):  # loop over labels, not graphs
                idx = np.flatnonzero(known & (slot == i))[: quota[i] - taken[i]]
                keep[idx] = True
                taken[i] += len(idx)
        else:
            keep = np.ones(len(raw["label"]), dtype=bool)
        kept = _select(raw, keep)
        width = max(width, kept["edges"].shape[1])
        parts.append(kept)
        have += len(kept["label"])
    out = _concat(parts, width)
    if spec.balance == "uniform":  # interleave labels so any prefix is balanced too
        out = _select(out, rng.permutation(len(out["label"])))
    return {name: value[:size] for name, value in out.items()}


def _accept(spec: GraphSpec, raw: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """(R,) bool: which raw graphs the spec's balance keeps (study or none)."""
    if spec.balance != "study":
        return np.ones(len(raw["label"]), dtype=bool)
    return rng.random(len(raw["label"])) < study_keep_probability(spec, raw["label"], raw["path_length"])


def _sample_per_example(spec: GraphSpec, size: int, rng: np.random.Generator,
                        chunk: int) -> dict[str, np.ndarray]:
    """The study's rule, vectorized: every example draws n once; each round tries `tries` graphs
    at each pending example's n and keeps its first accepted one (attempts are independent, so
    that is a draw from the accepted graphs at that n)."""
    num_vertices = rng.integers(spec.n_min, spec.n_max + 1, size=size)
    pending = np.arange(size)
    found: list[tuple[np.ndarray, dict]] = []
    tries, width = 2, spec.max_edges if spec.family != "erdos_renyi" else 1
    while len(pending):
        batch = pending[: max(chunk // tries, 1)]
        owner = np.repeat(batch, tries)
        raw = draw_raw(spec, num_vertices[owner], rng)
        keep = _accept(spec, raw, rng)
        accepted_rows = raw.pop("row")[keep]
        kept = _select(raw, keep)
        owners, first = np.unique(owner[accepted_rows], return_index=True)  # rows are in order
        found.append((owners, _select(kept, first)))
        width = max(width, kept["edges"].shape[1])
        pending = np.setdiff1d(pending, owners, assume_unique=True)
        rate = max(len(accepted_rows), 1) / len(owner)
        tries = int(np.clip(np.ceil(2.0 / rate), 1, 64))
    out = _concat([part for _, part in found], width)
    order = np.argsort(np.concatenate([owners for owners, _ in found]), kind="stable")
    return _select(out, order)


def _sample_arrays_numba(spec: GraphSpec, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    key = int(rng.integers(0, 2**64, dtype=np.uint64))
    arrays, _ = fast_arrays(spec, size, key)
    if spec.balance == "uniform":  # the kernel fills labels in turn; interleave them
        arrays = _select(arrays, np.random.default_rng(key).permutation(size))
    if spec.family == "erdos_renyi":  # up to n(n-1)/2 slots: keep only the ones in use
        arrays["edges"] = arrays["edges"][:, : max(int((arrays["edges"][..., 0] > 0).sum(1).max()), 1)]
    return {name: value.astype(np.int64) for name, value in arrays.items()}


def sample(spec: GraphSpec, size: int, rng, backend: str = "numba") -> GraphBatch:
    """Exactly `size` labelled, balanced graphs of `spec` as a `GraphBatch`."""
    return GraphBatch.from_numpy(sample_arrays(spec, size, rng, backend=backend), spec.max_vertices)


class StreamingSampler:
    """Endless batches of `spec`, each freshly sampled from the sampler's own generator.

    `state()` / `set_state()` capture and restore the generator, so training resumes exactly.
    """

    def __init__(self, spec: GraphSpec, batch_size: int, seed, backend: str = "numba"):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.spec, self.batch_size, self.backend = spec, batch_size, backend
        self.rng = as_generator(seed)

    def __iter__(self):
        return self

    def __next__(self) -> GraphBatch:
        return sample(self.spec, self.batch_size, self.rng, backend=self.backend)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
