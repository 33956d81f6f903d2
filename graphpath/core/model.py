"""The learned transformer: edge tokens in, a regressed 1 -> t distance out.

Shape glossary
    B  graphs in the batch
    M  edge slots per graph (padding rows are (0, 0))
    T  tokens per graph = 1 + M (the target token first, then one token per edge)
    D  model width (d_model)
    H  attention heads
    E  width of one head (d_head, settable independently of D and H)
    F  MLP hidden width (d_ff)
    V  vertex vocabulary = max_vertices + 2 (0 = padding, 1..max_vertices, TARGET = max_vertices + 1)

Packed layout (`forward(batch, pack=True)`, training's fast path): only real tokens are kept,
graph after graph (its target token, then its edges), as one (N, D) matrix, N = real tokens in the
batch (at n <= 8 about 62% of the padded B*T); every per-token layer (LayerNorm, the Q/K/V and
output projections, the MLP) runs on that matrix, and only attention gathers Q, K and V into the
padded (B, T) layout, one batched matmul per head. The result equals the padded layout's up to
float rounding; hooks need the padded (B, T, D) layout, so a model with an active hook runs padded.

Tokens (the study's encoding): an edge (a, b) is `concat(embed[a], embed[b])`, each half D/2
wide; the target is `concat(embed[t], embed[TARGET])`; padding tokens are masked out of every
attention; there is no positional encoding, so edge order carries no meaning. A linear read-out
of the target token's final residual regresses the distance (float32, whatever autocast does).

`TransformerBlock` is written so weights can be set by hand (the hand-built BFS model reuses it):
TransformerLens-style per-head parameters `W_Q, W_K, W_V: [H, D, E]`, `W_O: [H, E, D]`, optional
attention biases, an MLP `Linear(D, F) -> ReLU -> Linear(F, D)`, and `norm` "pre" | "post" |
"none". Every intermediate passes through an identity `HookPoint`, whose module name is its hook
name, TransformerLens-style (`hook_embed`, `blocks.{l}.attn.hook_pattern`, `blocks.{l}.hook_resid_post`,
...): the last part of every hook name starts with `hook_`, so hooks never share a namespace with
parameters. Read activations with `run_with_cache`, patch them with ordinary forward hooks that
return a replacement.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from data_gen import GraphBatch
from graphpath_common.keys import reject_unknown_keys

NORMS = ("pre", "post", "none")
INITS = ("ours", "study")


class ConfigError(ValueError):
    """A model or training configuration that cannot work; the message names the field."""


@dataclass
class ModelConfig:
    max_vertices: int = 8  # vertex vocabulary and the "unreachable" label (the data's max_vertices)
    d_model: int = 64  # residual width D; even, since an edge token is two D/2 embeddings
    n_layers: int = 6  # transformer blocks
    n_heads: int = 2  # attention heads H per block
    d_head: int | None = None  # width E of one head; None = d_model // n_heads
    d_ff: int | None = None  # MLP hidden width F; None = 4 * d_model
    norm: str = "pre"  # "pre" | "post" (the study's) | "none" (no LayerNorm at all)
    attn_bias: bool = False  # biases on Q, K, V and the attention output
    init: str = "ours"  # "ours" (each block drawn afresh, scaled normals) | "study" (one block, PyTorch's
    # default inits as in nn.TransformerEncoderLayer, deep-copied into every layer as nn.TransformerEncoder does)

    def __post_init__(self):
        def need(ok: bool, message: str):
            if not ok:
                raise ConfigError(f"model: {message}")

        for name in ("max_vertices", "d_model", "n_layers", "n_heads"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                 f"{name} must be a positive integer, got {value!r}")
        need(self.max_vertices >= 2, f"max_vertices must be >= 2, got {self.max_vertices}")
        need(self.d_model % 2 == 0, f"d_model must be even (an edge token is two d_model/2 halves), got {self.d_model}")
        if self.d_head is None:
            need(self.d_model % self.n_heads == 0,
                 f"d_model ({self.d_model}) is not divisible by n_heads ({self.n_heads}); set d_head")
            self.d_head = self.d_model // self.n_heads
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        for name in ("d_head", "d_ff"):
            value = getattr(self, name)
            need(isinstance(value, int) and value > 0, f"{name} must be a positive integer, got {value!r}")
        need(self.norm in NORMS, f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        need(isinstance(self.attn_bias, bool), f"attn_bias must be true or false, got {self.attn_bias!r}")
        need(self.init in INITS, f"init must be one of {', '.join(INITS)}, got {self.init!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        reject_unknown_keys(cls, values, ConfigError, "model")
        return cls(**values)


class HookPoint(nn.Module):
    """Identity; its module name is a stable hook name. A forward hook may return a replacement."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @property
    def active(self) -> bool:
        return bool(self._forward_hooks)


