"""The hand-built BFS transformer: exact 1 -> t distances, weights set by formula for any n.

Shape glossary
    B  graphs in the batch
    M  edge slots per graph
    n  the model's vertex vocabulary (= the data's `max_vertices`)
    T  tokens per graph = n + 1 (one per vertex id 1..n, then the answer token)
    D  residual width = 3n + 5 (the map below)
    E  width of one head = n;  F  MLP hidden width = 5

Tokens. One token per vertex id 1..n -- all n of them, whatever the graph's own vertex count
(a vertex beyond it has no edges, so it is isolated and unreachable) -- plus one answer token.
No padding is ever needed, so graphs with mixed n share one batch for free.

Front end (`FrontEnd`, three named parameter tables, no other computation than a lookup and one
sum): vertex token v = `vertex[v]` + sum over v's distinct neighbours u of `neighbour[u]`
(repeated edges count once, self-pairs are ignored); answer token = `target[t]`.

Map of the residual stream (columns for n; `Basis.table()` prints them):

| section    | width | vertex token v, before block 0         | answer token              |
|------------|-------|----------------------------------------|---------------------------|
| is_vertex  | 1     | 1                                      | 0                         |
| self_id    | n     | one-hot v                              | 0                         |
| neighbours | n     | bit u set iff u ~ v                    | 0                         |
| reach      | 1     | [v = 1]; after block l: [dist(v) <= l] | 0                         |
| count      | 1     | 0; after block l: min(dist(v), l)      | 0                         |
| scratch    | 1     | 0 (written by attention, cleared by the MLP of the same block) | same |
| query      | n     | 0                                      | one-hot t                 |
| answer     | 1     | (unused)                               | after the last block: count(t) |

Blocks (n + 1 of them, each `graphpath.core.model.TransformerBlock(norm="none")`, 1 head):
- blocks 0..n-1 ("BFS hop", `bfs_hop_weights`): attention averages the reach flags of v's
  closed neighbourhood into `scratch`; the MLP turns "any of them reached" into the new flag,
  adds 1 - reach to `count`, and clears `scratch`.
- block n ("copy", `copy_weights`): the answer token attends to vertex t and copies its count.
The read-out is `Linear(D, 1)` reading `answer`. After n hops `count(v) = dist(v)` for every
reachable v (dist <= n - 1) and n otherwise, which is the data's unreachable label.

Learned-model compatibility: every block is the learned model's own `TransformerBlock`
(TransformerLens per-head `W_Q, W_K, W_V [H, D, E]`, `W_O [H, E, D]`, MLP Linear-ReLU-Linear
with biases, no LayerNorm, no attention biases) and the read-out is the same `Linear(D, 1)`.
What differs is the tokenization: the learned model reads one token per edge and a target
token; this model reads one token per vertex, whose neighbour bits the front end sums from the
edge list. That front end is a lookup plus a sum, not a learned-compatible embedding;
`build_bfs_transformer(n, edge_tokens=True)` replaces it with a pure embedding lookup of edge tokens (each
edge one token, one-hot a + one-hot b, padding masked: the learned model's input format, plus
vertex tokens) and one extra "gather" block that computes the neighbour bits inside the model
(see handcrafted/edge_tokens.py; the stream gains `ends` and `gather`, n wide each: D = 5n + 5,
n + 2 blocks, 22,705 parameters at n = 8, 831,697 at n = 32).

Size (`model_size(n)`; one head per layer, MLP width 5, tokens n + 1):

| n  | layers | width D | d_head | parameters |
|----|--------|---------|--------|------------|
| 5  | 6      | 20      | 5      | 4,071      |
| 8  | 9      | 29      | 8      | 11,994     |
| 15 | 16     | 50      | 15     | 59,181     |
| 32 | 33     | 101     | 32     | 473,250    |
| 64 | 65     | 197     | 64     | 3,457,282  |

Sharpness constants (explicit arguments of `build_bfs_transformer`): `beta_hop` (attention sharpness of
the hop layers; exactness needs e^beta_hop > 4 n^2) and `beta_copy` (the copy layer; its error is
at most n^2 e^-beta_copy). The defaults (20, 30) leave errors below 1e-8 per distance for n <= 64
and in practice distances come out as exact integers in float32.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from data_gen import GraphBatch
from data_gen.spec import MAX_SUPPORTED_VERTICES
from graphpath.core.model import TransformerBlock

from .basis import Basis
from .edge_tokens import EdgeTokenFrontEnd, edge_front_weights, gather_weights

HIDDEN = 5  # MLP units per hop: ramp_low, ramp_high, reach_clear, scratch_clear, count_step
MIN_VERTICES = 2


def stream_basis(n: int, edge_tokens: bool = False) -> Basis:
    sections = [("is_vertex", 1), ("self_id", n), ("neighbours", n), ("reach", 1), ("count", 1),
                ("scratch", 1), ("query", n), ("answer", 1)]
    return Basis(sections + ([("ends", n), ("gather", n)] if edge_tokens else []))


class FrontEnd(nn.Module):
    """Edge list -> (B, n + 1, D) stream by table lookup; the tables are named parameters."""

    def __init__(self, n: int, width: int):
        super().__init__()
        self.n = n
        self.vertex = nn.Parameter(torch.zeros(n, width))  # (n, D) row v-1: vertex v's own token
        self.neighbour = nn.Parameter(torch.zeros(n, width))  # (n, D) row u-1: "u is a neighbour"
        self.target = nn.Parameter(torch.zeros(n, width))  # (n, D) row t-1: the answer token

    def adjacency(self, batch: GraphBatch) -> torch.Tensor:
        """(B, n, n) float 0/1: entry [v-1, u-1] = 1 iff some edge joins u and v (u != v)."""
        B, n = len(batch), self.n
        a, b = batch.edges[..., 0], batch.edges[..., 1]  # (B, M)
        real = (a > 0) & (b > 0) & (a != b)
        flat = torch.zeros(B, (n + 1) * (n + 1), device=batch.device)
        ones = real.to(flat.dtype)
        flat.scatter_add_(1, a * (n + 1) + b, ones)
        flat.scatter_add_(1, b * (n + 1) + a, ones)
        return (flat.view(B, n + 1, n + 1)[:, 1:, 1:] > 0).to(self.vertex.dtype)

    def forward(self, batch: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """((B, n + 1, D) stream, (B, n + 1) attend mask: all True, nothing is padding)."""
        adjacency = self.adjacency(batch)  # (B, n, n)
        vertices = self.vertex[None] + adjacency @ self.neighbour  # (B, n, D)
        answer = self.target[batch.target - 1][:, None]  # (B, 1, D)
        x = torch.cat([vertices, answer], dim=1)  # (B, n + 1, D)
        return x, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)


class BFSTransformer(nn.Module):
    """`forward(batch) -> (B,)` float32 distances from vertex 1 to `batch.target`."""

    def __init__(self, n: int, beta_hop: float = 20.0, beta_copy: float = 30.0, edge_tokens: bool = False,
                 max_degree: int | None = None):
        super().__init__()
        check_size(n)
        self.n, self.beta_hop, self.beta_copy = n, float(beta_hop), float(beta_copy)
        self.edge_tokens, self.max_degree = bool(edge_tokens), n if max_degree is None else int(max_degree)
        self.basis = stream_basis(n, self.edge_tokens)
        D = self.basis.width
        self.front = EdgeTokenFrontEnd(n, D) if self.edge_tokens else FrontEnd(n, D)
        gather = [TransformerBlock(D, 1, n, 3 * n, norm="none")] if self.edge_tokens else []
        self.blocks = nn.ModuleList(gather + [TransformerBlock(D, 1, n, HIDDEN, norm="none") for _ in range(n + 1)])
        self.readout = nn.Linear(D, 1)
        self.reset_weights()

    @torch.no_grad()
    def reset_weights(self) -> None:
        """Write every weight from its formula (also undoes any perturbation)."""
        basis, n, first = self.basis, self.n, int(self.edge_tokens)
        front = edge_front_weights(basis, n) if self.edge_tokens else front_end_weights(basis, n)
        for name, value in front.items():
            getattr(self.front, name).copy_(value)
        if self.edge_tokens:
            load_block(self.blocks[0], gather_weights(basis, n, self.beta_hop, self.max_degree))
        for block in self.blocks[first:first + n]:
            load_block(block, bfs_hop_weights(basis, n, self.beta_hop))
        load_block(self.blocks[first + n], copy_weights(basis, n, self.beta_copy))
        self.readout.weight.zero_()
        self.readout.weight[0, basis.index("answer")] = 1.0
        self.readout.bias.zero_()

    def stream(self, batch: GraphBatch, upto: int | None = None) -> torch.Tensor:
        """Residual stream (B, T, D) after `upto` blocks (all by default); read it with `basis.read`.
        Tokens 0..n-1 are vertices 1..n, token n the answer, then (edge_tokens) the edge slots."""
        if batch.max_vertices != self.n:
            raise ValueError(f"the hand-built model for n={self.n} scores data with max_vertices == {self.n}, "
                             f"got max_vertices={batch.max_vertices}; build_bfs_transformer({batch.max_vertices}) instead")
        batch.check(self.n)  # ids and targets inside 1..n, or a ValueError naming the graph
        x, mask = self.front(batch)  # (B, T, D), (B, T)
        for block in self.blocks[:upto]:
            x = block(x, mask)
        return x

    def forward(self, batch: GraphBatch) -> torch.Tensor:
        x = self.stream(batch)
        return self.readout(x[:, self.n]).squeeze(-1)  # (B,) from the answer token

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def check_size(n) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not MIN_VERTICES <= n <= MAX_SUPPORTED_VERTICES:
        raise ValueError(f"hand-built model size n must be an integer in [{MIN_VERTICES}, "
                         f"{MAX_SUPPORTED_VERTICES}], got {n!r}")


# ---- weight-building primitives: each returns named tensors over the basis --------------------

def front_end_weights(basis: Basis, n: int) -> dict[str, torch.Tensor]:
    """Lookup tables. Exact by construction: they place 0/1 entries, and the neighbour sum is
    taken over a 0/1 adjacency matrix, so every entry of the initial stream is exactly 0 or 1."""
    D = basis.width
    vertex, neighbour, target = torch.zeros(n, D), torch.zeros(n, D), torch.zeros(n, D)
    for v in range(n):
        vertex[v, basis.index("is_vertex")] = 1.0
        vertex[v, basis.index("self_id", v)] = 1.0
        neighbour[v, basis.index("neighbours", v)] = 1.0
        target[v, basis.index("query", v)] = 1.0
    vertex[0, basis.index("reach")] = 1.0  # BFS starts at vertex 1
    return {"vertex": vertex, "neighbour": neighbour, "target": target}


def bfs_hop_weights(basis: Basis, n: int, beta: float) -> dict[str, torch.Tensor]:
    """One BFS hop: reach(v) <- OR of reach over v's closed neighbourhood; count += 1 - old reach.

    Attention (one head): query(v) = beta * (neighbours(v) + self_id(v)), key(u) = self_id(u), so
    the score of vertex token u for v is beta * [u in N[v]] and every other token (non-neighbours
    and the answer token, whose key is 0) scores 0. The value is reach; the output goes to scratch:
    s(v) = sum_u softmax_u * reach(u).
    Why exact: by induction reach is exactly 0 or 1 (+- float rounding of order 1e-5 on the 1s).
    If no closed neighbour is reached, only the <= n score-0 tokens can contribute, each with
    weight <= e^-beta, so s < n e^-beta < 1/(4n) whenever e^beta > 4n^2 (n = 64: beta > 9.7).
    If one is, s >= e^beta / (k e^beta + n) >= 1 / (n (1 + e^-beta)) with k <= n the size of
    N[v], so 4n s >= 3.
    MLP: ramp(s) = ReLU(4n s + 4n is_vertex - (4n+1)) - ReLU(4n s + 4n is_vertex - (4n+2))
    = clamp(4n s - 1, 0, 1) on vertex tokens, 0 on the answer token (s <= 1): exactly 0 below
    s = 1/(4n) and exactly 1 (up to rounding) above s = 1/(2n), the dead zones that keep errors
    from growing from hop to hop. reach += ramp - ReLU(reach) (replace), scratch -= ReLU(s)
    (s >= 0, so this clears it exactly), count += ReLU(is_vertex - 2 reach), which is exactly 1
    for an unreached vertex (reach = 0 exactly) and exactly 0 for a reached one (1 - 2 reach < 0),
    so count stays an exact integer.
    """
    D, E = basis.width, n
    W_Q, W_K, W_V, W_O = torch.zeros(1, D, E), torch.zeros(1, D, E), torch.zeros(1, D, E), torch.zeros(1, E, D)
    gain = beta * math.sqrt(E)  # the block divides scores by sqrt(E)
    for u in range(n):
        W_Q[0, basis.index("neighbours", u), u] = gain
        W_Q[0, basis.index("self_id", u), u] = gain
        W_K[0, basis.index("self_id", u), u] = 1.0
    W_V[0, basis.index("reach"), 0] = 1.0
    W_O[0, 0, basis.index("scratch")] = 1.0

    s, vert, reach, count = (basis.index(name) for name in ("scratch", "is_vertex", "reach", "count"))
    fc_in, b_in = torch.zeros(HIDDEN, D), torch.zeros(HIDDEN)
    fc_out, b_out = torch.zeros(D, HIDDEN), torch.zeros(D)
    ramp = 4.0 * n
    fc_in[0, s], fc_in[0, vert], b_in[0] = ramp, ramp, -(ramp + 1)  # ramp_low
    fc_in[1, s], fc_in[1, vert], b_in[1] = ramp, ramp, -(ramp + 2)  # ramp_high
    fc_in[2, reach] = 1.0  # reach_clear
    fc_in[3, s] = 1.0  # scratch_clear
    fc_in[4, vert], fc_in[4, reach] = 1.0, -2.0  # count_step
    fc_out[reach, 0], fc_out[reach, 1], fc_out[reach, 2] = 1.0, -1.0, -1.0
    fc_out[s, 3] = -1.0
    fc_out[count, 4] = 1.0
    return {"attn.W_Q": W_Q, "attn.W_K": W_K, "attn.W_V": W_V, "attn.W_O": W_O,
            "mlp.fc_in.weight": fc_in, "mlp.fc_in.bias": b_in,
            "mlp.fc_out.weight": fc_out, "mlp.fc_out.bias": b_out}


def copy_weights(basis: Basis, n: int, beta: float) -> dict[str, torch.Tensor]:
    """The answer token copies count(t): query = beta * query-one-hot(t), key(u) = self_id(u).

    Why exact: vertex token t scores beta, every other token 0, so the output is
    count(t) + sum_{u != t} w_u (count(u) - count(t)) with w_u <= e^-beta and |count(u) - count(t)|
    <= n: error <= n^2 e^-beta (n = 32: beta = 20 gives 2e-6, measured 3.6e-6 max in float32;
    the default beta = 30 gives 1e-10, below float32 resolution of the integer count). Vertex
    tokens (query 0) attend uniformly and write into their own unused `answer` column, which
    nothing reads. The MLP is zero.
    """
    D, E = basis.width, n
    W_Q, W_K, W_V, W_O = torch.zeros(1, D, E), torch.zeros(1, D, E), torch.zeros(1, D, E), torch.zeros(1, E, D)
    gain = beta * math.sqrt(E)
    for u in range(n):
        W_Q[0, basis.index("query", u), u] = gain
        W_K[0, basis.index("self_id", u), u] = 1.0
    W_V[0, basis.index("count"), 0] = 1.0
    W_O[0, 0, basis.index("answer")] = 1.0
    return {"attn.W_Q": W_Q, "attn.W_K": W_K, "attn.W_V": W_V, "attn.W_O": W_O,
            "mlp.fc_in.weight": torch.zeros(HIDDEN, D), "mlp.fc_in.bias": torch.zeros(HIDDEN),
            "mlp.fc_out.weight": torch.zeros(D, HIDDEN), "mlp.fc_out.bias": torch.zeros(D)}


def load_block(block: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy named tensors into a block; every parameter of the block must be given."""
    params = dict(block.named_parameters())
    missing, unknown = set(params) - set(weights), set(weights) - set(params)
    if missing or unknown:
        raise KeyError(f"block parameters missing {sorted(missing)}, unknown {sorted(unknown)}")
    for name, value in weights.items():
        params[name].copy_(value)


