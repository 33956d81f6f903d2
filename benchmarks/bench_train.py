"""Training throughput of graphpath's transformer vs a plain nn.TransformerEncoder, in one run.

Both have the study's architecture (d 64, 11 layers, 2 heads, FFN 4d, post-norm, biases; 550,433
parameters) and train with AdamW on the same `pretrain` batches (n <= 15). The baseline is fed the
study's way: every sequence padded to the maximum (16 tokens). Ours sorts each batch by edge count
into trimmed buckets (padding is not paid for) and uses fused scaled_dot_product_attention.
Also printed: achieved FLOP/s (matmul + attention FLOPs actually executed, x3 for forward and
backward) against a large square matmul peak measured in the same run at the same precision
(CPU: fp32; CUDA: TF32 and bf16, each model timed in both), i.e. the model FLOP utilisation (MFU)
against what this device's matmul reaches, not against a datasheet.

    python benchmarks/bench_train.py            # batch 4096 on CPU, 32768 on CUDA
    python benchmarks/bench_train.py --quick    # about a minute on 2 cores
"""
from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from data_gen import GraphBatch, sample, study_presets  # noqa: E402
from graphpath.core.model import GraphTransformer, ModelConfig  # noqa: E402

STUDY = dict(max_vertices=15, d_model=64, n_layers=11, n_heads=2, norm="post", attn_bias=True)


class PaddedEncoder(nn.Module):
    """The study's model written with nn.TransformerEncoder; sequences padded to `1 + max_edges`."""

    def __init__(self, config: ModelConfig, max_edges: int):
        super().__init__()
        self.max_edges, self.target_id = max_edges, config.max_vertices + 1
        self.embed = nn.Embedding(config.max_vertices + 2, config.d_model // 2)
        layer = nn.TransformerEncoderLayer(config.d_model, config.n_heads, config.d_ff, dropout=0.0,
                                           batch_first=True, norm_first=False)
        self.encoder = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.readout = nn.Linear(config.d_model, 1)

    def forward(self, batch: GraphBatch, buckets: int = 1) -> torch.Tensor:
        edges = nn.functional.pad(batch.edges, (0, 0, 0, self.max_edges - batch.edges.shape[1]))
        target = torch.stack([batch.target, torch.full_like(batch.target, self.target_id)], -1)[:, None]
        ids = torch.cat([target, edges], 1)  # (B, T, 2), T = 1 + max_edges always
        x = self.embed(ids).flatten(2)  # (B, T, D)
        x = self.encoder(x, src_key_padding_mask=ids[..., 0] == 0)
        return self.readout(x[:, 0].float()).squeeze(-1)


def train_flops(config: ModelConfig, tokens: int, token_pairs: int) -> float:
    """FLOPs of one forward+backward (3x forward) given executed tokens and attention pairs."""
    d, h, e, f = config.d_model, config.n_heads, config.d_head, config.d_ff
    per_token = 2 * d * 3 * h * e + 2 * h * e * d + 2 * 2 * d * f
    per_pair = 2 * 2 * h * e  # scores and mixing
    return 3 * config.n_layers * (per_token * tokens + per_pair * token_pairs)


def executed_tokens(batch: GraphBatch, buckets: int, padded_to: int | None) -> tuple[int, int]:
    if padded_to is not None:
        return len(batch) * padded_to, len(batch) * padded_to ** 2
    order = torch.argsort(batch.num_edges, stable=True)
    tokens = pairs = 0
    for chunk in order.tensor_split(buckets if len(batch) >= 2 * buckets else 1):
        width = 1 + int(batch.num_edges[chunk].max())
        tokens += len(chunk) * width
        pairs += len(chunk) * width ** 2
    return tokens, pairs


def time_training(model, batches, steps, buckets, device, autocast) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    def step(batch):
        with autocast():
            pred = model(batch, buckets=buckets)
        loss = nn.functional.mse_loss(pred.float(), batch.label.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    step(batches[0])  # warm up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def precision_context(device: torch.device, precision: str):
    """(autocast factory, matmul dtype for the peak) for "fp32" (CPU), "tf32" or "bf16" (CUDA);
    sets CUDA's TF32 flags process-wide, as graphpath's trainer does."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    if precision == "bf16":
        return (lambda: torch.autocast("cuda", dtype=torch.bfloat16)), torch.bfloat16
    return nullcontext, torch.float32


def matmul_peak(device, dtype, size=2048, repeats=10) -> float:
    if device.type == "cuda":
        size, repeats = 8192, 20
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * size ** 3 * repeats / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=None, help="graphs per step (default 4096 CPU, 32768 CUDA)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model (default 5; --quick 3)")
    parser.add_argument("--buckets", type=int, default=8, help="edge-count buckets for our model")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default torch's)")
    parser.add_argument("--quick", action="store_true", help="batch 1024, 3 steps: about a minute on 2 cores")
    args = parser.parse_args(argv)
    if (args.batch is not None and args.batch <= 0) or (args.steps is not None and args.steps <= 0) or args.buckets <= 0:
        print("bench_train: --batch, --steps and --buckets must be positive", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_train: --device cuda but no CUDA device is visible", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    cuda = device.type == "cuda"
    batch_size = args.batch or (1024 if args.quick else 32768 if cuda else 4096)
    steps = args.steps or (3 if args.quick else 20 if cuda else 5)
    spec = study_presets()["pretrain"]
    batches = [sample(spec, batch_size, seed).to(device) for seed in range(3)]
    config = ModelConfig(**STUDY)
    torch.manual_seed(0)
    ours = GraphTransformer(config).to(device)
    plain = PaddedEncoder(config, spec.max_edges).to(device)
    print(f"device {device} ({torch.get_num_threads()} threads), batch {batch_size}, {steps} timed steps; "
          f"parameters ours {sum(p.numel() for p in ours.parameters()):,}, "
          f"plain {sum(p.numel() for p in plain.parameters()):,}")
    precisions = ("tf32", "bf16") if cuda else ("fp32",)
    models = (("plain nn.TransformerEncoder, padded to max", plain, 1, 1 + spec.max_edges),
              (f"graphpath ({args.buckets} buckets, fused attention)", ours, args.buckets, None))
    for precision in precisions:
        autocast, dtype = precision_context(device, precision)
        peak = matmul_peak(device, dtype)
        speeds = []
        for name, model, buckets, padded in models:
            seconds = time_training(model, batches, steps, buckets, device, autocast)
            counts = [executed_tokens(batches[i % len(batches)], buckets, padded) for i in range(steps)]
            flops = sum(train_flops(config, t, p) for t, p in counts) / seconds
            speeds.append(batch_size * steps / seconds)
            print(f"  {precision:4s} {name:48s} {speeds[-1]:12,.0f} examples/s  {flops / 1e12:8.3f} TFLOP/s "
                  f"({100 * flops / peak:.1f}% of the matmul peak); {1e6 / speeds[-1]:.2f} s per 1M examples")
        print(f"  {precision:4s} speed-up {speeds[1] / speeds[0]:.2f}x; matmul peak {peak / 1e12:.2f} TFLOP/s "
              f"({precision}, measured now)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
