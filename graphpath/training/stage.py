"""One training stage (pre-train or fine-tune): the optimizer loop, held-out evaluation, metrics,
checkpoints and exact resume. `graphpath.training.run` is the command line around it.

Loss: mean squared error of the predicted distance, always reduced in float32. A stage's
`precision` says how the model runs: fp32 (the default everywhere), tf32 (CUDA: float32 matmuls
may use TF32; CPU: plain fp32) or bf16 (CUDA only: the blocks under bf16 autocast, the read-out
and the loss in float32). The study trained in float32 after bf16 broke training at its batch size.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from data_gen import GraphBatch, GraphSpec
from data_gen.splits import split_batch
from graphpath_common.files import append_line, atomic_write_text
from graphpath_common.jsonfile import json_line
from graphpath_common.rundir import RunDir, read_jsonl

from graphpath.core.checkpoint import (find_checkpoint, optimizer_from_parts, prune_checkpoints, read_info,
                                       read_train_tensors, read_weights, load_weights_into, save_checkpoint,
                                       unwrap, CheckpointError)
from graphpath.core.config import PRECISIONS, ConfigError, RunConfig, StageConfig
from graphpath.core.contract import contract_to_json, stage_contract
from graphpath.evaluation.predict import predict
from graphpath.training.feed import DataError, load_dataset, make_feed, stage_seed
from graphpath.training.phases import CURVE_SIZE, curve_steps
from graphpath.training.prefetch import PrefetchFeed
from graphpath.core.model import GraphTransformer


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step, the last good checkpoint and
    the command that continues from it with a lower learning rate."""


@dataclass(frozen=True)
class Precision:
    """What a stage's `precision` means on one device."""
    name: str = "fp32"
    autocast_dtype: torch.dtype | None = None  # None: no autocast, the model runs in float32
    allow_tf32: bool = False  # CUDA float32 matmuls may use TF32 tensor cores


def choose_precision(device_type: str, precision: str) -> Precision:
    """The autocast dtype and TF32 flag for `precision` on a device type ("cpu", "cuda");
    ConfigError for bf16 off CUDA (bf16 matmuls on the CPUs we measured run at ~1 GFLOP/s)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if device_type != "cuda":
        if precision == "bf16":
            raise ConfigError("precision \"bf16\" needs CUDA; on CPU use fp32 (bf16 matmuls there are "
                              "~100x slower than fp32)")
        return Precision(precision)  # TF32 is a CUDA matmul mode: on CPU "tf32" is plain fp32
    if precision == "bf16":
        return Precision("bf16", torch.bfloat16, False)
    return Precision(precision, None, precision == "tf32")


@dataclass
class Runtime:
    """Where and how this process runs."""
    device: torch.device
    rank: int = 0
    world: int = 1
    precision: Precision = Precision()

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process (a no-op in a single-process run): what the main process writes
        before it (a stage's final checkpoint) is there for the others after it."""
        if self.world > 1:
            dist.barrier()

    def with_precision(self, name: str) -> "Runtime":
        """This runtime for a stage of precision `name`; sets the CUDA TF32 flags process-wide."""
        precision = choose_precision(self.device.type, name)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = precision.allow_tf32
            torch.backends.cudnn.allow_tf32 = precision.allow_tf32
        return dataclasses.replace(self, precision=precision)

    def autocast(self):
        if self.precision.autocast_dtype is not None:
            return torch.autocast(self.device.type, dtype=self.precision.autocast_dtype)
        return nullcontext()

    def resume_command(self, run_dir: Path, extra: str = "") -> str:
        """The command that continues the run in `run_dir`: under torchrun with the same process
        layout (a checkpoint holds one data-feed state per process, so one process cannot resume
        a run of several)."""
        launch = "python -m graphpath.train"
        if self.world > 1:
            per_node = int(os.environ.get("LOCAL_WORLD_SIZE", self.world))
            nodes = self.world // max(per_node, 1)
            launch = (f"torchrun {f'--nnodes {nodes}' if nodes > 1 else '--standalone'} --nproc-per-node {per_node} "
                      "-m graphpath.train")
            extra += " (with the launch's own rendezvous options)" if nodes > 1 else ""
        return f"{launch} --out {run_dir} --resume{extra}"


