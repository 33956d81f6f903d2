"""One training stage (pre-train or fine-tune): the optimizer loop, held-out evaluation, metrics,
checkpoints and exact resume. `graphpath.train` is the command line around it.

Loss: mean squared error of the predicted distance, always reduced in float32 (under CUDA the
model runs in bf16 autocast; its read-out and everything after it stay float32).
"""
from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from data_gen import GraphBatch, GraphSpec, sample
from graphpath_common.files import atomic_write_text

from .checkpoint import (find_checkpoint, optimizer_from_parts, read_info, read_train_tensors,
                         read_weights, load_weights_into, save_checkpoint, unwrap, CheckpointError)
from .config import RunConfig, StageConfig
from .feed import DataError, make_feed, stage_seed
from .model import GraphTransformer


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


@dataclass
class Runtime:
    """Where and how this process runs."""
    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()


def lr_factor(step: int, stage: StageConfig) -> float:
    """Multiplier of the peak lr for optimizer step `step` (0-based): warmup, then decay."""
    if step < stage.warmup_steps:
        return (step + 1) / stage.warmup_steps
    if stage.decay == "step":
        return 1.0 if step < stage.decay_step else stage.min_lr / stage.lr
    progress = min(1.0, (step - stage.warmup_steps) / max(1, stage.steps - stage.warmup_steps))
    floor = stage.min_lr / stage.lr
    if stage.decay == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if stage.decay == "linear":
        return 1 - (1 - floor) * progress
    return 1.0


def make_optimizer(model: torch.nn.Module, stage: StageConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices and embeddings only (not on biases or LayerNorm gains)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": stage.weight_decay},
                              {"params": rest, "weight_decay": 0.0}],
                             lr=stage.lr, betas=tuple(stage.betas))


def compute_loss(model, batch: GraphBatch, buckets: int, runtime: Runtime) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss float32 scalar, predictions float32 (B,)) with the model under the runtime's autocast."""
    with runtime.autocast():
        pred = model(batch, buckets=buckets)  # (B,)
    return F.mse_loss(pred.float(), batch.label.float()), pred


def label_sums(pred: torch.Tensor, label: torch.Tensor, max_vertices: int) -> torch.Tensor:
    """(2, max_vertices + 1) float64: squared-error sums and counts per label."""
    err = (pred.detach().double() - label.double()) ** 2
    out = torch.zeros(2, max_vertices + 1, dtype=torch.float64, device=pred.device)
    out[0].index_add_(0, label, err)
    out[1].index_add_(0, label, torch.ones_like(err))
    return out


def per_label(sums: torch.Tensor) -> dict[str, float]:
    sums = sums.cpu()
    return {str(label): float(sums[0, label] / sums[1, label]) for label in range(sums.shape[1]) if sums[1, label] > 0}


def label_counts(sums: torch.Tensor) -> dict[str, int]:
    counts = sums[1].cpu()
    return {str(label): int(counts[label]) for label in range(len(counts)) if counts[label] > 0}


@torch.no_grad()
def evaluate(model, data: GraphBatch, buckets: int, runtime: Runtime, chunk: int = 8192):
    """(mse, per-label mse, predictions (B,) on CPU) of `model` on a held-out set."""
    was_training = model.training
    model.eval()
    preds = []
    for start in range(0, len(data), chunk):
        part = data[start:start + chunk].to(runtime.device)
        with runtime.autocast():
            preds.append(model(part, buckets=buckets).float().cpu())
    model.train(was_training)
    pred = torch.cat(preds)
    sums = label_sums(pred, data.label, data.max_vertices)
    return float(F.mse_loss(pred, data.label.float())), per_label(sums), pred