def key_mask_to_attn_mask(mask: torch.Tensor) -> torch.Tensor:
    """Boolean "may attend" mask broadcastable to (B, H, T, T): (B, T) key padding, (B, T, T) or (B, H, T, T)."""
    if mask.dtype != torch.bool:
        raise ValueError(f"attention mask must be boolean (True = attend), got {mask.dtype}")
    if mask.dim() == 2:
        return mask[:, None, None, :]  # (B, 1, 1, T)
    if mask.dim() == 3:
        return mask[:, None]  # (B, 1, T, T)
    if mask.dim() == 4:
        return mask
    raise ValueError(f"attention mask must be (B, T), (B, T, T) or (B, H, T, T), got {tuple(mask.shape)}")


@dataclass(frozen=True)
class Packing:
    """Where a packed batch's N real tokens lie in its padded (B, T) layout."""
    gather: torch.Tensor  # (B*T,) the packed row of every padded slot (row 0 for padding, masked out)
    real: torch.Tensor  # (N,) the padded slot of every packed row
    mask: torch.Tensor  # (B, 1, T) added to attention scores: 0 for a real key, -inf for padding
    graphs: int  # B
    tokens: int  # T

    @classmethod
    def of(cls, mask: torch.Tensor) -> "Packing":
        """From the real-token mask (B, T) of a batch whose real tokens come first in every row."""
        graphs, tokens = mask.shape
        real = mask.flatten().nonzero().squeeze(1)  # (N,)
        gather = torch.zeros(graphs * tokens, dtype=torch.long, device=mask.device)
        gather[real] = torch.arange(len(real), device=mask.device)
        additive = torch.zeros(graphs, 1, tokens, device=mask.device).masked_fill_(~mask[:, None, :], float("-inf"))
        return cls(gather, real, additive, graphs, tokens)