def lr_factor(step: int, stage: StageConfig, progress: float | None = None) -> float:
    """Multiplier of the peak lr for optimizer step `step` (0-based): warmup, then decay. The decay
    follows `progress` in [0, 1] when given (a time budget's fraction spent), else the steps."""
    if step < stage.warmup_steps:
        return (step + 1) / stage.warmup_steps
    if stage.decay == "step":
        return 1.0 if step < stage.decay_step else stage.min_lr / stage.lr
    if stage.decay == "wsd":  # stable at lr, then linear to min_lr over [decay_step, steps]
        cooldown = min(1.0, max(0, step - stage.decay_step) / max(1, stage.steps - stage.decay_step))
        return 1 - (1 - stage.min_lr / stage.lr) * cooldown
    if progress is None:
        progress = min(1.0, (step - stage.warmup_steps) / max(1, stage.steps - stage.warmup_steps))
    floor = stage.min_lr / stage.lr
    if stage.decay == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if stage.decay == "linear":
        return 1 - (1 - floor) * progress
    return 1.0


def continue_optimizer(optimizer: torch.optim.Optimizer, pretrain_json: Path, stage: StageConfig) -> None:
    """Load the pre-training optimizer's state (moments and step counts) into `optimizer`, keeping
    this stage's lr, weight decay and betas: the study's notebook fine-tunes by stepping on."""
    wanted = [(group["lr"], group["weight_decay"], group["betas"]) for group in optimizer.param_groups]
    info = read_info(pretrain_json)
    try:
        optimizer.load_state_dict(optimizer_from_parts(read_train_tensors(pretrain_json, info),
                                                       info["train_state"]["optimizer"]))
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"optimizer \"continue\": the optimizer state in {pretrain_json} does not fit "
                              f"this model: {error}") from None
    for group, (lr, weight_decay, betas) in zip(optimizer.param_groups, wanted):
        group.update(lr=lr, initial_lr=lr, weight_decay=weight_decay, betas=betas)


def stage_optimizer(model: torch.nn.Module, stage: StageConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices and embeddings only (not on biases or LayerNorm gains). Its
    fused step (one kernel for every parameter) where the parameters' device has one (CPU, CUDA)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for p in params) or None
    return torch.optim.AdamW([{"params": decay, "weight_decay": stage.weight_decay},
                              {"params": rest, "weight_decay": 0.0}],
                             lr=stage.lr, betas=tuple(stage.betas), fused=fused)


def weight_average(model: torch.nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of `model`'s weights (a copy of the module; `.module` is the
    averaged model): `update_parameters(model)` after each optimizer step sets
    avg <- decay * avg + (1 - decay) * w, the first update copying w (the formula of
    torch.optim.swa_utils.get_ema_multi_avg_fn: the exponential form of iterate averaging, Polyak &
    Juditsky 1992). It averages about the last 1 / (1 - decay) steps."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def compute_loss(model, batch: GraphBatch, buckets: int, runtime: Runtime,
                 pack: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss float32 scalar, predictions float32 (B,)) with the model under the runtime's autocast,
    in the packed layout or padded in `buckets` chunks."""
    with runtime.autocast():
        pred = model(batch, buckets=buckets, pack=True) if pack else model(batch, buckets=buckets)  # (B,)
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


def score_heldout(model, data: GraphBatch, buckets: int, runtime: Runtime,
                  pack: bool = False) -> tuple[float, dict[str, float]]:
    """(mse, per-label mse) of `model` on a held-out set, through the package's one inference loop
    (`evaluation.predict`) under the runtime's autocast and the stage's layout (packed, or buckets)."""
    pred = torch.from_numpy(predict(model, data, runtime.device, chunk=8192, autocast=runtime.autocast,
                                    buckets=buckets, pack=pack))  # (B,) float64
    return float(((pred - data.label.double()) ** 2).mean()), per_label(label_sums(pred, data.label, data.max_vertices))


class MetricsLog:
    """Appends metrics.jsonl lines (main process only); `truncate` drops a stage's lines after a step."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def read(self) -> list[dict]:
        return read_jsonl(self.path)

    def truncate(self, stage: str, after_step: int) -> None:
        if self.enabled:
            kept = [m for m in self.read() if not (m["stage"] == stage and m["step"] > after_step)]
            atomic_write_text(self.path, "".join(json_line(m) + "\n" for m in kept))

    def write(self, record: dict) -> None:
        """One line, whole or not at all; a non-finite number is written as null."""
        if self.enabled:
            append_line(self.path, json_line(record))


