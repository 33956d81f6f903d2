"""Partial fine-tuning: which parameters a fine-tuning stage trains, and LoRA adapters.

Modes (`[finetune] mode`), selected by module type, never by parameter name:
    full          every parameter trains
    norm-embed    LayerNorm gains/biases, the vertex `nn.Embedding` and the read-out `nn.Linear`
                  (Lu et al. 2021's "frozen pretrained transformer" recipe)
    readout       the read-out `nn.Linear` only (a linear probe)
    lora          a rank-r delta on every attention weight (W_Q, W_K, W_V, W_O of `Attention`) and
                  every MLP weight (`MLP.fc_in`, `MLP.fc_out`), plus the read-out; all else frozen
`[finetune] body = "random"` is Lu et al.'s control: the same mode on a randomly initialised
(not pre-trained) body.

LoRA (Hu et al. 2021). A weight is viewed as the matrix it multiplies by: W_Q/W_K/W_V [H, D, E]
as (D, H*E), W_O [H, E, D] as (H*E, D), a Linear's weight (out, in) as itself. The trained weight
is W + (alpha / r) * A @ B with A (rows, r) ~ N(0, 1/rows) and B (r, cols) = 0, so at
initialisation the model computes exactly what it did. The delta is attached with
`torch.nn.utils.parametrize`; a state-dict hook writes the **merged** weight under the
parameter's own name, so a LoRA checkpoint is an ordinary checkpoint: `checkpoint.load_model`
and the evaluator read it with no LoRA code. (The factors themselves are not saved, so a LoRA
stage cannot be resumed mid-way; it is rerun.)

Trainable parameter counts (`trainable_count`), per block with width D, H heads of width E, MLP F:
    lora:       r * (4 * (D + H*E) + 2 * (D + F)) per block, + D + 1 (read-out)
    readout:    D + 1
    norm-embed: D + 1 + (max_vertices + 2) * D/2 + 2 * D * (number of LayerNorms)
"""
from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn
from torch.nn.utils import parametrize

from graphpath.core.model import Attention, ConfigError, GraphTransformer, MLP

MODES = ("full", "norm-embed", "readout", "lora")
BODIES = ("pretrained", "random")


