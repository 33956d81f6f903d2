"""Independent oracles every test suite can use: networkx distances, the hand-drawn table, and a
graph-by-graph Python re-implementation of the study's data generator (`mkbatch` in its notebook).

None of this imports the package's samplers or BFS: a test that compares them with this module
compares two independent implementations.

    distances(n, edges, source) -> {vertex: hops}         networkx BFS over vertices 1..n
    label_of(n, edges, target, unreachable) -> int         distance 1 -> target, or `unreachable`
    batch_labels(batch) -> list[int]                       label_of for every graph of a GraphBatch
    task_label(task, n, edges, target, unreachable) -> int  the label of any data_gen task
    study_batch(name, size, seed, ...) -> list[(n, t, label)]  the notebook's rules, one graph at a time
    check_against_networkx(spec, arrays) -> coverage       every sampled graph well formed and labelled right
    HAND_DRAWN                                             data_gen.examples' table, re-exported
"""
from __future__ import annotations

import random
from collections import deque

import networkx as nx
import numpy as np

from data_gen.examples import HAND_DRAWN  # noqa: F401  (the one hand-drawn table, re-exported)


def distances(num_vertices: int, edges, source: int) -> dict[int, int]:
    """networkx: hops from `source` to every vertex it reaches, over vertices 1..num_vertices."""
    graph = nx.Graph()
    graph.add_nodes_from(range(1, num_vertices + 1))
    graph.add_edges_from((int(a), int(b)) for a, b in edges if a > 0)
    return nx.single_source_shortest_path_length(graph, source)


def label_of(num_vertices: int, edges, target: int, unreachable: int, source: int = 1) -> int:
    """networkx: distance source -> target; `unreachable` when there is no path or t > n."""
    if target > num_vertices:
        return unreachable
    return distances(num_vertices, edges, source).get(target, unreachable)


def batch_labels(batch) -> list[int]:
    """networkx: `label_of` for every graph of a GraphBatch (unreachable = its max_vertices)."""
    return [label_of(n, edges, t, batch.max_vertices)
            for edges, n, t in zip(batch.edges.tolist(), batch.num_vertices.tolist(), batch.target.tolist())]


def check_against_networkx(spec, arrays: dict) -> dict:
    """Assert every graph of sampled `arrays` (numpy, as `sample_arrays` returns) is well formed for
    `spec` (a GraphSpec) and labelled as networkx says; returns coverage facts."""
    unreachable = spec.max_vertices
    seen = dict(unreachable=0, repeated=0, beyond_n=0, sizes=set())
    for i in range(len(arrays["label"])):
        n, t = int(arrays["num_vertices"][i]), int(arrays["target"][i])
        edges = arrays["edges"][i]
        real = edges[:, 0] > 0
        count = int(real.sum())
        assert real[:count].all() and not edges[count:].any(), "padding must follow the real edges"
        rows = edges[:count]
        assert ((1 <= rows[:, 0]) & (rows[:, 0] < rows[:, 1]) & (rows[:, 1] <= n)).all()
        assert spec.n_min <= n <= spec.n_max
        if spec.family == "reference":
            assert count <= n
        if spec.family in ("tree", "path"):
            assert count == n - 1 and nx.is_tree(nx.Graph([tuple(r) for r in rows.tolist()]))
        if spec.family == "path":
            assert max(np.bincount(rows.ravel(), minlength=n + 1)) <= 2
        from_one = distances(n, rows, 1)
        d12 = from_one.get(2, unreachable)
        assert arrays["path_length"][i] == d12
        expected = from_one.get(t, unreachable) if t <= n else unreachable
        assert arrays["label"][i] == expected, f"graph {i}: label {arrays['label'][i]} != {expected}"
        if spec.target == "fixed":
            assert t == 2
        elif spec.target == "on_path":
            from_two = distances(n, rows, 2)
            assert d12 < unreachable and t != 1
            assert from_one[t] + from_two[t] == d12, "target must lie on a shortest 1-2 path"
            assert t <= (spec.t_max or n)
        else:
            assert 2 <= t <= spec.target_max
        seen["unreachable"] += int(expected == unreachable)
        seen["repeated"] += int(len({tuple(r) for r in rows.tolist()}) < count)
        seen["beyond_n"] += int(t > n)
        seen["sizes"].add(n)
    return seen


def task_label(task: str, num_vertices: int, edges, target: int, unreachable: int) -> int:
    """networkx: the label of data_gen's task `task` (GraphSpec.task) for one graph."""
    if task == "distance":
        return label_of(num_vertices, edges, target, unreachable)
    graph = nx.Graph()
    graph.add_nodes_from(range(1, num_vertices + 1))
    graph.add_edges_from((int(a), int(b)) for a, b in edges if a > 0)
    if task == "degree":
        return graph.degree(target) if target <= num_vertices else 0
    component = nx.node_connected_component(graph, 1)
    if task == "reachable":
        return int(target in component)
    if task == "reach_count":
        return len(component) - 1
    if task == "eccentricity":
        return nx.eccentricity(graph.subgraph(component), 1)
    raise ValueError(f"no oracle for task {task!r}")