class Attention(nn.Module):
    """Multi-head attention with per-head weights (TransformerLens layout)."""

    def __init__(self, d_model: int, n_heads: int, d_head: int, bias: bool = False):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_head
        self.W_Q = nn.Parameter(torch.empty(n_heads, d_model, d_head))  # (H, D, E)
        self.W_K = nn.Parameter(torch.empty(n_heads, d_model, d_head))
        self.W_V = nn.Parameter(torch.empty(n_heads, d_model, d_head))
        self.W_O = nn.Parameter(torch.empty(n_heads, d_head, d_model))  # (H, E, D)
        if bias:
            self.b_Q = nn.Parameter(torch.zeros(n_heads, d_head))  # (H, E)
            self.b_K = nn.Parameter(torch.zeros(n_heads, d_head))
            self.b_V = nn.Parameter(torch.zeros(n_heads, d_head))
            self.b_O = nn.Parameter(torch.zeros(d_model))  # (D,)
        else:
            self.b_Q = self.b_K = self.b_V = self.b_O = None
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()  # (B, H, T, E)
        self.hook_pattern = HookPoint()  # (B, H, T_query, T_key), only computed when hooked
        self.hook_z = HookPoint()  # (B, H, T, E) per-head mixed values, before W_O
        for weight in (self.W_Q, self.W_K, self.W_V):
            nn.init.normal_(weight, std=d_model ** -0.5)
        nn.init.normal_(self.W_O, std=(n_heads * d_head) ** -0.5)

    def qkv(self, x: torch.Tensor) -> torch.Tensor:
        """One GEMM for Q, K and V: x (..., D) -> (..., 3*H*E), the (D, 3*H*E) matrix built from the
        per-head parameters."""
        w_qkv = rearrange(torch.stack([self.W_Q, self.W_K, self.W_V]), "s h d e -> d (s h e)")
        b_qkv = None if self.b_Q is None else torch.cat([self.b_Q, self.b_K, self.b_V]).flatten()
        return F.linear(x, w_qkv.t(), b_qkv)

    def output(self, z: torch.Tensor) -> torch.Tensor:
        """The output projection: per-head values (..., H*E) -> (..., D)."""
        return F.linear(z, rearrange(self.W_O, "h e d -> d (h e)"), self.b_O)

    def forward(self, x: torch.Tensor, mask) -> torch.Tensor:
        """x (B, T, D), mask boolean (B, T) key padding or (B, [H,] T, T), True = attend -> (B, T, D);
        or packed tokens x (N, D) with `mask` their `Packing` -> (N, D)."""
        if isinstance(mask, Packing):
            return self.forward_packed(x, mask)
        H, E = self.n_heads, self.d_head
        qkv = self.qkv(x)  # (B, T, 3*H*E)
        q, k, v = rearrange(qkv, "b t (s h e) -> s b h t e", s=3, h=H, e=E)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        attn_mask = key_mask_to_attn_mask(mask)
        if self.hook_pattern.active:  # explicit softmax so the pattern can be read or patched
            scores = torch.einsum("bhqe,bhke->bhqk", q, k) / math.sqrt(E)  # (B, H, T, T)
            scores = scores.masked_fill(~attn_mask, float("-inf"))
            pattern = self.hook_pattern(torch.softmax(scores, dim=-1))
            z = torch.einsum("bhqk,bhke->bhqe", pattern, v)
        else:
            z = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, H, T, E)
        z = self.hook_z(z)
        return self.output(rearrange(z, "b h t e -> b t (h e)"))  # (B, T, D)

    def forward_packed(self, x: torch.Tensor, packing: Packing) -> torch.Tensor:
        """Packed tokens x (N, D) -> (N, D). Q, K and V are computed on the real tokens only, then
        gathered into the padded layout; each head is one baddbmm (scores plus the padding mask), a
        softmax and one bmm on strided views: at T <= 16 that is a handful of kernels where
        scaled_dot_product_attention's CPU kernels (or a loop over equal-length groups) cost up to
        1.5x as much. Hook points are not called."""
        H, E, B, T = self.n_heads, self.d_head, packing.graphs, packing.tokens
        qkv = self.qkv(x).index_select(0, packing.gather).view(B, T, 3, H, E)
        q, k, v = (part.unbind(2) for part in qkv.unbind(2))  # H tensors (B, T, E) each; unbind, not
        # indexing: its backward stacks the gradients instead of filling a zero tensor per slice
        z = [torch.bmm(torch.softmax(torch.baddbmm(packing.mask, q[h], k[h].transpose(1, 2), alpha=E ** -0.5),
                                     dim=-1), v[h]) for h in range(H)]  # H x (B, T, E)
        return self.output(torch.cat(z, dim=-1).view(B * T, H * E).index_select(0, packing.real))  # (N, D)


class MLP(nn.Module):
    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.fc_in = nn.Linear(d_model, d_ff)
        self.fc_out = nn.Linear(d_ff, d_model)
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()  # (B, T, F) before / after ReLU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(self.hook_post(F.relu(self.hook_pre(self.fc_in(x)))))  # (B, T, D)