class MetricsLog:
    """Appends metrics.jsonl lines (main process only); `truncate` drops a stage's lines after a step."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def truncate(self, stage: str, after_step: int) -> None:
        if self.enabled:
            kept = [m for m in self.read() if not (m["stage"] == stage and m["step"] > after_step)]
            atomic_write_text(self.path, "".join(json.dumps(m) + "\n" for m in kept))

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")


def heldout_set(config: RunConfig, spec: GraphSpec, stage_name: str, stage: StageConfig) -> GraphBatch:
    return sample(spec, stage.eval_size, stage_seed(config.seed, stage_name, "eval"))


def train_stage(model: GraphTransformer, config: RunConfig, stage_name: str, spec: GraphSpec, run_dir: Path,
                runtime: Runtime, resume_from: Path | None = None, stop_after: int | None = None,
                show_progress: bool = True) -> dict:
    """Train `model` (already initialized or loaded) for one stage; returns a summary dict.

    Writes metrics lines, checkpoints every `checkpoint_every` steps and `<stage>-final` at the end.
    `stop_after` ends this invocation after that many steps with a checkpoint, as an interruption
    would (resume continues bit-identically on CPU).
    """
    stage: StageConfig = getattr(config, "train" if stage_name == "pretrain" else "finetune")
    if stage.batch_size % runtime.world:
        raise DataError(f"batch_size {stage.batch_size} is not divisible by the {runtime.world} processes")
    local_batch = stage.batch_size // runtime.world
    ckpt_dir = run_dir / "checkpoints"
    metrics = MetricsLog(run_dir / "metrics.jsonl", runtime.main)
    base = unwrap(model)
    optimizer = make_optimizer(base, stage)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, stage))
    feed = make_feed(spec, local_batch, stage_seed(config.seed, stage_name, "train", runtime.rank),
                     stage.dataset, runtime.rank, runtime.world)
    step, examples = 0, 0
    if resume_from is not None:
        step, examples = _restore(resume_from, base, optimizer, scheduler, feed, runtime)
        metrics.truncate(stage_name, step)
    forward = model
    if stage.compile:  # compile the tensor program only; bucketing and trimming stay in Python
        base._forward = torch.compile(base._forward, dynamic=True)
    heldout = heldout_set(config, spec, stage_name, stage) if runtime.main else None
    info = {"model_config": base.config.to_dict(), "data": dict(config.data), "seed": config.seed,
            "stage": stage_name}

    def checkpoint(name: str):
        states = [feed.state()]
        if runtime.world > 1:
            states = [None] * runtime.world
            dist.all_gather_object(states, feed.state())
        if runtime.main:
            save_checkpoint(ckpt_dir, name, base, {**info, "step": step, "examples": examples}, optimizer, scheduler,
                            {"feed": states})

    sums = torch.zeros(2, spec.max_vertices + 1, dtype=torch.float64, device=runtime.device)
    last_good = f"{stage_name}-{step}" if resume_from is not None else None
    tick, tick_examples = time.perf_counter(), examples
    started, start_examples = tick, examples
    bar = tqdm(total=stage.steps, initial=step, desc=stage_name, unit="step", mininterval=1.0,
               disable=not (show_progress and runtime.main), dynamic_ncols=True)
    forward.train()
    loss_value = eval_loss = float("nan")
    stop_at = None if stop_after is None else step + stop_after
    while step < stage.steps:
        batch = feed.next()
        if runtime.device.type == "cuda":
            batch = batch.pin_memory().to(runtime.device, non_blocking=True)
        loss, pred = compute_loss(forward, batch, stage.buckets, runtime)
        if not torch.isfinite(loss):
            where = f"checkpoints/{last_good}" if last_good else "none written yet"
            bar.close()
            raise TrainingDiverged(f"{stage_name} loss became {loss.item()} at step {step + 1}; stopped. "
                                   f"Last good checkpoint: {where} (try a lower lr, then --resume)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if stage.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(base.parameters(), stage.grad_clip)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        step += 1
        examples += stage.batch_size
        sums += label_sums(pred, batch.label, spec.max_vertices)
        bar.update(1)
        is_eval = step % stage.eval_every == 0 or step == stage.steps
        if step % stage.log_every == 0 or is_eval:
            if runtime.world > 1:
                dist.all_reduce(sums)
            now = time.perf_counter()
            speed = (examples - tick_examples) / max(now - tick, 1e-9)
            loss_value = float(sums[0].sum() / sums[1].sum())
            record = {"stage": stage_name, "step": step, "examples": examples, "loss": loss_value,
                      "label_loss": per_label(sums), "label_count": label_counts(sums), "lr": lr,
                      "examples_per_s": round(speed, 1), "elapsed_s": round(now - started, 1)}
            if is_eval and runtime.main:
                eval_loss, eval_labels, _ = evaluate(base, heldout, stage.buckets, runtime)
                record.update(eval_loss=eval_loss, eval_label_loss=eval_labels)
            metrics.write(record)
            bar.set_postfix_str(f"loss {loss_value:.4g} | {speed:,.0f} ex/s", refresh=False)
            sums.zero_()
            tick, tick_examples = time.perf_counter(), examples
        if step % stage.checkpoint_every == 0 and step < stage.steps:
            checkpoint(f"{stage_name}-{step}")
            last_good = f"{stage_name}-{step}"
        if stop_at is not None and step >= stop_at and step < stage.steps:
            checkpoint(f"{stage_name}-{step}")
            bar.close()
            return {"stage": stage_name, "stopped": True, "step": step}
    bar.close()
    checkpoint(f"{stage_name}-final")
    seconds = time.perf_counter() - started
    return {"stage": stage_name, "stopped": False, "step": step, "examples": examples, "loss": loss_value,
            "eval_loss": eval_loss, "seconds": seconds,
            "examples_per_s": (examples - start_examples) / max(seconds, 1e-9)}


def _restore(json_path: Path, model, optimizer, scheduler, feed, runtime: Runtime) -> tuple[int, int]:
    info = read_info(json_path)
    state = info["train_state"]
    load_weights_into(model, read_weights(json_path), json_path)
    tensors = read_train_tensors(json_path)
    try:
        optimizer.load_state_dict(optimizer_from_parts(tensors, state["optimizer"]))
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"optimizer state in {json_path} does not fit: {error}") from None
    scheduler.load_state_dict(state["scheduler"])
    feeds = state["feed"]
    if len(feeds) != runtime.world:
        raise CheckpointError(f"{json_path} was written by {len(feeds)} processes, this run has {runtime.world}")
    feed.set_state(feeds[runtime.rank])
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and runtime.device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return int(info["step"]), int(info["examples"])


def latest_checkpoint(run_dir: Path, stage_name: str) -> Path | None:
    try:
        return find_checkpoint(run_dir / "checkpoints", stage=stage_name)
    except CheckpointError:
        return None
