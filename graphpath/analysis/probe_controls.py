"""What a probe's score is measured against: Hewitt and Liang's control task, a label-permutation
baseline and a probe on graph statistics alone. Functions of tensors and batches (no files, no CLI).

Shape glossary: N tokens probed (graphs at the target token, edges at edge tokens), L labels
(one per property: "within k hops", k = 1..K-1), R control draws, B graphs, n = max_vertices.

    control_task_labels  Hewitt and Liang 2019 ("Designing and Interpreting Probes with Control
                         Tasks", EMNLP, section 2): every *type* gets one random label, drawn once
                         from the real label's distribution over tokens, and every token of that
                         type carries it. A probe can score on it only by memorising types, so
                         selectivity = score(task) - score(control) is what the probe reads beyond
                         the token's identity.
    permuted_labels      a label-permutation baseline (labels permuted among the tokens of one
                         type): not the control task; it keeps what the type predicts of the real
                         label and loses what the graph adds.
    probe_with_controls  the task, its permutation and its control draws fitted together (one SVD)
    graph_statistics     the features of the graph-statistics baseline probe

What a type is, per probed property (the token's identity, the input the probe's representation
starts from; the learned model has no positional encoding, so nothing else tells tokens apart):

    target token, "the target is within k hops of 1"      the target's vertex id t (in pre-training
                                                          always t = 2: one type, no control task)
    edge token, "its first / second endpoint is within    the edge's (a, b) pair, a < b: the token,
    k hops of 1"                                          for both endpoint properties
"""
from __future__ import annotations

import numpy as np
import torch

from data_gen import GraphBatch
from graphpath.analysis import probe_fits as P

CONTROL_DRAWS = 4  # control labellings per property, scores averaged: with few types (the fine-tuned target: t in
# 2..7) one draw's score depends on which types it happened to label alike, and the fits share one SVD, so 4 are cheap
REDRAWS = 100  # a draw whose rarer class is under P.MIN_SHARE cannot be scored (as a near-trivial real label is
# not): it is drawn again, up to this many times, so the control is H&L's task conditioned on being scorable


def control_task_labels(types: torch.Tensor, y: torch.Tensor, rng: np.random.Generator,
                        draws: int = CONTROL_DRAWS) -> torch.Tensor:
    """(R, N, L) float: Hewitt and Liang's control task, `draws` times. types (N,) int (the token's
    type), y (N, L) or (N,) 0/1 real labels. Per draw and label j, every distinct type gets label 1
    with probability share_j (the real label's positive share over the N tokens) and keeps it for
    all its tokens. A draw whose rarer class is under P.MIN_SHARE is redrawn (REDRAWS tries); a
    label left unscorable, and every label when there are fewer than two types, is NaN."""
    y = y.reshape(len(y), -1).float()
    kinds, inverse = torch.unique(types, return_inverse=True)  # (U,), (N,)
    out = torch.full((draws, *y.shape), float("nan"))
    if len(kinds) < 2:
        return out
    share = y.mean(0).numpy()  # (L,)
    index = inverse.numpy()
    for draw in range(draws):
        for j, p in enumerate(share):
            for _ in range(REDRAWS):
                labels = (rng.random(len(kinds)) < p)[index]  # (N,) one label per type
                if min(labels.mean(), 1 - labels.mean()) >= P.MIN_SHARE:
                    out[draw, :, j] = torch.from_numpy(labels.astype(np.float32))
                    break
    return out