def validate_stage(mode, rank, alpha, body, section: str) -> None:
    """Raise ConfigError (one line) for a bad mode / rank / alpha / body of a stage."""
    def need(ok: bool, message: str):
        if not ok:
            raise ConfigError(f"{section}: {message}")

    need(mode in MODES, f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    need(body in BODIES, f"body must be one of {', '.join(BODIES)}, got {body!r}")
    if section != "finetune":
        need(mode == "full" and body == "pretrained", "mode and body apply to the fine-tuning stage only")
    if mode == "lora":
        need(isinstance(rank, int) and not isinstance(rank, bool) and rank >= 1,
             f"lora_rank must be a positive integer with mode \"lora\", got {rank!r}")
        need(isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and math.isfinite(alpha) and alpha > 0,
             f"lora_alpha must be a finite number > 0, got {alpha!r}")
    else:
        need(rank is None, f"lora_rank is only used with mode \"lora\" (mode is {mode!r})")


class LoRADelta(nn.Module):
    """Parametrization W -> W + (alpha/r) * view^-1(A @ B) for one weight tensor."""

    def __init__(self, shape: tuple, layout: str, rank: int, alpha: float, generator: torch.Generator):
        super().__init__()
        self.shape, self.layout, self.scale = tuple(shape), layout, alpha / rank
        rows, cols = self._matrix_shape()
        self.A = nn.Parameter(torch.randn(rows, rank, generator=generator) / rows ** 0.5)  # (rows, r)
        self.B = nn.Parameter(torch.zeros(rank, cols))  # (r, cols)

    def _matrix_shape(self) -> tuple[int, int]:
        if self.layout == "qkv":  # [H, D, E] used as (D, H*E)
            h, d, e = self.shape
            return d, h * e
        if self.layout == "o":  # [H, E, D] used as (H*E, D)
            h, e, d = self.shape
            return h * e, d
        return self.shape  # a Linear weight (out, in)

    def delta(self) -> torch.Tensor:
        m = self.scale * (self.A @ self.B)  # (rows, cols)
        if self.layout == "qkv":
            return rearrange(m, "d (h e) -> h d e", h=self.shape[0])
        if self.layout == "o":
            return rearrange(m, "(h e) d -> h e d", h=self.shape[0])
        return m

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.delta().to(weight.dtype)


def lora_targets(model: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(module, tensor name, layout) for every attention and MLP weight, found by module type."""
    found = []
    for module in model.modules():
        if isinstance(module, Attention):
            found += [(module, name, "qkv") for name in ("W_Q", "W_K", "W_V")] + [(module, "W_O", "o")]
        elif isinstance(module, MLP):
            found += [(module.fc_in, "weight", "linear"), (module.fc_out, "weight", "linear")]
    return found


def _merged_state_dict_hook(model, state_dict, prefix, local_metadata) -> None:
    """Replace `<m>.parametrizations.<w>.original` + LoRA factors by the merged `<m>.<w>`."""
    for name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        base = f"{prefix}{name}." if name else prefix
        for tensor_name in list(module.parametrizations.keys()):
            for key in [k for k in state_dict if k.startswith(f"{base}parametrizations.{tensor_name}.")]:
                del state_dict[key]
            state_dict[f"{base}{tensor_name}"] = getattr(module, tensor_name).detach()


def add_lora(model: nn.Module, rank: int, alpha: float, seed: int) -> list[nn.Parameter]:
    """Attach LoRA deltas (B = 0) to every attention and MLP weight; returns the new factors."""
    generator = torch.Generator().manual_seed(seed)
    factors = []
    for module, name, layout in lora_targets(model):
        weight = getattr(module, name)
        delta = LoRADelta(weight.shape, layout, rank, alpha, generator).to(weight.device)
        parametrize.register_parametrization(module, name, delta)
        factors += [delta.A, delta.B]
    model.register_state_dict_post_hook(_merged_state_dict_hook)
    return factors


def _readout(model: GraphTransformer) -> nn.Linear:
    if not isinstance(getattr(model, "readout", None), nn.Linear):
        raise ConfigError("partial fine-tuning needs a model with a Linear read-out")
    return model.readout


def apply_mode(model: GraphTransformer, mode: str, rank: int | None = None, alpha: float | None = None,
               seed: int = 0) -> int:
    """Freeze `model` for fine-tuning `mode` (adding LoRA for "lora"); returns the trainable count."""
    validate_stage(mode, rank, alpha if alpha is not None else 1.0, "pretrained", "finetune")
    if mode == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return trainable_count(model)
    for p in model.parameters():
        p.requires_grad_(False)
    keep: list[nn.Module] = [_readout(model)]
    if mode == "norm-embed":
        keep += [m for m in model.modules() if isinstance(m, (nn.LayerNorm, nn.Embedding))]
    for module in keep:
        for p in module.parameters():
            p.requires_grad_(True)
    if mode == "lora":
        for p in add_lora(model, rank, alpha if alpha is not None else float(rank), seed):
            p.requires_grad_(True)
    return trainable_count(model)


def trainable_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def expected_trainable(config, mode: str, rank: int | None = None) -> int:
    """The formula in the module docstring, from a `ModelConfig` alone (tests compare the two)."""
    D, H, E, F, L = config.d_model, config.n_heads, config.d_head, config.d_ff, config.n_layers
    readout = D + 1
    if mode == "readout":
        return readout
    if mode == "lora":
        return L * rank * (4 * (D + H * E) + 2 * (D + F)) + readout
    if mode == "norm-embed":
        norms = 0 if config.norm == "none" else 2 * L + (1 if config.norm == "pre" else 0)
        return readout + (config.max_vertices + 2) * (D // 2) + 2 * D * norms
    total = L * (4 * H * D * E + 2 * D * F + F + D) + (config.max_vertices + 2) * (D // 2) + readout
    if config.attn_bias:
        total += L * (3 * H * E + D)
    norms = 0 if config.norm == "none" else 2 * L + (1 if config.norm == "pre" else 0)
    return total + 2 * D * norms


def frozen_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of every frozen tensor (for checking that training left them bit-identical)."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}


def prepare_finetune(model: GraphTransformer, stage, seed: int, resuming: bool) -> int:
    """Apply a fine-tuning StageConfig's mode to `model` (weights already loaded); trainable count.

    LoRA factors are drawn from `seed`; a LoRA stage cannot resume (its checkpoints hold merged
    weights only), so `resuming` with mode "lora" is a ConfigError."""
    if resuming and stage.mode == "lora":
        raise ConfigError("finetune: a mode \"lora\" stage cannot be resumed (checkpoints hold merged "
                          "weights); rerun it into a new --out")
    return apply_mode(model, stage.mode, stage.lora_rank, stage.lora_alpha, seed)


RCOND = 1e-5  # fit_readout: relative singular-value cut-off, far above float32 rounding (~1e-7), far below signal


def readout_features(model: GraphTransformer, batch, chunk: int = 4096) -> torch.Tensor:
    """The read-out's inputs (N, D) float64: each graph's final normalised residual stream at
    the target token (`hook_final`), computed in chunks without gradients."""
    captured: list[torch.Tensor] = []
    handle = model.hook_final.register_forward_hook(lambda _module, _inputs, out: captured.append(out.detach()))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(batch), chunk):
                model(batch[start:start + chunk])  # the padded layout: packing skips hook_final
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(captured).double().cpu()


def fit_readout(model: GraphTransformer, batch) -> dict:
    """Set the read-out `nn.Linear(D, 1)` to the least-squares fit on `batch` (a GraphBatch of N
    graphs): argmin over (w, b) of mean((f_i . w + b - y_i)^2), f_i the read-out's input
    (`readout_features`), y_i the label. With mode "readout" this is the exact minimiser of the
    fine-tuning MSE on the sample: a linear probe trained to convergence (the probe literature's
    closed form, e.g. Alain and Bengio 2016, section 3), which gradient steps on these
    ill-conditioned LayerNorm features approach only slowly. Solved in float64 by
    `torch.linalg.lstsq` with the SVD driver, dropping directions whose singular value is below
    RCOND of the largest: the features are computed in float32, and a LayerNorm's outputs are
    centred, so with the bias column one direction is zero up to float32 rounding (about 3e-8 of
    the largest in a test); keeping it would put a huge coefficient on rounding noise, which the
    float32 read-out then cannot hold. The rest is the minimum-norm least-squares solution.
    Returns {"graphs": N, "mse": the fitted read-out's MSE on the sample, "mse_before": the kept
    read-out's}. Raises ValueError for an empty batch."""
    if not len(batch):
        raise ValueError("fit_readout needs at least one graph")
    readout = model.readout
    features = readout_features(model, batch)  # (N, D)
    design = torch.cat([features, torch.ones(len(features), 1, dtype=torch.float64)], dim=1)  # (N, D + 1)
    label = batch.label.double().cpu()  # (N,)
    with torch.no_grad():
        before = design @ torch.cat([readout.weight.double().cpu().view(-1), readout.bias.double().cpu()])
        solution = torch.linalg.lstsq(design, label[:, None], rcond=RCOND, driver="gelsd").solution.view(-1)  # (D + 1,)
        readout.weight.copy_(solution[:-1].view_as(readout.weight).to(readout.weight))
        readout.bias.copy_(solution[-1:].to(readout.bias))
    return {"graphs": len(batch), "mse": float(((design @ solution - label) ** 2).mean()),
            "mse_before": float(((before - label) ** 2).mean())}