def heldout_set(config: RunConfig, spec: GraphSpec, stage_name: str, stage: StageConfig) -> GraphBatch:
    return split_batch(f"heldout-{stage_name}", spec=spec, size=stage.eval_size)  # every run seed: one set


def validation_set(spec: GraphSpec, stage_name: str, stage: StageConfig) -> GraphBatch | None:
    """The stage's validation set: its `validation_dataset` (the first `validation_size` graphs when
    set), else its validation split (what a recipe search selects on), or None when not asked for."""
    if stage.validation_dataset is not None:
        data = load_dataset(stage.validation_dataset, spec.max_vertices)
        return data if stage.validation_size is None else data[:stage.validation_size]
    if stage.validation_size is None:
        return None
    return split_batch(f"validation-{stage_name}", spec=spec, size=stage.validation_size)


def train_stage(model: GraphTransformer, config: RunConfig, stage_name: str, spec: GraphSpec, run_dir: Path,
                runtime: Runtime, resume_from: Path | None = None, stop_after: int | None = None,
                show_progress: bool = True) -> dict:
    """Train `model` (already initialized or loaded) for one stage; returns a summary dict.

    Writes metrics lines, checkpoints every `checkpoint_every` steps (keeping the newest
    `keep_checkpoints`) and `<stage>-final` at the end; a checkpoint only of weights whose held-out
    loss is finite (else TrainingDiverged, as for a non-finite batch loss).
    `stop_after` ends this invocation after that many steps with a checkpoint, as an interruption
    would (resume continues bit-identically on CPU). Fine-tuning with `optimizer = "continue"`
    starts from the pre-training optimizer in `run_dir/checkpoints/pretrain-final`.
    """
    return StageLoop(model, config, stage_name, spec, run_dir, runtime, resume_from).run(stop_after, show_progress)