# ---- public entry points ------------------------------------------------------------------------

def build_bfs_transformer(n: int, beta_hop: float = 20.0, beta_copy: float = 30.0, edge_tokens: bool = False,
                max_degree: int | None = None) -> BFSTransformer:
    """The exact BFS transformer for graphs with up to n vertices (targets 2..n), in eval mode.
    `edge_tokens=True`: neighbour sets computed in-model from edge tokens (handcrafted.edge_tokens);
    exact while no vertex lies on more than `max_degree` (default n) edge tokens."""
    return BFSTransformer(n, beta_hop, beta_copy, edge_tokens, max_degree).eval()


def model_size(n: int, edge_tokens: bool = False) -> dict[str, int]:
    """Layers, heads, widths and parameter count of `build_bfs_transformer(n, edge_tokens=...)`, by formula."""
    check_size(n)
    D, E = (5 if edge_tokens else 3) * n + 5, n
    block = 4 * D * E + (D * HIDDEN + HIDDEN) + (HIDDEN * D + D)
    front = 2 * n * D + (2 * (n + 1) * D if edge_tokens else n * D)
    gather = 4 * D * E + (D * 3 * n + 3 * n) + (3 * n * D + D) if edge_tokens else 0
    return {"n": n, "edge_tokens": bool(edge_tokens), "layers": n + 1 + int(edge_tokens), "heads_per_layer": 1,
            "width": D, "d_head": E, "d_mlp": HIDDEN, "tokens": "n + 1 + M" if edge_tokens else n + 1,
            "parameters": front + (n + 1) * block + gather + (D + 1)}
