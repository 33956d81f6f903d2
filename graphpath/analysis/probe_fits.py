"""Linear probes, attention-along-edges and activation patching: the measurements behind
`python -m graphpath.interpret`, as functions of tensors and batches (no files, no CLI).

Shape glossary: B graphs, M edge slots, T = 1 + M tokens (target first), D width, H heads,
n = max_vertices, K hop counts probed (k = 0..K-1).

Probes are ridge regressions solved in closed form, `W = (X'X + lam I)^-1 X'Y` with a bias column,
fitted on the first graphs of a batch and scored on the rest (held out). Binary labels are
0/1 targets read at threshold 0.5; each is compared with its majority-class accuracy on the same
held-out graphs, so a probe is only informative where it beats that.
"""
from __future__ import annotations

import torch

from data_gen import GraphBatch


def adjacency(batch: GraphBatch) -> torch.Tensor:
    """(B, n, n) bool: u ~ v (vertex ids 1..n map to 0..n-1; padding and self-pairs dropped)."""
    n, edges = batch.max_vertices, batch.edges.long()
    adj = torch.zeros(len(batch), n + 1, n + 1, dtype=torch.bool)
    rows = torch.arange(len(batch))[:, None].expand_as(edges[..., 0])
    adj[rows, edges[..., 0], edges[..., 1]] = True
    adj[rows, edges[..., 1], edges[..., 0]] = True
    adj = adj[:, 1:, 1:].clone()
    adj.diagonal(dim1=1, dim2=2).fill_(False)
    return adj


def hop_labels(batch: GraphBatch, hops: int) -> torch.Tensor:
    """(B, n, K) bool: vertex v is within k hops of vertex 1, k = 0..hops-1 (breadth-first)."""
    adj = adjacency(batch).float()
    reach = torch.zeros(len(batch), batch.max_vertices)
    reach[:, 0] = 1.0
    out = [reach.bool()]
    for _ in range(hops - 1):
        reach = ((reach + torch.einsum("buv,bv->bu", adj, reach)) > 0).float()
        out.append(reach.bool())
    return torch.stack(out, dim=-1)


def distances_from(batch: GraphBatch, source: int) -> torch.Tensor:
    """(B, n) int64 breadth-first distance from vertex `source` (1-based) to every vertex; -1 where
    unreachable."""
    adj = adjacency(batch).float()
    reach = torch.zeros(len(batch), batch.max_vertices)
    reach[:, source - 1] = 1.0
    dist = torch.where(reach.bool(), 0, -1).long()
    for step in range(1, batch.max_vertices):
        grown = ((reach + torch.einsum("buv,bv->bu", adj, reach)) > 0).float()
        dist[(grown > reach)] = step
        reach = grown
    return dist


def on_path_targets(batch: GraphBatch) -> torch.Tensor:
    """(B,) bool: the target lies on a shortest 1 -> 2 path (2 reachable and d(1,t) + d(t,2) = d(1,2))."""
    rows, t = torch.arange(len(batch)), batch.target.long() - 1
    from_1, from_2 = distances_from(batch, 1), distances_from(batch, 2)
    d1t, d2t, d12 = from_1[rows, t], from_2[rows, t], from_1[:, 1]
    return (d12 >= 0) & (d1t >= 0) & (d2t >= 0) & (d1t + d2t == d12)


def endpoint_labels(batch: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """For every real edge token: (E, n) 0/1 which vertices it touches, and (B, M) the real mask."""
    mask = batch.edge_mask
    edges = batch.edges[mask].long()  # (E, 2)
    labels = torch.zeros(len(edges), batch.max_vertices + 1)
    labels[torch.arange(len(edges)), edges[:, 0]] = 1.0
    labels[torch.arange(len(edges)), edges[:, 1]] = 1.0
    return labels[:, 1:], mask


def ridge_fit(x: torch.Tensor, y: torch.Tensor, lam: float = 1e-3) -> torch.Tensor:
    """(D + 1, Y) weights with a bias row, least squares with an L2 penalty lam * N on the weights."""
    x = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    gram = x.T @ x + lam * len(x) * torch.eye(x.shape[1], dtype=torch.float64)
    return torch.linalg.solve(gram, x.T @ y.double())


def ridge_predict(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1) @ w


def split(count: int, train_share: float = 0.75) -> tuple[slice, slice]:
    cut = int(count * train_share)
    return slice(0, cut), slice(cut, count)


def binary_probe(x: torch.Tensor, y: torch.Tensor, lam: float = 1e-3) -> dict[str, torch.Tensor]:
    """x (N, D), y (N, Y) 0/1: held-out accuracy per label and the majority-class accuracy."""
    train, test = split(len(x))
    w = ridge_fit(x[train], y[train].float(), lam)
    predicted = ridge_predict(w, x[test]) > 0.5
    truth = y[test].bool()
    accuracy = (predicted == truth).double().mean(0)
    share = truth.double().mean(0)
    return {"accuracy": accuracy, "majority": torch.maximum(share, 1 - share)}


def scalar_probe(x: torch.Tensor, y: torch.Tensor, lam: float = 1e-3) -> dict[str, float]:
    """x (N, D), y (N,): held-out R^2 and MSE of a linear read-out."""
    train, test = split(len(x))
    w = ridge_fit(x[train], y[train, None].float(), lam)
    predicted = ridge_predict(w, x[test])[:, 0]
    truth = y[test].double()
    mse = float(((predicted - truth) ** 2).mean())
    variance = float(truth.var(unbiased=False))
    return {"r2": 1 - mse / variance if variance > 0 else float("nan"), "mse": mse}


def edge_attention(pattern: torch.Tensor, batch: GraphBatch) -> dict[str, torch.Tensor]:
    """pattern (B, H, T, T) over the learned model's tokens. For queries on edge tokens: the mean
    attention mass on keys that are edges sharing a vertex with the query edge ("along graph
    edges"), and the mass uniform attention over the real tokens would give them. Per head (H,)."""
    edges, mask = batch.edges.long(), batch.edge_mask  # (B, M, 2), (B, M)
    share = ((edges[:, :, None, :, None] == edges[:, None, :, None, :]).any(-1).any(-1)
             & mask[:, :, None] & mask[:, None, :])  # (B, M, M) edge i and edge j touch
    share.diagonal(dim1=1, dim2=2).fill_(False)
    on_edges = pattern[:, :, 1:, 1:] * share[:, None].float()  # (B, H, M, M)
    mass = on_edges.sum(-1)  # (B, H, M)
    real = 1 + mask.sum(-1, keepdim=True).float()  # (B, 1) real tokens incl. the target
    uniform = share.sum(-1).float() / real  # (B, M)
    weights = mask[:, None].float()
    count = weights.sum().clamp(min=1)
    return {"along_edges": (mass * weights).sum((0, 2)) / count,
            "uniform": ((uniform[:, None] * weights).sum((0, 2)) / count).expand(pattern.shape[1]),
            "on_target": (pattern[:, :, 1:, 0] * weights).sum((0, 2)) / count}


def restored(clean: torch.Tensor, corrupt: torch.Tensor, patched: torch.Tensor) -> float:
    """Share of the clean-vs-corrupt output gap a patch closes: 1 - mean|patched - clean| /
    mean|corrupt - clean| (1 = fully restored, 0 = no effect)."""
    gap = (corrupt - clean).abs().mean()
    return float(1 - (patched - clean).abs().mean() / gap) if gap > 0 else float("nan")