class StageLoop:
    """One stage's state (optimizer, schedule, feed, counters) and its steps: set up, train a batch,
    log (and evaluate), checkpoint, run."""

    def __init__(self, model, config: RunConfig, stage_name: str, spec: GraphSpec, run_dir: Path,
                 runtime: Runtime, resume_from: Path | None):
        self.stage: StageConfig = getattr(config, "train" if stage_name == "pretrain" else "finetune")
        stage = self.stage
        for size in [stage.batch_size] + [size for _, size in stage.batch_ramp or ()]:
            if size % runtime.world:
                raise DataError(f"batch size {size} is not divisible by the {runtime.world} processes")
        self.model, self.base, self.spec, self.stage_name = model, unwrap(model), spec, stage_name
        self.runtime = runtime.with_precision(stage.precision)
        self.ckpt_dir = RunDir(run_dir).checkpoints
        self.metrics = MetricsLog(RunDir(run_dir).metrics, runtime.main)
        self.optimizer = stage_optimizer(self.base, stage)
        if stage_name == "finetune" and stage.optimizer == "continue" and resume_from is None:
            continue_optimizer(self.optimizer, find_checkpoint(RunDir(run_dir).checkpoint("pretrain")), stage)
        self.elapsed_before = float(read_info(resume_from).get("elapsed_s", 0.0)) if resume_from is not None else 0.0
        self.clock = time.perf_counter()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lambda s: lr_factor(s, stage, self.budget_spent()))
        self.feed = make_feed(spec, stage.batch_size // runtime.world,
                              stage_seed(config.seed, stage_name, "train", runtime.rank),
                              stage.dataset, runtime.rank, runtime.world)
        if runtime.device.type == "cuda":  # draw (and pin) the next batches while the GPU trains
            self.feed = PrefetchFeed(self.feed, pin=True)
        self.step, self.examples = 0, 0
        # the weight average (made before compiling: a copy would share the compiled forward); what
        # held-out sets score and checkpoints hold when it is on
        self.ema = weight_average(self.base, stage.ema_decay) if stage.ema_decay is not None else None
        self.scored = self.ema.module if self.ema is not None else self.base
        if resume_from is not None:
            self.step, self.examples = _restore(resume_from, self.base, self.optimizer, self.scheduler, self.feed,
                                                runtime, stage, self.ema)
            self.metrics.truncate(stage_name, self.step)
        if stage.compile:  # compile the tensor program only; bucketing and trimming stay in Python
            self.base._forward = torch.compile(self.base._forward, dynamic=True)
        self.heldout = heldout_set(config, spec, stage_name, stage) if runtime.main else None
        self.validation = validation_set(spec, stage_name, stage) if runtime.main else None
        # the phase detector's per-label curves (pre-training, where the study saw its phase changes):
        # the held-out set's first graphs every other step through the warm-up, at log-spaced steps
        # from step 1 on and at every regular eval
        self.curve_steps = (curve_steps(stage.steps, stage.eval_every, warmup=stage.warmup_steps)
                            if stage_name == "pretrain" else set())
        self.curve_set = self.heldout[:CURVE_SIZE] if runtime.main else None
        self.info = {"model_config": self.base.config.to_dict(), "data": config.data.preset_kwargs(),
                     "stages": contract_to_json(stage_contract(config, stage_name)),  # what it is trained on
                     "seed": config.seed, "stage": stage_name, "precision": stage.precision}
        if stage_name == "finetune":
            self.info["finetune_optimizer"] = stage.optimizer
        if self.ema is not None:  # the checkpoints' weights (and heldout_loss) are the average's
            self.info.update(scored_weights="ema", ema_decay=stage.ema_decay)
        self.run_dir = run_dir
        self.last_good = f"{stage_name}-{self.step}" if resume_from is not None else None
        self.sums = torch.zeros(2, spec.max_vertices + 1, dtype=torch.float64, device=runtime.device)
        self.loss_value = self.eval_loss = float("nan")
        self.eval_step = None  # the step self.eval_loss was measured at

    def diverged(self, what: str, value: float) -> TrainingDiverged:
        """The error for a non-finite `what` at this step, with the command that continues from
        the last good checkpoint (or restarts the stage when there is none) at a tenth of the lr."""
        section = "train" if self.stage_name == "pretrain" else "finetune"
        where = (f"last good checkpoint: checkpoints/{self.last_good}" if self.last_good
                 else f"no good {self.stage_name} checkpoint yet, so the stage restarts from step 0")
        command = self.runtime.resume_command(self.run_dir, f" --{section}.lr {self.stage.lr / 10:g}")
        return TrainingDiverged(f"{self.stage_name} {what} became {value} at step {self.step}; stopped ({where}). "
                                f"Continue with a lower lr: {command}")

    def heldout_loss(self) -> float:
        """The held-out loss of the weights as they are now, the same on every process: measured by
        the main process (unless it did at this step already), then shared (every process calls
        this at the same steps)."""
        if self.runtime.main and self.eval_step != self.step:
            self.eval_loss, _ = score_heldout(self.scored, self.heldout, self.stage.buckets, self.runtime,
                                              self.stage.pack)
            self.eval_step = self.step
        if self.runtime.world > 1:
            shared = [self.eval_loss]
            dist.broadcast_object_list(shared, src=0)
            self.eval_loss = shared[0]
        return self.eval_loss

    def elapsed(self) -> float:
        """Seconds this stage has run, over every invocation (resumed runs included)."""
        return self.elapsed_before + time.perf_counter() - self.clock

    def budget_spent(self) -> float | None:
        """The fraction of the stage's time budget spent (None without one)."""
        if self.stage.time_budget is None:
            return None
        return min(1.0, self.elapsed() / self.stage.time_budget)

    def finished(self) -> bool:
        return self.step >= self.stage.steps or self.budget_spent() == 1.0

    def checkpoint(self, name: str) -> None:
        """Save a checkpoint if its weights are good (finite held-out loss, recorded in its JSON),
        keep the newest `keep_checkpoints` numbered ones; TrainingDiverged otherwise."""
        loss = self.heldout_loss()
        if not math.isfinite(loss):
            raise self.diverged("held-out loss", loss)
        states = [self.feed.state()]
        if self.runtime.world > 1:
            states = [None] * self.runtime.world
            dist.all_gather_object(states, self.feed.state())
        if self.runtime.main:
            # with a weight average the checkpoint's weights are the average (the model it scores),
            # and the optimizer's own weights ride in the training state (`raw.*`) for --resume
            raw = ({} if self.ema is None else
                   {"ema.n_averaged": self.ema.n_averaged,
                    **{f"raw.{key}": value for key, value in self.base.state_dict().items()}})
            save_checkpoint(self.ckpt_dir, name, self.scored, {**self.info, "step": self.step, "examples": self.examples,
                                                               "heldout_loss": loss, "elapsed_s": self.elapsed()},
                            self.optimizer, self.scheduler, {"feed": states}, raw)
            prune_checkpoints(self.ckpt_dir, self.stage_name, self.stage.keep_checkpoints)
        self.last_good = name

    def train_batch(self) -> float:
        """One optimizer step on the next batch; returns the lr it used."""
        size = self.stage.batch_at(self.step)
        if self.stage.batch_ramp is not None:
            self.feed.resize(size // self.runtime.world)
        batch = self.feed.next()
        if self.runtime.device.type == "cuda":
            batch = batch.pin_memory().to(self.runtime.device, non_blocking=True)
        loss, pred = compute_loss(self.model, batch, self.stage.buckets, self.runtime, self.stage.pack)
        if not torch.isfinite(loss):
            self.step += 1  # the step whose batch gave it
            raise self.diverged("loss", loss.item())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.stage.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.base.parameters(), self.stage.grad_clip)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.base)
        self.scheduler.step()
        self.step += 1
        self.examples += size
        self.sums += label_sums(pred, batch.label, self.spec.max_vertices)
        return lr

    def log(self, lr: float, speed: float, elapsed: float, with_eval: bool) -> None:
        """One metrics.jsonl line from the batches since the last one (and the held-out set)."""
        if self.runtime.world > 1:
            dist.all_reduce(self.sums)
        self.loss_value = float(self.sums[0].sum() / self.sums[1].sum())
        record = {"stage": self.stage_name, "step": self.step, "examples": self.examples, "loss": self.loss_value,
                  "label_loss": per_label(self.sums), "label_count": label_counts(self.sums), "lr": lr,
                  "examples_per_s": round(speed, 1), "elapsed_s": round(elapsed, 1)}
        if with_eval and self.runtime.main:
            self.eval_loss, eval_labels = score_heldout(self.scored, self.heldout, self.stage.buckets, self.runtime,
                                                        self.stage.pack)
            self.eval_step = self.step
            record.update(eval_loss=self.eval_loss, eval_label_loss=eval_labels)
            if self.ema is not None:  # which weights eval_loss scored, and the optimizer's own beside them
                record.update(eval_weights="ema", raw_eval_loss=score_heldout(
                    self.base, self.heldout, self.stage.buckets, self.runtime, self.stage.pack)[0])
            if self.validation is not None:
                record["val_loss"] = score_heldout(self.scored, self.validation, self.stage.buckets, self.runtime,
                                                   self.stage.pack)[0]
        if self.step in self.curve_steps and self.runtime.main:
            # the optimizer's weights even with an average: phase changes are the training's
            # dynamics, which an average of the last ~1 / (1 - decay) steps would smear and delay
            curve_loss, curve_labels = score_heldout(self.base, self.curve_set, self.stage.buckets, self.runtime,
                                                     self.stage.pack)
            record.update(curve_loss=curve_loss, curve_label_loss=curve_labels)
        self.metrics.write(record)
        self.sums.zero_()

    def run(self, stop_after: int | None, show_progress: bool) -> dict:
        stage, name = self.stage, self.stage_name
        tick, tick_examples = time.perf_counter(), self.examples
        started, start_examples = tick, self.examples
        bar = tqdm(total=stage.steps, initial=self.step, desc=name, unit="step", mininterval=1.0,
                   disable=not (show_progress and self.runtime.main), dynamic_ncols=True)
        self.model.train()
        stop_at = None if stop_after is None else self.step + stop_after
        self.clock = time.perf_counter()
        finished = self.finished()
        try:
            while not finished:
                lr = self.train_batch()
                bar.update(1)
                finished = self.finished()
                is_eval = self.step % stage.eval_every == 0 or finished
                if self.step % stage.log_every == 0 or is_eval or self.step in self.curve_steps:
                    now = time.perf_counter()
                    speed = (self.examples - tick_examples) / max(now - tick, 1e-9)
                    self.log(lr, speed, now - started, is_eval)
                    bar.set_postfix_str(f"loss {self.loss_value:.4g} | {speed:,.0f} ex/s", refresh=False)
                    tick, tick_examples = time.perf_counter(), self.examples
                if self.step % stage.checkpoint_every == 0 and not finished:
                    self.checkpoint(f"{name}-{self.step}")
                if stop_at is not None and self.step >= stop_at and not finished:
                    self.checkpoint(f"{name}-{self.step}")
                    return {"stage": name, "stopped": True, "step": self.step}
        finally:
            bar.close()
            if isinstance(self.feed, PrefetchFeed):
                self.feed.close()
        self.checkpoint(f"{name}-final")
        seconds = time.perf_counter() - started
        summary = {"stage": name, "stopped": False, "step": self.step, "examples": self.examples,
                   "loss": self.loss_value, "eval_loss": self.eval_loss, "seconds": seconds,
                   "examples_per_s": (self.examples - start_examples) / max(seconds, 1e-9)}
        if self.ema is not None:  # the stage delivers the average: the caller's model becomes it
            summary["scored_weights"] = "ema"
            self.base.load_state_dict(self.scored.state_dict())
        return summary


