"""`GraphBatch`: the one data type that flows through graphpath.

Shapes (batch-first):
    B  graphs in the batch
    M  edge slots per graph (the longest edge list in the batch; shorter lists are padded)

    edges         int64 [B, M, 2]  each real row (a, b) has 1 <= a < b <= num_vertices;
                                   padding rows are (0, 0) and come after every real row
    num_vertices  int64 [B]        n, the graph's vertices are 1..n
    target        int64 [B]        t, the vertex whose distance from vertex 1 is asked
    label         int64 [B]        BFS distance 1 -> t; unreachable = `max_vertices` (the
                                   distance task; other tasks' labels: data_gen/tasks.py)
    path_length   int64 [B]        BFS distance 1 -> 2; unreachable = `max_vertices`

`max_vertices` (a plain int) is the spec's vertex vocabulary and its "infinity" label; batches
with different `max_vertices` cannot be concatenated.

What a batch may hold is checked by `check_graphs`, the one validation every model, the BFS
labeller and the inference loop use: vertex ids in 1..num_vertices, num_vertices in
1..max_vertices, targets in 1..max_vertices. A target above num_vertices is allowed: the study's
any-target sets ask for vertices that are not in the graph (labelled unreachable), and tasks about
vertex 1 itself ask with t = 1.

A literal example (one graph, n = 4, edges 1-3, 2-3, 3-4, target 4, max_vertices 15):
    edges [[[1, 3], [2, 3], [3, 4], [0, 0]]], num_vertices [4], target [4], label [2],
    path_length [2]
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from .validate import check_graphs

TENSOR_FIELDS = ("edges", "num_vertices", "target", "label", "path_length")


@dataclass
class GraphBatch:
    edges: torch.Tensor  # (B, M, 2) int64
    num_vertices: torch.Tensor  # (B,) int64
    target: torch.Tensor  # (B,) int64
    label: torch.Tensor  # (B,) int64
    path_length: torch.Tensor  # (B,) int64
    max_vertices: int

    def __post_init__(self):
        if self.edges.dim() != 3 or self.edges.shape[-1] != 2:
            raise ValueError(f"edges must be [B, M, 2], got {tuple(self.edges.shape)}")
        size = self.edges.shape[0]
        for name in TENSOR_FIELDS[1:]:
            value = getattr(self, name)
            if value.shape != (size,):
                raise ValueError(f"{name} must be [{size}], got {tuple(value.shape)}")

    def check(self, vocabulary: int | None = None) -> "GraphBatch":
        """`check_graphs` on this batch (against a model's `vocabulary` if given); returns self."""
        check_graphs(self.edges, self.num_vertices, self.target, self.max_vertices, vocabulary)
        return self

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_edges(cls, graphs, max_vertices: int, target=2, num_vertices=None,
                   task: str = "distance") -> "GraphBatch":
        """A batch of hand-written graphs, labelled by the package's BFS (data_gen.graphs)."""
        from .graphs import batch_from_edges

        return batch_from_edges(graphs, max_vertices, target, num_vertices, task)

    @classmethod
    def from_networkx(cls, graphs, max_vertices: int, target=2, task: str = "distance") -> "GraphBatch":
        """A batch of networkx graphs on vertices 1..n, labelled by the package's BFS (data_gen.graphs)."""
        from .graphs import batch_from_networkx

        return batch_from_networkx(graphs, max_vertices, target, task)

    @classmethod
    def from_numpy(cls, arrays: dict[str, np.ndarray], max_vertices: int) -> "GraphBatch":
        """Wrap numpy arrays (any integer dtype) as int64 tensors; zero-copy when already int64."""
        tensors = {name: torch.as_tensor(np.asarray(arrays[name]).astype(np.int64, copy=False))
                   for name in TENSOR_FIELDS}
        return cls(**tensors, max_vertices=int(max_vertices))

    def numpy(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name).cpu().numpy() for name in TENSOR_FIELDS}

    @classmethod
    def cat(cls, batches: list["GraphBatch"]) -> "GraphBatch":
        """Concatenate along the batch axis, padding edge lists to the longest."""
        if not batches:
            raise ValueError("cannot concatenate an empty list of batches")
        max_vertices = {b.max_vertices for b in batches}
        if len(max_vertices) != 1:
            raise ValueError(f"cannot concatenate batches with different max_vertices {sorted(max_vertices)}")
        width = max(b.edges.shape[1] for b in batches)
        edges = torch.cat([torch.nn.functional.pad(b.edges, (0, 0, 0, width - b.edges.shape[1]))
                           for b in batches])
        rest = {name: torch.cat([getattr(b, name) for b in batches]) for name in TENSOR_FIELDS[1:]}
        return cls(edges=edges, **rest, max_vertices=batches[0].max_vertices)

    # ---- views ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.edges.shape[0]

    def __getitem__(self, index) -> "GraphBatch":
        """Slice or index (int, slice, index tensor, boolean mask) along the batch axis."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return GraphBatch(**{name: getattr(self, name)[index] for name in TENSOR_FIELDS},
                          max_vertices=self.max_vertices)

    @property
    def edge_mask(self) -> torch.Tensor:
        """(B, M) bool: True for real edges, False for padding rows."""
        return self.edges[..., 0] > 0

    @property
    def num_edges(self) -> torch.Tensor:
        """(B,) int64: real edges per graph."""
        return self.edge_mask.sum(dim=1)

    @property
    def device(self) -> torch.device:
        return self.edges.device

    def trim(self) -> "GraphBatch":
        """Drop edge columns that are padding in every graph (cheaper attention)."""
        width = int(self.num_edges.max()) if len(self) else 0
        if width == self.edges.shape[1]:
            return self
        return GraphBatch(edges=self.edges[:, :width], num_vertices=self.num_vertices,
                          target=self.target, label=self.label, path_length=self.path_length,
                          max_vertices=self.max_vertices)

    def to(self, device, non_blocking: bool = False) -> "GraphBatch":
        return GraphBatch(**{name: getattr(self, name).to(device, non_blocking=non_blocking)
                             for name in TENSOR_FIELDS}, max_vertices=self.max_vertices)

    def pin_memory(self) -> "GraphBatch":
        return GraphBatch(**{name: getattr(self, name).pin_memory() for name in TENSOR_FIELDS},
                          max_vertices=self.max_vertices)

    def equal(self, other: "GraphBatch") -> bool:
        """Exact equality of every field (edge padding width included)."""
        return self.max_vertices == other.max_vertices and all(
            getattr(self, f.name).shape == getattr(other, f.name).shape
            and torch.equal(getattr(self, f.name), getattr(other, f.name))
            for f in fields(self) if f.name in TENSOR_FIELDS)

    def __repr__(self) -> str:
        n = self.num_vertices
        span = f"n {int(n.min())}..{int(n.max())}" if len(self) else "empty"
        return (f"GraphBatch(B={len(self)}, M={self.edges.shape[1]}, {span}, "
                f"max_vertices={self.max_vertices}, device={self.device})")