def permuted_labels(types: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
    """(N, L) the label-permutation baseline: the rows of y (N, L) permuted among the tokens of one
    type (`types` (N,) int). Per-type label counts are kept, so it keeps what the type predicts of
    the real label and loses what the graph adds; where every token has one type it is a full
    permutation (chance). Not Hewitt and Liang's control task (`control_task_labels`)."""
    generator = torch.Generator().manual_seed(seed)
    y = y.reshape(len(y), -1)
    order = torch.arange(len(y))
    for kind in torch.unique(types):
        members = (types == kind).nonzero().flatten()
        order[members] = members[torch.randperm(len(members), generator=generator)]
    return y[order].float()


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    count = np.isfinite(values).sum(axis=axis)
    total = np.where(np.isfinite(values), values, 0.0).sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def probe_with_controls(x: torch.Tensor, y: torch.Tensor, permuted: torch.Tensor, control: torch.Tensor,
                        seed: int, rank: int | None = None, groups=None) -> dict[str, np.ndarray]:
    """x (N, D); y, permuted (N, L); control (R, N, L) (`control_task_labels`). Linear probes
    (P.binary_probe: ridge, penalty by inner LOO CV, out-of-fold) on all 2 + R label sets at once.
    Returns (L,) arrays: `auroc`, `balanced_accuracy` (the task), `permuted` (its AUROC),
    `control`, `control_balanced_accuracy` (mean over the draws that could be scored),
    `beyond_permuted` = auroc - permuted, `selectivity` = auroc - control and
    `selectivity_balanced_accuracy` (Hewitt and Liang 2019, section 2: task minus control);
    NaN where a label is near-trivial or has no control. `rank`: the probes read only the top `rank`
    principal directions of each fold's training rows (P.Ridge; graphpath.analysis.probe_capacity).
    `groups` (N,) int: the graph of each token; folds and penalty CV never split a graph (P.folds)."""
    y, permuted = y.reshape(len(y), -1), permuted.reshape(len(y), -1)
    labels = y.shape[1]
    fit = P.binary_probe(x, torch.cat([y, permuted, *control.unbind(0)], dim=1), seed, rank=rank,
                         groups=groups)
    auroc, balanced = fit["auroc"].reshape(-1, labels), fit["balanced_accuracy"].reshape(-1, labels)  # (2 + R, L)
    control_auroc, control_balanced = _nanmean(auroc[2:], 0), _nanmean(balanced[2:], 0)
    return {"auroc": auroc[0], "balanced_accuracy": balanced[0], "permuted": auroc[1],
            "beyond_permuted": auroc[0] - auroc[1], "control": control_auroc,
            "control_balanced_accuracy": control_balanced, "selectivity": auroc[0] - control_auroc,
            "selectivity_balanced_accuracy": balanced[0] - control_balanced}


def component_sizes(batch: GraphBatch, vertex: torch.Tensor) -> torch.Tensor:
    """(B,) int64: the number of vertices in the connected component of `vertex` (B,) (1-based; a
    vertex outside the graph, > n, gets 0)."""
    adj = P.adjacency(batch).float()  # (B, n, n)
    rows = torch.arange(len(batch))
    present = vertex <= batch.num_vertices
    reach = torch.zeros(len(batch), batch.max_vertices)
    reach[rows, (vertex.long() - 1).clamp(0, batch.max_vertices - 1)] = 1.0
    for _ in range(batch.max_vertices - 1):
        reach = ((reach + torch.einsum("buv,bv->bu", adj, reach)) > 0).float()
    return torch.where(present, reach.sum(1), torch.zeros(len(batch))).long()


def graph_statistics(batch: GraphBatch) -> torch.Tensor:
    """(B, 2n + 5) what a probe could read from counts about the target and the source, without the
    graph's paths: the target's degree one-hot (columns 0..n-1: degree 0..n-1, so any function of the
    degree is linear in them), whether the target is isolated (degree 0), the size of its connected
    component (0 when t > n, the target not in the graph: its one-hot row is then all zero), the
    number of edge tokens, the vertex count n, then the source's (vertex 1's) degree one-hot (n
    columns) and the size of its component. Whether 1 and t share a component is left out: at large
    k that is the label itself."""
    n = batch.max_vertices
    rows = torch.arange(len(batch))
    present = batch.target <= batch.num_vertices
    adjacency = P.adjacency(batch).sum(-1)  # (B, n) degrees
    degree = adjacency[rows, (batch.target.long() - 1).clamp(max=n - 1)]  # (B,)
    one_hot = torch.nn.functional.one_hot(degree.clamp(max=n - 1), n).float() * present[:, None]  # (B, n)
    isolated = ((degree == 0) & present).float()
    source = torch.nn.functional.one_hot(adjacency[:, 0].clamp(max=n - 1), n).float()  # (B, n) vertex 1's degree
    source_size = component_sizes(batch, torch.ones(len(batch), dtype=torch.long)).float()
    return torch.cat([one_hot, torch.stack([isolated, component_sizes(batch, batch.target).float(),
                                            batch.edge_mask.sum(1).float(), batch.num_vertices.float()], dim=1),
                      source, source_size[:, None]], dim=1)
