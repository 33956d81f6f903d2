"""Shortest-path labels: one plain BFS to read, and a batched bitset BFS to use.

`bfs_reference` is the readable definition every other labeller is checked against (tests use
networkx as the independent oracle for both). `distances_from` labels a whole batch at once with
one uint64 bitset per vertex (vertex v is bit v - 1), so it never loops over graphs in Python:
its loops run over BFS layers and vertex ids, each step a numpy operation over the batch.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from .validate import check_graphs


def neighbour_lists(num_vertices: int, edges) -> list[list[int]]:
    """Adjacency lists for vertices 0..num_vertices from (a, b) pairs; (0, 0) padding rows and
    self-pairs are ignored, a repeated edge appears repeatedly."""
    neighbours = [[] for _ in range(num_vertices + 1)]
    for a, b in edges:
        a, b = int(a), int(b)
        if a == 0 or a == b:
            continue
        neighbours[a].append(b)
        neighbours[b].append(a)
    return neighbours


def bfs_from(neighbours: list[list[int]], source: int, unreachable: int) -> list[int]:
    """Distances from `source` over adjacency lists (index 0 unused = unreachable)."""
    distance = [unreachable] * len(neighbours)
    distance[source] = 0
    queue = deque([source])
    while queue:
        vertex = queue.popleft()
        for other in neighbours[vertex]:
            if distance[other] == unreachable:
                distance[other] = distance[vertex] + 1
                queue.append(other)
    return distance


def bfs_reference(num_vertices: int, edges, source: int, unreachable: int) -> list[int]:
    """Distances from `source` to every vertex 0..num_vertices (index 0 unused = unreachable).

    `edges` is any iterable of (a, b) pairs; (0, 0) padding rows and self-pairs are ignored. An id
    outside 1..num_vertices is a ValueError (`data_gen.validate.check_graphs`).
    """
    edges = [tuple(int(v) for v in pair) for pair in edges]
    check_graphs(np.asarray(edges, dtype=np.int64).reshape(1, -1, 2), np.array([num_vertices]), np.array([source]),
                 num_vertices)
    return bfs_from(neighbour_lists(num_vertices, edges), source, unreachable)


def adjacency_bitsets(edges: np.ndarray, max_vertices: int) -> np.ndarray:
    """(B, V + 1) uint64: row v holds the neighbours of vertex v as bits (vertex u = bit u - 1).

    Padding rows (0, 0) land on the unused row 0 with bit pattern 0, so they change nothing.
    """
    size, width, _ = edges.shape
    adjacency = np.zeros((size, max_vertices + 1), dtype=np.uint64)
    a = edges[..., 0].astype(np.int64)
    b = edges[..., 1].astype(np.int64)
    real = a > 0
    rows = np.broadcast_to(np.arange(size)[:, None], a.shape)[real]
    a, b = a[real], b[real]
    one = np.uint64(1)
    np.bitwise_or.at(adjacency, (rows, a), one << (b - 1).astype(np.uint64))
    np.bitwise_or.at(adjacency, (rows, b), one << (a - 1).astype(np.uint64))
    return adjacency


def distances_from(adjacency: np.ndarray, source: np.ndarray | int, unreachable: int) -> np.ndarray:
    """(B, V + 1) int64 BFS distances from `source` (per graph or shared); column 0 unused."""
    size, width = adjacency.shape
    vertices = width - 1
    source = np.broadcast_to(np.asarray(source, dtype=np.int64), (size,))
    distance = np.full((size, width), unreachable, dtype=np.int64)
    distance[np.arange(size), source] = 0
    reach = np.uint64(1) << (source - 1).astype(np.uint64)
    frontier = reach.copy()
    bits = [np.uint64(0)] + [np.uint64(1) << np.uint64(v - 1) for v in range(1, vertices + 1)]
    for layer in range(1, vertices):
        grown = np.zeros(size, dtype=np.uint64)
        for v in range(1, vertices + 1):
            grown |= np.where(frontier & bits[v], adjacency[:, v], np.uint64(0))
        frontier = grown & ~reach
        if not frontier.any():
            break
        reach |= frontier
        for v in range(1, vertices + 1):
            distance[:, v] = np.where(frontier & bits[v], layer, distance[:, v])
    return distance
