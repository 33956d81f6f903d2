"""Linear probes, attention-along-edges and activation patching: the measurements behind
`python -m graphpath.interpret`, as functions of tensors and batches (no files, no CLI).

Shape glossary: B graphs, M edge slots, T = 1 + M tokens (target first), D width, H heads,
n = max_vertices, K hop counts probed (k = 0..K-1).

Probes are ridge regressions (`Ridge`: the penalty per label chosen from ALPHAS by exact
leave-one-out cross-validation on the training folds) scored out of fold over FOLDS
outer folds: a binary label by AUROC and balanced accuracy (both 0.5 for a probe that knows
nothing, whatever the class balance), a scalar by R^2. Labels whose rarer class is under
MIN_SHARE are near-trivial and skipped. What a probe's score is set against (Hewitt and Liang's
control task, a label-permutation baseline, graph statistics) is graphpath.analysis.probe_controls.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score

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


ALPHAS = tuple(10.0 ** k for k in range(-3, 5))  # ridge penalties the inner cross-validation chooses from
FOLDS = 4  # outer folds: every graph is scored once, by a probe that never saw it
MIN_SHARE = 0.05  # a label whose rarer class is under 5% of the graphs is near-trivial: not probed


def target_reach_labels(batch: GraphBatch, hops: int) -> torch.Tensor:
    """(B, hops - 1) 0/1: the target is within k hops of vertex 1, k = 1..hops-1 (what the answer needs)."""
    d = distances_from(batch, 1)[torch.arange(len(batch)), batch.target.long() - 1]  # (B,), -1 unreachable
    k = torch.arange(1, hops)
    return ((d[:, None] >= 0) & (d[:, None] <= k[None])).float()


def edge_reach_labels(batch: GraphBatch, hops: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For every real edge token (E of them): (E, 2 (hops - 1)) 0/1 "its first endpoint is within k
    hops of vertex 1", then the same for its second endpoint, k = 1..hops-1 (the vertices' reach,
    read where the learned model keeps a vertex: on the edges that name it), and (E,) its type
    a * (n + 1) + b (the token's identity, for the control task and the permutation baseline)."""
    reach = hop_labels(batch, hops)[..., 1:].float()  # (B, n, K-1)
    mask = batch.edge_mask
    rows = torch.arange(len(batch))[:, None].expand_as(mask)[mask]  # (E,)
    edges = batch.edges[mask].long()  # (E, 2)
    first, second = reach[rows, edges[:, 0] - 1], reach[rows, edges[:, 1] - 1]  # (E, K-1) each
    return torch.cat([first, second], dim=1), edges[:, 0] * (batch.max_vertices + 1) + edges[:, 1]


def folds(count: int, seed: int, k: int = FOLDS, groups: np.ndarray | None = None) -> list[np.ndarray]:
    """k disjoint test index sets covering range(count), shuffled by `seed`. `groups` (count,) int: the
    folds are drawn over groups, not rows, so every group (the graph a token came from) lies wholly in
    one fold (what scikit-learn's GroupKFold guarantees; here the groups are shuffled by `seed` and split
    into k near-equal runs, so with one row per group these are exactly the ungrouped folds)."""
    if groups is None:
        order = np.random.default_rng(seed).permutation(count)
        return [np.sort(part) for part in np.array_split(order, k)]
    groups = np.asarray(groups)
    if len(groups) != count:
        raise ValueError(f"groups has {len(groups)} entries for {count} rows")
    kinds, inverse = np.unique(groups, return_inverse=True)
    if len(kinds) < k:
        raise ValueError(f"{len(kinds)} groups cannot fill {k} folds")
    order = np.random.default_rng(seed).permutation(len(kinds))
    return [np.flatnonzero(np.isin(inverse, part)) for part in np.array_split(order, k)]


class _GroupLayout:
    """Rows padded into groups once per fit: `index` (G, m) row ids (-1 padding), `real` (G, m),
    `u` (G, m, r) the rows of U (0 at padding), `ones` (G, m, m) the intercept's 1/N block."""

    def __init__(self, u: np.ndarray, groups: np.ndarray):
        kinds, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        slot = np.arange(len(order)) - np.repeat(starts, counts)  # position of each sorted row in its group
        self.index = np.full((len(kinds), counts.max()), -1)
        self.index[inverse[order], slot] = order
        self.real = self.index >= 0
        self.u = np.where(self.real[..., None], u[self.index], 0.0)
        self.ones = (self.real[:, :, None] & self.real[:, None, :]) / len(u)
        self.eye = np.eye(self.index.shape[1])[None]

    def loo(self, shrink: np.ndarray, residual: np.ndarray) -> np.ndarray:
        """(N, L) leave-one-group-out residuals of a linear smoother, exactly: for a group g,
        y_g - fit_(-g),g = (I - H_gg)^-1 (y_g - fit_g), with H = U diag(shrink) U^T + 1 1^T / N the
        ridge hat matrix, intercept included (the block form, by the Woodbury identity, of the
        leave-one-out identity of Hastie, Tibshirani and Friedman, ESL 2nd ed., exercise 7.3).
        shrink (r,), residual (N, L); padded rows carry the identity."""
        hat = (self.u * shrink) @ self.u.transpose(0, 2, 1) + self.ones  # (G, m, m)
        padded = np.concatenate([residual, np.zeros((1, residual.shape[1]))])  # index -1: the zero row
        solved = np.linalg.inv(self.eye - hat) @ padded[self.index]  # (G, m, L); inv: m is small, L is not
        out = np.empty_like(residual)
        out[self.index[self.real]] = solved[self.real]
        return out


