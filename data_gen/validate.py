"""The one check of what a graph batch may hold, for every model, the BFS labeller and the
inference loop (numpy arrays or torch tensors alike; this module imports no torch).

Limits: vertex ids of real edge rows in 1..num_vertices of their graph, padding rows (0, 0);
num_vertices in 1..max_vertices; the target in 1..max_vertices. A target above num_vertices is
allowed on purpose: the study's any-target test sets ask for vertices the graph does not have
(their label is "unreachable"), and tasks about vertex 1 itself ask with t = 1.
"""
from __future__ import annotations

import numpy as np


def _first(mask) -> int:
    """Index of the first True of a 1-D boolean numpy array or torch tensor."""
    mask = mask.cpu().numpy() if hasattr(mask, "cpu") else np.asarray(mask)
    return int(np.flatnonzero(mask)[0])


def check_graphs(edges, num_vertices, target, max_vertices: int, vocabulary: int | None = None) -> None:
    """Raise ValueError naming the first graph (row) outside the limits and the limit it breaks.

    edges [B, M, 2], num_vertices [B], target [B] (numpy arrays or torch tensors on any device;
    one reduction, no copy of the batch). Real edge rows need ids in 1..num_vertices of their
    graph; padding rows are (0, 0). num_vertices lies in 1..max_vertices; the target in
    1..max_vertices (a target above n names a vertex that is not in the graph: unreachable).
    `vocabulary`: the largest vertex id a model can read; max_vertices may not exceed it.
    """
    if vocabulary is not None and max_vertices > vocabulary:
        raise ValueError(f"the batch's max_vertices {max_vertices} is above the model's vocabulary {vocabulary} "
                         f"(it reads vertex ids 1..{vocabulary})")
    a, b = edges[..., 0], edges[..., 1]  # (B, M)
    n = num_vertices[:, None]  # (B, 1)
    real = a > 0
    bad_edge = (a < 0) | (real & ((b < 1) | (a > n) | (b > n))) | (~real & (b != 0))  # (B, M)
    bad_n = (num_vertices < 1) | (num_vertices > max_vertices)
    bad_t = (target < 1) | (target > max_vertices)
    if len(num_vertices) == 0 or not bool((bad_n | bad_t | bad_edge.any(1)).any()):
        return
    if bool(bad_n.any()):
        row = _first(bad_n)
        raise ValueError(f"graph {row}: num_vertices {int(num_vertices[row])} is outside 1..{max_vertices} "
                         f"(max_vertices, the vocabulary)")
    if bool(bad_edge.any()):
        row = _first(bad_edge.any(1))
        pair = tuple(int(v) for v in edges[row][_first(bad_edge[row])])
        limit = int(num_vertices[row])
        raise ValueError(f"graph {row}: edge {pair} has a vertex id outside 1..{limit} (its num_vertices; "
                         f"padding rows are (0, 0))")
    row = _first(bad_t)
    raise ValueError(f"graph {row}: target {int(target[row])} is outside 1..{max_vertices} (max_vertices)")