def _restore(json_path: Path, model, optimizer, scheduler, feed, runtime: Runtime,
             stage: StageConfig, ema: AveragedModel | None = None) -> tuple[int, int]:
    """Load a checkpoint's weights, optimizer, schedule, feed and RNG state (and with `ema`, the
    weight average: the checkpoint's weights, the optimizer's own in `raw.*`); returns (step,
    examples). The schedule is rebuilt from `stage` (the same values, or the `lr`, `min_lr` or
    `steps` a resume may change: graphpath.training.resume), from the restored step on."""
    info = read_info(json_path)
    state = info["train_state"]
    tensors = read_train_tensors(json_path)
    if (ema is not None) != ("ema.n_averaged" in tensors):  # ema_decay cannot change on resume (a hand-edited run)
        had, has = ("no", "one") if ema is not None else ("one", "no")
        raise CheckpointError(f"{json_path} was written with {had} weight average and this stage has {has} "
                              f"(ema_decay cannot change on resume)")
    if ema is None:
        load_weights_into(model, read_weights(json_path), json_path)
    else:
        load_weights_into(ema.module, read_weights(json_path), json_path)
        load_weights_into(model, {key[len("raw."):]: value for key, value in tensors.items()
                                  if key.startswith("raw.")}, json_path)
        ema.n_averaged.copy_(tensors["ema.n_averaged"])
    try:
        optimizer.load_state_dict(optimizer_from_parts(tensors, state["optimizer"]))
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"optimizer state in {json_path} does not fit: {error}") from None
    scheduler.load_state_dict(state["scheduler"])
    scheduler.base_lrs = [stage.lr for _ in optimizer.param_groups]
    for group in optimizer.param_groups:  # LambdaLR's own rule: base_lr * factor(last_epoch)
        group["initial_lr"] = stage.lr
        group["lr"] = stage.lr * lr_factor(scheduler.last_epoch, stage)
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
        return find_checkpoint(RunDir(run_dir).checkpoints, stage=stage_name)
    except CheckpointError:
        return None
