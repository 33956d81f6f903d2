"""Edge-token front end: the neighbour sets computed inside the model from edge tokens.

With `build_bfs_transformer(n, edge_tokens=True)` the input is a pure embedding lookup, as in the learned
model: each edge (a, b) is one token `edge_a[a] + edge_b[b]` (one-hot a and one-hot b, both in
the `ends` section; padding rows (0, 0) and self-pairs are masked out of attention), each vertex
id 1..n one token `vertex[v]`, plus the answer token `target[t]`. Tokens: n vertex tokens, the
answer token, then the M edge slots (T = n + 1 + M). One extra block ("gather", block 0) writes
each vertex's neighbour bits; the rest is the lookup model unchanged (their weights read the
stream by section name, so the two extra sections `ends` and `gather` change nothing for them).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from data_gen import GraphBatch

from .basis import Basis


class EdgeTokenFrontEnd(nn.Module):
    """Batch -> ((B, n + 1 + M, D) stream, (B, n + 1 + M) attend mask) by table lookup only."""

    def __init__(self, n: int, width: int):
        super().__init__()
        self.n = n
        self.vertex = nn.Parameter(torch.zeros(n, width))  # (n, D) row v-1: vertex v's token
        self.target = nn.Parameter(torch.zeros(n, width))  # (n, D) row t-1: the answer token
        self.edge_a = nn.Parameter(torch.zeros(n + 1, width))  # (n+1, D) row a: first end (row 0 = padding)
        self.edge_b = nn.Parameter(torch.zeros(n + 1, width))  # (n+1, D) row b: second end

    def forward(self, batch: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        B, n = len(batch), self.n
        a, b = batch.edges[..., 0], batch.edges[..., 1]  # (B, M)
        vertices = self.vertex[None].expand(B, n, -1)  # (B, n, D)
        answer = self.target[batch.target - 1][:, None]  # (B, 1, D)
        edges = self.edge_a[a] + self.edge_b[b]  # (B, M, D)
        real = (a > 0) & (b > 0) & (a != b)  # (B, M)
        mask = torch.cat([torch.ones(B, n + 1, dtype=torch.bool, device=a.device), real], dim=1)
        return torch.cat([vertices, answer, edges], dim=1), mask


def edge_front_weights(basis: Basis, n: int) -> dict[str, torch.Tensor]:
    """Lookup tables; every entry 0 or 1, so the initial stream is exact."""
    D = basis.width
    vertex, target = torch.zeros(n, D), torch.zeros(n, D)
    edge_a, edge_b = torch.zeros(n + 1, D), torch.zeros(n + 1, D)
    for v in range(n):
        vertex[v, basis.index("is_vertex")] = 1.0
        vertex[v, basis.index("self_id", v)] = 1.0
        target[v, basis.index("query", v)] = 1.0
        edge_a[v + 1, basis.index("ends", v)] = 1.0
        edge_b[v + 1, basis.index("ends", v)] = 1.0
    vertex[0, basis.index("reach")] = 1.0
    return {"vertex": vertex, "target": target, "edge_a": edge_a, "edge_b": edge_b}


def gather_weights(basis: Basis, n: int, beta: float, max_degree: int) -> dict[str, torch.Tensor]:
    """Neighbour bits from edge tokens: neighbours(v)[u] <- [some edge token joins u and v].

    Attention (one head): query(v) = beta * self_id(v); key = self_id + ends, so vertex v scores
    beta on its own token and on each of the m_v edge tokens containing v, 0 elsewhere (masked
    padding aside). Value = self_id + ends, output to `gather`: g(v) = (e_v + sum over those edges
    of (e_a + e_b)) / (1 + m_v) = e_v + sum_u mult(u, v) / (1 + m_v) e_u, plus leakage.
    Why exact: a neighbour u has g_u >= 1 / (1 + m_v) >= 1 / (1 + max_degree) (up to a relative
    e^-beta * T); a non-neighbour has g_u <= T e^-beta from the score-0 tokens. With
    K = 4 (max_degree + 1), the ramp clamp(K g_u - K self_u + K is_vertex - K - 1, 0, 1), built
    from two ReLUs as in the hop layers, is exactly 0 for non-neighbours (needs T e^-beta < 1/K),
    for u = v (K g_v - K - 1 <= -1) and on non-vertex tokens (g_u <= 1), and 1 (up to rounding of
    order 1e-5) for neighbours (K g_u - 1 >= 3). A third unit clears `gather` (g >= 0).
    `max_degree` bounds m_v, the edge tokens a vertex lies on: n covers every data_gen family
    (reference graphs have n edge slots; simple graphs have degree <= n - 1).
    """
    D, E, F = basis.width, n, 3 * n
    W_Q, W_K, W_V, W_O = torch.zeros(1, D, E), torch.zeros(1, D, E), torch.zeros(1, D, E), torch.zeros(1, E, D)
    gain = beta * math.sqrt(E)
    for u in range(n):
        W_Q[0, basis.index("self_id", u), u] = gain
        for section in ("self_id", "ends"):
            W_K[0, basis.index(section, u), u] = 1.0
            W_V[0, basis.index(section, u), u] = 1.0
        W_O[0, u, basis.index("gather", u)] = 1.0
    K = 4.0 * (max_degree + 1)
    fc_in, b_in, fc_out = torch.zeros(F, D), torch.zeros(F), torch.zeros(D, F)
    vert = basis.index("is_vertex")
    for u in range(n):
        g, own, bit = basis.index("gather", u), basis.index("self_id", u), basis.index("neighbours", u)
        for unit, offset in ((u, 1.0), (n + u, 2.0)):  # ramp low, ramp high
            fc_in[unit, g], fc_in[unit, own], fc_in[unit, vert], b_in[unit] = K, -K, K, -(K + offset)
        fc_in[2 * n + u, g] = 1.0  # clear
        fc_out[bit, u], fc_out[bit, n + u] = 1.0, -1.0
        fc_out[g, 2 * n + u] = -1.0
    return {"attn.W_Q": W_Q, "attn.W_K": W_K, "attn.W_V": W_V, "attn.W_O": W_O,
            "mlp.fc_in.weight": fc_in, "mlp.fc_in.bias": b_in,
            "mlp.fc_out.weight": fc_out, "mlp.fc_out.bias": torch.zeros(D)}