class TransformerBlock(nn.Module):
    """Attention then MLP, each added to the residual stream, with pre-, post- or no LayerNorm.

    Hook names inside block l: hook_resid_pre, attn.hook_{q,k,v,pattern,z}, hook_attn_out,
    hook_resid_mid, mlp.hook_{pre,post}, hook_mlp_out, hook_resid_post.
    """

    def __init__(self, d_model: int, n_heads: int, d_head: int, d_ff: int, norm: str = "pre",
                 attn_bias: bool = False):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        self.norm = norm
        self.attn = Attention(d_model, n_heads, d_head, bias=attn_bias)
        self.mlp = MLP(d_model, d_ff)
        self.ln1 = nn.LayerNorm(d_model) if norm != "none" else nn.Identity()
        self.ln2 = nn.LayerNorm(d_model) if norm != "none" else nn.Identity()
        self.hook_resid_pre, self.hook_resid_mid, self.hook_resid_post = HookPoint(), HookPoint(), HookPoint()
        self.hook_attn_out, self.hook_mlp_out = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor, mask) -> torch.Tensor:
        """x (B, T, D), mask (B, T) True = real token -> (B, T, D); or packed x (N, D), mask its Packing."""
        x = self.hook_resid_pre(x)
        if self.norm == "pre":
            x = self.hook_resid_mid(x + self.hook_attn_out(self.attn(self.ln1(x), mask)))
            x = x + self.hook_mlp_out(self.mlp(self.ln2(x)))
        else:  # post-norm, or none (ln = identity)
            x = self.hook_resid_mid(self.ln1(x + self.hook_attn_out(self.attn(x, mask))))
            x = self.ln2(x + self.hook_mlp_out(self.mlp(x)))
        return self.hook_resid_post(x)


@torch.no_grad()
def study_init_(block: TransformerBlock) -> TransformerBlock:
    """Re-initialize `block` in place as nn.TransformerEncoderLayer initializes itself: the packed
    Q/K/V projection (3*H*E, D) Xavier-uniform with zero bias, the output projection and both MLP
    layers nn.Linear's default (Kaiming-uniform a=sqrt(5), so U(+-1/sqrt(fan_in))), the output
    projection's bias zero, LayerNorm gains 1 and biases 0."""
    attn = block.attn
    H, D, E = attn.W_Q.shape
    bound = math.sqrt(6.0 / (D + 3 * H * E))  # xavier_uniform_ on in_proj_weight: fan_in D, fan_out 3*H*E
    for weight in (attn.W_Q, attn.W_K, attn.W_V):
        weight.uniform_(-bound, bound)
    attn.W_O.uniform_(-(H * E) ** -0.5, (H * E) ** -0.5)  # out_proj = nn.Linear(H*E, D)
    for bias in (attn.b_Q, attn.b_K, attn.b_V, attn.b_O):
        if bias is not None:
            bias.zero_()
    block.mlp.fc_in.reset_parameters()
    block.mlp.fc_out.reset_parameters()
    for norm in (block.ln1, block.ln2):
        if isinstance(norm, nn.LayerNorm):
            norm.reset_parameters()
    return block


