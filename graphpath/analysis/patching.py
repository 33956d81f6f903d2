"""Activation patching, per layer and per head, on the learned model (TransformerLens-style hooks).

Shapes: B graphs, T = 1 + M tokens (target first), D width, H heads, E head width.

The clean run asks for the distance to the graph's target t; the corrupt run asks the same graph
for another target t' (`retarget`). One clean activation is written into the corrupt run and the
share of the output gap it closes is measured (`restored`: 1 - mean|patched - clean| /
mean|corrupt - clean|; 1 = fully restored, 0 = no effect):

    layers  each residual-stream point (`hook_embed`, `blocks.{l}.hook_resid_post`), at the target
            token and at the edge tokens separately
    heads   each head's output before W_O (`blocks.{l}.attn.hook_z[:, h]`) at every token

(Heimersheim and Nanda 2024, "How to use and interpret activation patching", sections 2-3:
denoising, i.e. clean into corrupt.)
"""
from __future__ import annotations

import re

import torch

from data_gen import GraphBatch
from graphpath.core.model import hooks

RESID = re.compile(r"^hook_embed$|^blocks\.(\d+)\.hook_resid_post$")
HEAD_OUT = re.compile(r"^blocks\.(\d+)\.attn\.hook_z$")


def stream_points(model) -> list[str]:
    """Hook names of the residual stream in order: the embedding, then each block's output."""
    names = [n for n in model.hook_names() if RESID.match(n)]
    return sorted(names, key=lambda n: -1 if "embed" in n else int(RESID.match(n).group(1)))


def retarget(batch: GraphBatch, seed: int) -> GraphBatch:
    """The same graphs asking for another target vertex (2..n, never the same one)."""
    n = batch.max_vertices
    shift = torch.randint(1, n - 1, (len(batch),), generator=torch.Generator().manual_seed(seed))
    target = (batch.target.long() - 2 + shift) % (n - 1) + 2
    return GraphBatch(edges=batch.edges, num_vertices=batch.num_vertices, target=target.to(batch.target.dtype),
                      label=batch.label, path_length=batch.path_length, max_vertices=n)


def restored(clean: torch.Tensor, corrupt: torch.Tensor, patched: torch.Tensor) -> float:
    """Share of the clean-vs-corrupt output gap a patch closes (NaN when there is no gap)."""
    gap = (corrupt - clean).abs().mean()
    return float(1 - (patched - clean).abs().mean() / gap) if gap > 0 else float("nan")


def _patched(model, corrupt, point: str, clean: torch.Tensor, select) -> torch.Tensor:
    def patch(module, inputs, output):
        output = output.clone()
        output[select] = clean[select]
        return output
    with hooks(model, {point: patch}):
        return model(corrupt)


@torch.no_grad()
def patching(model, batch: GraphBatch, seed: int) -> dict:
    """{"layers": {point: {"target": share, "edges": share}}, "heads": {"blocks.l.hh": share}}."""
    corrupt = retarget(batch, seed)
    points = stream_points(model)
    heads = sorted((n for n in model.hook_names() if HEAD_OUT.match(n)), key=lambda n: int(HEAD_OUT.match(n).group(1)))
    clean_out, cache = model.run_with_cache(batch, names=points + heads)
    corrupt_out = model(corrupt)
    layers = {}
    for point in points:
        layers[point] = {kind: restored(clean_out, corrupt_out, _patched(model, corrupt, point, cache[point], select))
                         for kind, select in (("target", (slice(None), slice(0, 1))),
                                              ("edges", (slice(None), slice(1, None))))}
    per_head = {}
    for name in heads:
        layer = HEAD_OUT.match(name).group(1)
        for h in range(cache[name].shape[1]):  # (B, H, T, E)
            per_head[f"blocks.{layer}.h{h}"] = restored(clean_out, corrupt_out,
                                                        _patched(model, corrupt, name, cache[name], (slice(None), h)))
    return {"layers": layers, "heads": per_head}
