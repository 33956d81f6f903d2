"""Graphs written by hand (edge lists, networkx graphs) as a labelled `GraphBatch`.

Vertices are numbered as the study numbers them: 1..n, the source is vertex 1 and the study's
pre-training target is vertex 2. An edge may be written either way round; it is stored (a, b)
with a < b, as the study writes every edge (the learned model reads the pair in that order).
Repeated edges stay repeated tokens, as in the study's graphs. A self-loop is refused: the
study's generator drops such pairs, and dropping one silently here would change the tokens.

A networkx graph must have exactly the integer nodes 1..n (isolated vertices included); any
other naming is refused rather than guessed, because vertex 1 and vertex 2 carry meaning:
relabel with `networkx.relabel_nodes(g, mapping)` so your source is 1 and your target is where
you want it. Directed graphs are refused (the study's graphs are undirected).

Labels come from the package's bitset BFS (`data_gen.bfs`) for the distance task (unreachable =
`max_vertices`, a target above n is not in the graph and so unreachable), or from
`data_gen.tasks.task_labels` for another task; tests check both against networkx.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .batch import GraphBatch, check_graphs
from .bfs import adjacency_bitsets, distances_from
from .spec import TASK_TARGETS, TASKS


def _is_pair(item) -> bool:
    return (isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in item))


def _per_graph(value, count: int, name: str) -> list:
    if value is None or isinstance(value, (int, np.integer)):
        return [value] * count
    values = list(value)
    if len(values) != count:
        raise ValueError(f"{name} has {len(values)} entries for {count} graphs")
    return values


def _as_graph_list(graphs) -> list[list]:
    """A list of edge lists: `graphs` itself, or [graphs] when it is one graph's edge list."""
    if isinstance(graphs, np.ndarray):
        graphs = graphs.tolist()
    graphs = list(graphs)
    if not graphs:
        raise ValueError("no graphs given (one graph is a list of (a, b) pairs; no edges at all is [[]])")
    if _is_pair(graphs[0]):
        return [graphs]
    return [list(edges) for edges in graphs]


def label_arrays(edges: np.ndarray, num_vertices: np.ndarray, target: np.ndarray, max_vertices: int,
                 task: str = "distance") -> dict[str, np.ndarray]:
    """Checked and labelled arrays (`GraphBatch.from_numpy`'s): edges [B, M, 2] int64 with real
    rows first, num_vertices [B], target [B] -> plus label [B] and path_length [B] (1 -> 2)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} (choose from {', '.join(TASKS)})")
    check_graphs(edges, num_vertices, target, max_vertices)
    distance = distances_from(adjacency_bitsets(edges, max_vertices), 1, max_vertices)  # (B, V + 1)
    rows = np.arange(len(num_vertices))
    arrays = {"edges": edges, "num_vertices": num_vertices, "target": target,
              "label": distance[rows, target], "path_length": distance[:, 2]}
    if task != "distance":
        from .spec import GraphSpec
        from .tasks import task_labels

        spec = GraphSpec(n_min=3, n_max=max_vertices, max_vertices=max_vertices, task=task,
                         target=TASK_TARGETS[task][0])
        arrays["label"], arrays["target"] = task_labels(spec, arrays)
    return arrays


def batch_from_edges(graphs, max_vertices: int, target=2, num_vertices=None, task: str = "distance") -> GraphBatch:
    """A labelled batch of edge lists.

    graphs: a list of graphs, each a list of (a, b) pairs of vertex ids; one graph's list alone is
    taken as a batch of one. target: one id for every graph or one per graph (tasks about vertex
    1 itself use 1 whatever is given). num_vertices: per graph or shared; None = the graph's
    largest vertex id (at least 2); a target above n names a vertex the graph does not have
    (unreachable). Raises ValueError naming the graph and the limit for anything outside
    `data_gen.validate.check_graphs`' limits, and for a self-loop.
    """
    edge_lists = _as_graph_list(graphs)
    count = len(edge_lists)
    targets = _per_graph(target, count, "target")
    sizes = _per_graph(num_vertices, count, "num_vertices")
    width = max((len(edges) for edges in edge_lists), default=0)
    edges = np.zeros((count, width, 2), dtype=np.int64)  # (B, M, 2)
    for row, pairs in enumerate(edge_lists):
        for slot, pair in enumerate(pairs):
            if not _is_pair(pair):
                raise ValueError(f"graph {row}: edge {pair!r} is not a pair of integer vertex ids")
            a, b = sorted(int(v) for v in pair)
            if a == b:
                raise ValueError(f"graph {row}: edge {tuple(pair)} joins vertex {a} to itself; the study's graphs "
                                 "have no self-loops")
            if a < 1:
                raise ValueError(f"graph {row}: edge {tuple(pair)} has a vertex id below 1 (vertices are 1..n)")
            edges[row, slot] = (a, b)
        if sizes[row] is None:
            sizes[row] = max(2, int(edges[row].max()) if pairs else 2)
    arrays = label_arrays(edges, np.asarray(sizes, dtype=np.int64), np.asarray(targets, dtype=np.int64),
                          max_vertices, task)
    return GraphBatch.from_numpy(arrays, max_vertices)


def batch_from_networkx(graphs, max_vertices: int, target=2, task: str = "distance") -> GraphBatch:
    """A labelled batch of networkx graphs (one graph, or a list), each on the nodes 1..n exactly."""
    import networkx as nx

    graphs = [graphs] if isinstance(graphs, nx.Graph) else list(graphs)
    edge_lists, sizes = [], []
    for row, graph in enumerate(graphs):
        if not isinstance(graph, nx.Graph):
            raise ValueError(f"graph {row}: expected a networkx graph, got {type(graph).__name__}")
        if graph.is_directed():
            raise ValueError(f"graph {row}: a directed graph; the study's graphs are undirected "
                             "(use graph.to_undirected())")
        n = graph.number_of_nodes()
        nodes = set(graph.nodes)
        if nodes != set(range(1, n + 1)):
            odd = sorted((v for v in nodes if not (isinstance(v, (int, np.integer)) and 1 <= v <= n)), key=repr)
            raise ValueError(f"graph {row}: nodes must be the integers 1..{n} (vertex 1 is the source); found "
                             f"{odd[0]!r}. Relabel with networkx.relabel_nodes so the source is 1")
        edge_lists.append([(int(a), int(b)) for a, b in graph.edges()])
        sizes.append(n)
    return batch_from_edges(edge_lists, max_vertices, target, sizes, task)