class GraphTransformer(nn.Module):
    """Encoder-only transformer over edge tokens; `forward(batch) -> (B,)` float32 distances."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config
        self.target_id = c.max_vertices + 1
        self.vertex_embed = nn.Embedding(c.max_vertices + 2, c.d_model // 2)  # (V, D/2)
        nn.init.normal_(self.vertex_embed.weight, std=1.0)
        self.hook_embed = HookPoint()  # (B, T, D) tokens before block 0
        if c.init == "study":  # one layer, copied: every block starts identical
            layer = study_init_(TransformerBlock(c.d_model, c.n_heads, c.d_head, c.d_ff, c.norm, c.attn_bias))
            self.blocks = nn.ModuleList(copy.deepcopy(layer) for _ in range(c.n_layers))
        else:
            self.blocks = nn.ModuleList(
                TransformerBlock(c.d_model, c.n_heads, c.d_head, c.d_ff, c.norm, c.attn_bias)
                for _ in range(c.n_layers))
        self.ln_final = nn.LayerNorm(c.d_model) if c.norm == "pre" else nn.Identity()
        self.hook_final = HookPoint()  # (B, D) the target token's residual fed to the read-out
        self.readout = nn.Linear(c.d_model, 1)

    def tokens(self, batch: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, T, 2) and the real-token mask (B, T); the target token is position 0."""
        target = torch.stack([batch.target, torch.full_like(batch.target, self.target_id)], dim=-1)
        ids = torch.cat([target[:, None, :], batch.edges], dim=1)  # (B, 1 + M, 2)
        return ids, ids[..., 0] > 0

    def forward(self, batch: GraphBatch, buckets: int = 1, pack: bool = False) -> torch.Tensor:
        """Distances (B,) float32. `pack` runs the packed layout (no padding at all; see the module
        docstring) unless a hook is active. Otherwise `buckets` > 1 sorts the batch by edge count and
        runs that many chunks, each trimmed to its own longest edge list. Either way the result is
        the same as `buckets=1` up to float rounding. A graph outside the model's vocabulary (vertex
        ids, targets or max_vertices above `max_vertices`) is a ValueError naming it
        (`data_gen.validate.check_graphs`)."""
        batch.check(self.config.max_vertices)
        if pack and len(batch) and not any(hook.active for hook in self.hook_points()):
            return self._forward_packed(batch)
        if buckets > 1 and len(batch) >= 2 * buckets:
            order = torch.argsort(batch.num_edges, stable=True)
            pieces = [self._forward(batch[chunk].trim()) for chunk in order.tensor_split(buckets)]
            return torch.empty_like(order, dtype=torch.float32).index_put_((order,), torch.cat(pieces))
        return self._forward(batch.trim())

    def _forward(self, batch: GraphBatch) -> torch.Tensor:
        ids, mask = self.tokens(batch)
        x = self.hook_embed(rearrange(self.vertex_embed(ids), "b t s h -> b t (s h)"))  # (B, T, D)
        for block in self.blocks:
            x = block(x, mask)
        with torch.autocast(x.device.type, enabled=False):  # the read-out and loss stay float32
            out = self.readout(self.hook_final(self.ln_final(x[:, 0].float())))  # (B, 1)
        return out.squeeze(-1)

    def _forward_packed(self, batch: GraphBatch) -> torch.Tensor:
        ids, mask = self.tokens(batch.trim())  # (B, T, 2), (B, T): a graph's real tokens come first
        packing = Packing.of(mask)
        x = rearrange(self.vertex_embed(ids[mask]), "n s h -> n (s h)")  # (N, D)
        for block in self.blocks:
            x = block(x, packing)
        first = packing.gather.view(packing.graphs, packing.tokens)[:, 0]  # (B,) each graph's target token
        with torch.autocast(x.device.type, enabled=False):
            return self.readout(self.ln_final(x[first].float())).squeeze(-1)  # (B,)

    def hook_points(self) -> list[HookPoint]:
        return [module for module in self.modules() if isinstance(module, HookPoint)]

    def hook_names(self) -> list[str]:
        return [name for name, module in self.named_modules() if isinstance(module, HookPoint)]

    @torch.no_grad()
    def run_with_cache(self, batch: GraphBatch, names=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Output and every (or the named) hooked activation, detached. Runs unbucketed, so token
        positions are the batch's own (target first, then `batch.trim()` edge slots)."""
        wanted = set(self.hook_names() if names is None else names)
        unknown = wanted - set(self.hook_names())
        if unknown:
            raise KeyError(f"unknown hook name(s): {', '.join(sorted(unknown))}")
        cache: dict[str, torch.Tensor] = {}
        with hooks(self, {name: (lambda n: lambda module, inp, out: cache.__setitem__(n, out.detach()))(name)
                          for name in wanted}):
            out = self(batch)
        return out, cache

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


@contextmanager
def hooks(model: nn.Module, fns: dict):
    """Attach forward hooks `fn(module, input, output) -> replacement | None` by hook name."""
    modules = dict(model.named_modules())
    handles = []
    try:
        for name, fn in fns.items():
            if not isinstance(modules.get(name), HookPoint):
                raise KeyError(f"no hook point named {name!r}")
            handles.append(modules[name].register_forward_hook(fn))
        yield model
    finally:
        for handle in handles:
            handle.remove()


def build_model(config: ModelConfig | dict) -> GraphTransformer:
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    return GraphTransformer(config)