# ---- the study's generator, per graph, in plain Python ------------------------------------------
# Read from `mkbatch` / `random_graph` / `SSSP` in the study's transformer_shortest_paths.ipynb,
# with its constants (MIN_VTXS 3, MAX_VTXS 15, MAX_TUNE_VTXS 7, AVG_DEG 2, thresholds 6 and 4)
# as parameters so the same rules run at the CPU sizes.

# preset name -> (large, target, largetarget), the notebook's call for that set
STUDY_CALLS = {
    "pretrain": (True, 2, True),
    "finetune": (False, "onpath", True),
    "test-onpath-small": (True, "onpath", False),
    "test-onpath-large": (True, "onpath", True),
    "test-any-small": (False, "any", False),
    "test-any-large-smalltarget": (True, "any", False),
    "test-any-large": (True, "any", True),
}


def _random_graph(rng: random.Random, n: int):
    """n pairs of uniform vertices; self-pairs dropped, repeats kept (random_graph, AVG_DEG 2)."""
    edges, adjacency = [], [set() for _ in range(n + 1)]
    indices = [rng.randint(1, n) for _ in range(2 * n)]
    for i in range(0, len(indices), 2):
        u, v = indices[i], indices[i + 1]
        if u != v:
            edges.append((min(u, v), max(u, v)))
            adjacency[u].add(v)
            adjacency[v].add(u)
    return edges, adjacency


def _bfs_path(adjacency, target: int) -> list[int]:
    """SSSP(..., distonly=False): the BFS-tree path 1 -> target, [] if unreachable."""
    parent = {1: -1}
    frontier = deque([1])
    while frontier:
        vertex = frontier.popleft()
        for x in adjacency[vertex]:
            if x not in parent:
                parent[x] = vertex
                frontier.append(x)
                if x == target:
                    path = [x]
                    while parent[x] != -1:
                        x = parent[x]
                        path.append(x)
                    return path[::-1]
    return []


def study_example(rng: random.Random, large: bool, target, largetarget: bool, max_vtxs: int = 15,
                  max_tune_vtxs: int = 7, small_target: int | None = None, min_vtxs: int = 3,
                  pretrain_threshold: int = 6, tune_threshold: int = 4):
    """One example of `mkbatch(1, large, target, largetarget)`: (n, edges, t, label)."""
    small_target = max_tune_vtxs if small_target is None else small_target
    n = rng.randint(min_vtxs, max_vtxs if large else max_tune_vtxs)  # once, outside the retry loop
    while True:
        edges, adjacency = _random_graph(rng, n)
        if target == 2:
            path = _bfs_path(adjacency, 2)
            dist = len(path) - 1 if path else max_vtxs
            low = pretrain_threshold
            if (low <= dist < max_vtxs or (dist < low and 2 * rng.random() < 1 / (low - dist))
                    or (dist == max_vtxs and rng.random() < 1 / max_vtxs)):
                return n, edges, 2, dist
        elif target == "onpath":
            path = _bfs_path(adjacency, 2)
            dist = len(path) - 1
            low = tune_threshold
            if dist < 1 or (not large and dist < low and 3 * rng.random() > 1 / (low - dist)):
                continue
            dist = rng.choices(range(1, len(path)), weights=range(1, len(path)))[0]
            if largetarget or path[dist] <= small_target:
                return n, edges, path[dist], dist
        else:
            t = rng.randint(2, max_vtxs if largetarget else small_target)
            path = _bfs_path(adjacency, t) if t <= n else []
            return n, edges, t, (len(path) - 1 if path else max_vtxs)


def study_batch(name: str, size: int, seed: int, n_max: int = 15, finetune_n_max: int = 7,
                small_target: int = 7, pretrain_threshold: int = 6, tune_threshold: int = 4):
    """`size` examples of the study's set `name` (a preset name): [(n, t, label)].

    Keywords mirror `data_gen.study_presets` (thresholds given explicitly, the study's by default).
    """
    rng = random.Random(seed)
    large, target, largetarget = STUDY_CALLS[name]
    rows = []
    for _ in range(size):
        n, _, t, label = study_example(rng, large, target, largetarget, n_max, finetune_n_max,
                                       small_target, 3, pretrain_threshold, tune_threshold)
        rows.append((n, t, label))
    return rows


def total_variation(a, b, top: int) -> float:
    """Total-variation distance between the histograms of two integer samples in [0, top]."""
    p = np.bincount(np.asarray(a), minlength=top + 1) / len(a)
    q = np.bincount(np.asarray(b), minlength=top + 1) / len(b)
    return 0.5 * float(np.abs(p - q).sum())
