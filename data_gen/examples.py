"""A small table of hand-drawn graphs with known answers, shared by every model and sampler test.

Each entry: `num_vertices`, `edges` (pairs (a, b), a < b, repeats allowed), `target`, `label`
(BFS distance 1 -> target) and `path_length` (distance 1 -> 2); `None` means unreachable, which
a batch writes as its `max_vertices`. The answers were worked out by hand (and a test checks
them against networkx). `hand_drawn_batch(max_vertices)` packs the rows that fit as a
`GraphBatch`.
"""
from __future__ import annotations

import torch

from .batch import GraphBatch

HAND_DRAWN: list[dict] = [
    # the direct edge
    dict(num_vertices=3, edges=[(1, 2)], target=2, label=1, path_length=1),
    # 1 - 3 - 2
    dict(num_vertices=3, edges=[(1, 3), (2, 3)], target=2, label=2, path_length=2),
    dict(num_vertices=3, edges=[(1, 3), (2, 3)], target=3, label=1, path_length=2),
    # batch.py's literal example: 1 - 3 - 2 and 3 - 4
    dict(num_vertices=4, edges=[(1, 3), (2, 3), (3, 4)], target=4, label=2, path_length=2),
    # no edges at all
    dict(num_vertices=3, edges=[], target=2, label=None, path_length=None),
    # a repeated edge, and a second component {3, 4}
    dict(num_vertices=4, edges=[(1, 2), (1, 2), (3, 4)], target=2, label=1, path_length=1),
    dict(num_vertices=4, edges=[(3, 4), (1, 2), (1, 2)], target=4, label=None, path_length=1),
    # vertex 1 isolated, the rest a path
    dict(num_vertices=5, edges=[(2, 3), (3, 4), (4, 5)], target=2, label=None, path_length=None),
    # the path 1 - 3 - 4 - 5 - 2, edges out of order
    dict(num_vertices=5, edges=[(4, 5), (1, 3), (2, 5), (3, 4)], target=2, label=4, path_length=4),
    dict(num_vertices=5, edges=[(4, 5), (1, 3), (2, 5), (3, 4)], target=5, label=3, path_length=4),
    # two shortest 1-2 paths (via 3, via 4) and a longer one 1 - 5 - 6 - 2
    dict(num_vertices=6, edges=[(1, 3), (2, 3), (1, 4), (2, 4), (1, 5), (5, 6), (2, 6)],
         target=6, label=2, path_length=2),
    dict(num_vertices=6, edges=[(1, 3), (2, 3), (1, 4), (2, 4), (1, 5), (5, 6), (2, 6)],
         target=4, label=1, path_length=2),
    # path 1 - 3 - 4 - 5 - 6 - 2 with the shortcut 1 - 6
    dict(num_vertices=6, edges=[(1, 3), (3, 4), (4, 5), (5, 6), (2, 6), (1, 6)],
         target=2, label=2, path_length=2),
    dict(num_vertices=6, edges=[(1, 3), (3, 4), (4, 5), (5, 6), (2, 6), (1, 6)],
         target=4, label=2, path_length=2),
    dict(num_vertices=6, edges=[(1, 3), (3, 4), (4, 5), (5, 6), (2, 6), (1, 6)],
         target=5, label=2, path_length=2),
    # the longest path 8 vertices allow: 1 - 3 - 4 - 5 - 6 - 7 - 8 - 2
    dict(num_vertices=8, edges=[(7, 8), (1, 3), (5, 6), (2, 8), (3, 4), (6, 7), (4, 5)],
         target=2, label=7, path_length=7),
    dict(num_vertices=8, edges=[(7, 8), (1, 3), (5, 6), (2, 8), (3, 4), (6, 7), (4, 5)],
         target=6, label=4, path_length=7),
    # a star around 1
    dict(num_vertices=8, edges=[(1, 2), (1, 3), (1, 4), (1, 5), (1, 6), (1, 7), (1, 8)],
         target=8, label=1, path_length=1),
    # a target beyond n does not exist: unreachable
    dict(num_vertices=4, edges=[(1, 2), (2, 3), (3, 4)], target=7, label=None, path_length=1),
    # a triangle 2-3-4 hanging off 1 by the edge 1 - 4
    dict(num_vertices=4, edges=[(2, 3), (3, 4), (2, 4), (1, 4)], target=3, label=2, path_length=2),
]


def hand_drawn_batch(max_vertices: int) -> GraphBatch:
    """The rows of `HAND_DRAWN` whose vertices and target fit in `max_vertices`, as a batch
    (unreachable = max_vertices, edges padded with (0, 0) to the longest list)."""
    rows = [row for row in HAND_DRAWN
            if row["num_vertices"] <= max_vertices and row["target"] <= max_vertices]
    width = max(len(row["edges"]) for row in rows)
    edges = torch.zeros(len(rows), width, 2, dtype=torch.int64)  # (B, M, 2)
    for i, row in enumerate(rows):
        if row["edges"]:
            edges[i, : len(row["edges"])] = torch.tensor(row["edges"])

    def column(name):
        return torch.tensor([max_vertices if row[name] is None else row[name] for row in rows])

    return GraphBatch(edges=edges, num_vertices=column("num_vertices"), target=column("target"),
                      label=column("label"), path_length=column("path_length"),
                      max_vertices=max_vertices)