def _group_loo(u: np.ndarray, shrink: np.ndarray, residual: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(N, L) leave-one-group-out residuals (`_GroupLayout.loo`); u (N, r), shrink (r,), residual
    (N, L), groups (N,) int."""
    return _GroupLayout(u, groups).loo(shrink, residual)


class Ridge:
    """Ridge regression with an unpenalised intercept and its penalty per target chosen from ALPHAS by
    exact leave-one-out error, computed in closed form from one SVD of the centred design (Golub,
    Heath and Wahba 1979; Hastie, Tibshirani and Friedman, ESL 2nd ed., section 7.10.1): with
    X = U S V^T, the fit for penalty a is U diag(s^2 / (s^2 + a)) U^T y and the leave-one-out
    residual (y - fit) / (1 - h_ii). The same model as scikit-learn's RidgeCV (tests hold them
    equal), without its per-alpha n x n diagonal products, so thousands of edge tokens fit fast.
    x (N, D), y (N,) or (N, L). `rank` r: the same ridge on the projection of x onto its top r
    principal directions, found from these rows alone (PCA of the centred x: keeping r singular
    triples gives Z = x V_r, whose own SVD is U_r S_r, so the closed forms hold unchanged; tests hold
    it equal to scikit-learn's PCA then RidgeCV); None: every direction. `groups` (N,) int: the penalty
    is chosen by leave-one-group-out error instead (`_group_loo`, exact in closed form), so rows of one
    graph, which share its labels and context, never score each other."""

    def __init__(self, x: np.ndarray, y: np.ndarray, rank: int | None = None, groups: np.ndarray | None = None):
        if rank is not None and rank < 1:
            raise ValueError(f"rank must be >= 1 or None, got {rank}")
        y2 = y.reshape(len(y), -1)
        self.x_mean, self.y_mean = x.mean(axis=0), y2.mean(axis=0)
        u, sv, vt = np.linalg.svd(x - self.x_mean, full_matrices=False)  # (N, r), (r,), (r, D)
        u, sv, vt = u[:, :rank], sv[:rank], vt[:rank]  # the top `rank` principal directions (all when None)
        uty = u.T @ (y2 - self.y_mean)  # (r, L)
        layout = None if groups is None else _GroupLayout(u, groups)
        best = np.full(y2.shape[1], np.inf)
        self.alpha = np.zeros(y2.shape[1])
        coef = np.zeros((x.shape[1], y2.shape[1]))
        for alpha in ALPHAS:
            shrink = sv ** 2 / (sv ** 2 + alpha)  # (r,)
            fit = u @ (shrink[:, None] * uty)  # (N, L)
            hat = (u ** 2) @ shrink + 1.0 / len(x)  # (N,) leverage, intercept included
            residual = y2 - self.y_mean - fit  # (N, L)
            if groups is None:
                loo = ((residual / (1 - hat)[:, None]) ** 2).mean(axis=0)  # (L,)
            else:
                loo = (layout.loo(shrink, residual) ** 2).mean(axis=0)
            better = loo < best
            best[better], self.alpha[better] = loo[better], alpha
            coef[:, better] = (vt.T @ ((sv / (sv ** 2 + alpha))[:, None] * uty))[:, better]
        self.coef = coef  # (D, L)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (x - self.x_mean) @ self.coef + self.y_mean  # (N, L)


def _ridge(x: np.ndarray, y: np.ndarray, rank: int | None = None, groups: np.ndarray | None = None) -> Ridge:
    return Ridge(x, y, rank, groups)


def binary_probe(x: torch.Tensor, y: torch.Tensor, seed: int = 0, weight=None,
                 rank: int | None = None, groups=None) -> dict[str, np.ndarray]:
    """x (N, D), y (N, L) 0/1. Linear probes (ridge on the 0/1 label, penalty by inner LOO CV),
    scored out of fold by AUROC and by balanced accuracy, the ridge output thresholded at the
    training fold's positive share of that label (the prior: a threshold of 0.5 would call nearly
    everything positive where the share is 0.9). Returns (L,) arrays `auroc`,
    `balanced_accuracy` (NaN for a near-trivial label: rarer class < MIN_SHARE) and `share` (the
    label's positive rate). `weight` (N,) >= 0: the scores (and the shares) weighted per example
    (roc_auc_score's sample_weight), the probe itself fitted unweighted. `rank`: each fold's probe
    reads only the top `rank` principal directions of that fold's training rows (Ridge's `rank`).
    `groups` (N,) int, e.g. the graph each token came from: outer folds and the inner penalty CV are
    drawn over groups (`folds`, Ridge's `groups`), so no graph has tokens on both sides of a split."""
    xs, ys = x.double().numpy(), y.double().numpy().reshape(len(x), -1)
    groups = None if groups is None else np.asarray(groups)
    w = np.ones(len(xs)) if weight is None else np.asarray(weight, dtype=np.float64)
    share = (w[:, None] * ys).sum(axis=0) / w.sum()
    live = np.flatnonzero(np.minimum(share, 1 - share) >= MIN_SHARE)
    scores = np.zeros((len(xs), len(live)))
    predicted = np.zeros((len(xs), len(live)), dtype=bool)
    for test in folds(len(xs), seed, groups=groups):
        train = np.setdiff1d(np.arange(len(xs)), test)
        scores[test] = _ridge(xs[train], ys[train][:, live], rank,
                              None if groups is None else groups[train]).predict(xs[test])
        predicted[test] = scores[test] > ys[train][:, live].mean(axis=0)
    auroc, balanced = np.full(ys.shape[1], np.nan), np.full(ys.shape[1], np.nan)
    truth = ys[:, live] > 0.5  # (N, L')
    balanced[live] = balanced_accuracy(truth, predicted, w)
    if weight is None:
        auroc[live] = auroc_by_ranks(truth, scores)
    else:
        for j, label in enumerate(live):
            auroc[label] = roc_auc_score(truth[:, j], scores[:, j], sample_weight=w)
    return {"auroc": auroc, "balanced_accuracy": balanced, "share": share}


def auroc_by_ranks(truth: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(L,) AUROC of every column of scores (N, L) against truth (N, L) bool, both classes present:
    the Mann-Whitney U of the positives' scores over n_pos n_neg, ties counted one half (Hanley and
    McNeil 1982, Radiology 143, eq. 2; what sklearn's roc_auc_score computes, for all columns at once
    without its per-call validation: tests hold them equal)."""
    ranks = stats.rankdata(scores, axis=0)  # (N, L) average ranks for ties
    positives = truth.sum(axis=0)
    negatives = len(truth) - positives
    u = (ranks * truth).sum(axis=0) - positives * (positives + 1) / 2
    return u / (positives * negatives)


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """(L,) (true-positive rate + true-negative rate) / 2 of every column of predicted (N, L) bool
    against truth (N, L) bool, each example weighted by weight (N,) (Brodersen et al. 2010, ICPR;
    sklearn's balanced_accuracy_score with sample_weight, per column)."""
    w = weight[:, None]
    hit = (w * (truth & predicted)).sum(axis=0) / (w * truth).sum(axis=0)
    rejected = (w * (~truth & ~predicted)).sum(axis=0) / (w * ~truth).sum(axis=0)
    return (hit + rejected) / 2


def scalar_probe(x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """x (N, D), y (N,): out-of-fold R^2 and MSE of a ridge read-out (penalty by inner LOO CV)."""
    xs, ys = x.double().numpy(), y.double().numpy()
    predicted = np.zeros(len(ys))
    for test in folds(len(xs), seed):
        train = np.setdiff1d(np.arange(len(xs)), test)
        predicted[test] = _ridge(xs[train], ys[train]).predict(xs[test])[:, 0]
    mse = float(((predicted - ys) ** 2).mean())
    variance = float(ys.var())
    return {"r2": 1 - mse / variance if variance > 0 else float("nan"), "mse": mse}


def transfer_r2(x_fit: torch.Tensor, y_fit: torch.Tensor, x_score: torch.Tensor, y_score: torch.Tensor) -> float:
    """R^2 on (x_score, y_score) of a ridge read-out fitted on (x_fit, y_fit) (penalty by LOO CV)."""
    model = _ridge(x_fit.double().numpy(), y_fit.double().numpy())
    predicted, truth = model.predict(x_score.double().numpy())[:, 0], y_score.double().numpy()
    variance = float(truth.var())
    return 1 - float(((predicted - truth) ** 2).mean()) / variance if variance > 0 else float("nan")


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
