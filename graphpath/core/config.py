"""Run configuration: TOML presets in `experiments/`, dotted command-line overrides, validation.

A config file has top-level `name` and `seed` and four tables:
    [data]      `DataConfig`: the graph sizes of `data_gen.study_presets` (n_max, finetune_n_max,
                ...) and each stage's task: `pretrain_task`, `finetune_task` (names in
                data_gen.tasks.SUITE; defaults distance-12 and distance-onpath, the study's sets)
    [model]     `graphpath.core.model.ModelConfig` (max_vertices comes from data.n_max)
    [train]     the pre-training stage: `StageConfig`
    [finetune]  the fine-tuning stage: `StageConfig`
Overrides name a key with dots: `--train.lr 1e-3`, `--model.n_layers 4`, `--data.n_max 6`;
each value is parsed by its field's type (`int`, `float`, `true`/`false`, a TOML list such as
`[0.9, 0.95]`; a string field takes the text as it is). A field that may be unset (`grad_clip`,
`decay_step`, a threshold) is unset by leaving it out of the file, not by a magic word. Unknown
keys are rejected with the list of known ones.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

from data_gen import SpecError, study_presets
from data_gen.tasks import SUITE, task_spec
from graphpath_common.toml import dumps, read_toml, tomllib

from graphpath.core.model import ConfigError, ModelConfig

DECAYS = ("cosine", "linear", "constant", "step", "wsd")
PRECISIONS = ("fp32", "tf32", "bf16")  # fp32 everywhere; tf32: TF32 matmuls on CUDA; bf16: CUDA autocast
OPTIMIZERS = ("fresh", "continue")  # fine-tuning: a new AdamW, or keep stepping the pre-training one
READOUT_INITS = ("lstsq",)  # fine-tuning: the least-squares read-out (left out: the body's own)
READOUT_INIT_SIZE = 65536  # graphs for readout_init "lstsq" unless readout_init_size says
# [data] keys beyond the presets: each stage's task (the study's distance tasks by default).
STAGE_TASKS = {"pretrain_task": "distance-12", "finetune_task": "distance-onpath"}
MAX_LR = 1.0  # the largest peak learning rate a stage accepts


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    """A finite int or float (not a bool): NaN and infinity cannot train."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class DataConfig:
    """[data]: the graph sizes (keyword arguments of `data_gen.study_presets`) and each stage's task."""
    n_max: int = 15  # largest pre-training / test graph; also the model's vertex vocabulary
    finetune_n_max: int = 7  # largest fine-tuning graph
    small_target: int = 7  # "small" targets are <= this
    pretrain_threshold: int | None = None  # pre-training keeps every distance >= this; None = data_gen's default
    finetune_threshold: int | None = None  # fine-tuning keeps every 1-2 distance >= this; None = default
    pretrain_task: str = STAGE_TASKS["pretrain_task"]  # data_gen.tasks.SUITE name
    finetune_task: str = STAGE_TASKS["finetune_task"]

    def __post_init__(self):
        for name in ("n_max", "finetune_n_max", "small_target"):
            _need(_is_int(getattr(self, name)), f"data: {name} must be an integer, got {getattr(self, name)!r}")
        for name in ("pretrain_threshold", "finetune_threshold"):
            value = getattr(self, name)
            _need(value is None or _is_int(value), f"data: {name} must be an integer or left out, got {value!r}")
        for key in STAGE_TASKS:
            task = getattr(self, key)
            _need(task in SUITE, f"data.{key}: unknown task {task!r} (choose from {', '.join(SUITE)})")
        try:
            study_presets(**self.preset_kwargs())
        except (SpecError, TypeError) as error:
            raise ConfigError(f"data: {error}") from None

    def preset_kwargs(self) -> dict:
        """`study_presets` keyword arguments (unset thresholds left out): what checkpoints record as `data`."""
        values = {k: getattr(self, k) for k in ("n_max", "finetune_n_max", "small_target",
                                               "pretrain_threshold", "finetune_threshold")}
        return {k: v for k, v in values.items() if v is not None}

    def presets(self) -> dict:
        return study_presets(**self.preset_kwargs())

    def other_tasks(self) -> dict:
        """The stage tasks that differ from the study's distance tasks (empty for a study run)."""
        return {k: getattr(self, k) for k, default in STAGE_TASKS.items() if getattr(self, k) != default}

    def to_dict(self) -> dict:
        """TOML-ready: unset thresholds and the study's default tasks are left out."""
        return {**self.preset_kwargs(), **self.other_tasks()}


@dataclass
class StageConfig:
    steps: int = 1000  # optimizer steps in this stage
    batch_size: int = 512  # graphs per step (across all processes)
    batch_ramp: list | None = None  # [[step, size], ...]: from that step on, batches of that size (steps rising
    # inside (0, steps)); batch_size holds before the first. None = batch_size throughout
    lr: float = 1e-3  # peak learning rate (AdamW)
    min_lr: float = 0.0  # learning rate at the end of the decay
    warmup_steps: int = 0  # linear warmup from 0 to lr
    decay: str = "cosine"  # cosine | linear | constant | step (lr, then min_lr from decay_step on) | wsd (warmup,
    # lr until decay_step, then linear to min_lr at `steps`: Hagele et al. 2024, "Scaling laws and compute-optimal
    # training beyond fixed training durations", section 3)
    decay_step: int | None = None  # decay "step": the step where lr drops to min_lr; "wsd": where the decay starts
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    betas: list = field(default_factory=lambda: [0.9, 0.999])  # AdamW betas
    grad_clip: float | None = None  # max global grad norm; None (left out) = no clipping
    log_every: int = 10  # steps between metrics.jsonl lines (per-label MSE of the batch)
    eval_every: int = 100  # steps between held-out evaluations (also at the end)
    eval_size: int = 4096  # held-out graphs (sampled once from the stage's family, own seed)
    validation_size: int | None = None  # graphs of the stage's validation split, scored beside the held-out
    # set at every evaluation (metrics `val_loss`); a recipe search's objective, never reported; None = off
    validation_dataset: str | None = None  # pre-built dataset directory scored as `val_loss` at every evaluation
    # instead of the validation split (its first validation_size graphs when that is set): a held-out sample of
    # a dataset-trained stage's own distribution; None = the split
    checkpoint_every: int = 500  # steps between checkpoints (also at the end)
    keep_checkpoints: int = 3  # numbered checkpoints kept per stage, the newest (the finals are always kept)
    buckets: int = 4  # sort each batch by edge count into this many trimmed chunks (padded layout)
    pack: bool = False  # the model's packed layout: per-token layers on real tokens only (buckets unused)
    dataset: str | None = None  # pre-built dataset directory; None = stream fresh graphs
    compile: bool = False  # torch.compile the model's tensor program (weights are saved uncompiled)
    time_budget: float | None = None  # seconds of wall clock: the decay follows the fraction of it spent and the
    # stage ends when it is spent (or at `steps`); the step count reached depends on the machine (not deterministic)
    mode: str = "full"  # fine-tuning only: full | norm-embed | readout | lora (graphpath.training.partial)
    lora_rank: int | None = None  # mode "lora": rank r of each weight's delta
    lora_alpha: float | None = None  # mode "lora": the delta is scaled by lora_alpha / r (None = r)
    body: str = "pretrained"  # fine-tuning only: "random" = the same mode on a fresh, untrained body
    readout_init: str | None = None  # fine-tuning only: None (left out) = the body's own read-out; "lstsq" = the
    # least-squares read-out on readout_init_size graphs of the stage's family, fitted before the first step
    # (graphpath.training.partial.fit_readout: for mode "readout" the exact optimum, i.e. a converged linear probe)
    readout_init_size: int | None = None  # graphs for readout_init "lstsq" (their own stream); None = 65536
    precision: str = "fp32"  # fp32 | tf32 (CUDA: TF32 matmuls; CPU: fp32) | bf16 (CUDA autocast only)
    optimizer: str = "fresh"  # fine-tuning only: fresh = new AdamW | continue = the pre-training optimizer, moments kept
    ema_decay: float | None = None  # an exponential moving average of the weights, updated after every optimizer
    # step (torch.optim.swa_utils.AveragedModel); held-out scores and the saved weights are the average's. None = off

    def __post_init__(self):
        """Checks that hold in any stage (messages without the section; `check_section` adds it)."""
        need = _need
        for name in ("steps", "batch_size", "log_every", "eval_every", "eval_size", "checkpoint_every", "buckets",
                     "keep_checkpoints"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                 f"{name} must be a positive integer, got {value!r}")
        ramp = self.batch_ramp
        need(ramp is None or (isinstance(ramp, (list, tuple)) and ramp and all(
            isinstance(e, (list, tuple)) and len(e) == 2 and all(_is_int(v) and v > 0 for v in e) for e in ramp)
            and all(a[0] < b[0] for a, b in zip(ramp, ramp[1:])) and ramp[-1][0] < self.steps),
             f"batch_ramp must be [[step, size], ...] with positive sizes and steps rising inside (0, steps), "
             f"got {ramp!r}")
        need(self.validation_size is None or (_is_int(self.validation_size) and self.validation_size > 0),
             f"validation_size must be a positive integer or left out, got {self.validation_size!r}")
        need(isinstance(self.warmup_steps, int) and 0 <= self.warmup_steps,
             f"warmup_steps must be a non-negative integer, got {self.warmup_steps!r}")
        for name in ("lr", "min_lr", "weight_decay"):
            value = getattr(self, name)
            need(_is_number(value) and value >= 0, f"{name} must be a finite number >= 0, got {value!r}")
        need(0 < self.lr <= MAX_LR, f"lr must lie in (0, {MAX_LR:g}] (an Adam step moves each weight by about lr; "
             f"above {MAX_LR:g} it outgrows the weights themselves), got {self.lr!r}")
        need(self.min_lr <= self.lr, f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        need(self.lr * self.weight_decay < 1, f"lr * weight_decay must be < 1 (each step multiplies the weights by "
             f"1 - lr * weight_decay), got {self.lr} * {self.weight_decay}")
        need(self.decay in DECAYS, f"decay must be one of {', '.join(DECAYS)}, got {self.decay!r}")
        need((self.decay in ("step", "wsd")) == (self.decay_step is not None),
             "decay_step is needed with decay \"step\" or \"wsd\" and only then")
        need(self.decay_step is None or (isinstance(self.decay_step, int) and 0 < self.decay_step <= self.steps),
             f"decay_step must lie in [1, steps={self.steps}], got {self.decay_step!r}")
        need(isinstance(self.betas, (list, tuple)) and len(self.betas) == 2
             and all(_is_number(b) and 0 <= b < 1 for b in self.betas),
             f"betas must be two numbers in [0, 1), got {self.betas!r}")
        need(self.grad_clip is None or (_is_number(self.grad_clip) and self.grad_clip > 0),
             f"grad_clip must be a finite number > 0 or absent, got {self.grad_clip!r}")
        need(self.dataset is None or isinstance(self.dataset, str), f"dataset must be a path, got {self.dataset!r}")
        need(self.validation_dataset is None or isinstance(self.validation_dataset, str),
             f"validation_dataset must be a path, got {self.validation_dataset!r}")
        need(isinstance(self.compile, bool), f"compile must be true or false, got {self.compile!r}")
        need(isinstance(self.pack, bool), f"pack must be true or false, got {self.pack!r}")
        need(self.time_budget is None or (_is_number(self.time_budget) and self.time_budget > 0),
             f"time_budget must be a finite number of seconds > 0 or left out, got {self.time_budget!r}")
        need(self.time_budget is None or self.decay not in ("step", "wsd"),
             f"time_budget needs a decay that follows progress (cosine, linear or constant), not \"{self.decay}\"")
        need(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        need(self.readout_init in (None, *READOUT_INITS),
             f"readout_init must be {' or '.join(READOUT_INITS)} or left out, got {self.readout_init!r}")
        need(self.readout_init_size is None or (_is_int(self.readout_init_size) and self.readout_init_size > 0),
             f"readout_init_size must be a positive integer or left out, got {self.readout_init_size!r}")
        need(self.readout_init_size is None or self.readout_init is not None,
             "readout_init_size is only used with readout_init \"lstsq\"")
        need(self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        need(self.ema_decay is None or (_is_number(self.ema_decay) and 0 < self.ema_decay < 1),
             f"ema_decay must be a number in (0, 1) or left out, got {self.ema_decay!r}")

    def batch_at(self, step: int) -> int:
        """Graphs in optimizer step `step` (0-based): batch_size, then the ramp's sizes."""
        size = self.batch_size
        for start, ramped in self.batch_ramp or ():
            if step >= start:
                size = ramped
        return size

    def warnings(self, section: str) -> list[str]:
        """Settings that train, but not as their names promise (one line each)."""
        if self.warmup_steps > self.steps:
            return [f"[{section}] warmup_steps ({self.warmup_steps}) exceeds steps ({self.steps}): the learning rate "
                    f"stops at {self.steps / self.warmup_steps:.3g} of its peak lr = {self.lr:g}, never reaching it"]
        return []

    def check_section(self, section: str) -> None:
        """Checks that depend on the stage: mode, body and optimizer belong to fine-tuning."""
        from graphpath.training.partial import validate_stage

        validate_stage(self.mode, self.lora_rank, self.lora_alpha if self.lora_alpha is not None else 1.0,
                       self.body, section)
        _need(section == "finetune" or self.readout_init is None,
              f"{section}: readout_init applies to the fine-tuning stage only")
        _need(self.ema_decay is None or self.mode != "lora",
              f"{section}: ema_decay cannot average a mode \"lora\" stage (its LoRA factors live in "
              f"parametrizations that are not saved)")
        if self.optimizer == "continue":
            _need(section == "finetune", f"{section}: optimizer \"continue\" applies to the fine-tuning stage only")
            _need(self.mode == "full" and self.body == "pretrained",
                  f"{section}: optimizer \"continue\" needs mode \"full\" and body \"pretrained\" "
                  f"(the pre-training optimizer's moments belong to those weights)")


@dataclass
class RunConfig:
    name: str = "small"  # run directory name under runs/ (unless --out is given)
    seed: int = 0  # every generator derives from this
    data: DataConfig = field(default_factory=DataConfig)  # graph sizes and stage tasks
    model: ModelConfig = field(default_factory=lambda: ModelConfig(max_vertices=DataConfig().n_max))
    train: StageConfig = field(default_factory=StageConfig)
    finetune: StageConfig = field(default_factory=lambda: StageConfig(
        steps=100, lr=1e-5, weight_decay=1e-5, decay="constant"))

    def __post_init__(self):
        _need(isinstance(self.name, str) and self.name and "/" not in self.name,
              f"name must be a plain directory name, got {self.name!r}")
        _need(_is_int(self.seed) and self.seed >= 0, f"seed must be a non-negative integer, got {self.seed!r}")
        _need(self.model.max_vertices == self.data.n_max,
              f"model.max_vertices ({self.model.max_vertices}) must equal the data's max_vertices "
              f"({self.data.n_max}); leave it out")
        for section in ("train", "finetune"):
            getattr(self, section).check_section(section)

    @property
    def tasks(self) -> dict:
        return {key: getattr(self.data, key) for key in STAGE_TASKS}

    def to_dict(self) -> dict:
        """The fully resolved config, TOML-ready (None values and default stage tasks are left out)."""
        out = {"name": self.name, "seed": self.seed, "data": self.data.to_dict()}
        for section in ("model", "train", "finetune"):
            out[section] = {k: v for k, v in dataclasses.asdict(getattr(self, section)).items() if v is not None}
        return out


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": StageConfig, "finetune": StageConfig}
TOP_LEVEL = {"name": str, "seed": int}


def _check_keys(section: str, values: dict, known) -> None:
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(section + '.' + k for k in unknown)} "
                          f"(known in [{section}]: {', '.join(sorted(known))})")


def _field_types(cls) -> dict:
    return typing.get_type_hints(cls)


def parse_typed(dotted: str, text: str, kind):
    """The override text as the field's type: int, float, bool (true/false), list (a TOML list) or
    str (the text itself; a TOML-quoted string is unquoted). Optional fields parse as their type."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    kind = args[0] if args else kind
    kind = typing.get_origin(kind) or kind
    try:
        if kind is bool:
            if text not in ("true", "false"):
                raise ValueError
            return text == "true"
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is list:
            value = tomllib.loads(f"v = {text}")["v"]
            if not isinstance(value, list):
                raise ValueError
            return value
    except (ValueError, tomllib.TOMLDecodeError):
        what = {bool: "true or false", int: "an integer", float: "a number", list: "a list such as [0.9, 0.95]"}[kind]
        raise ConfigError(f"--{dotted} must be {what}, got {text!r}") from None
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return tomllib.loads(f"v = {text}")["v"]
    return text


def apply_overrides(raw: dict, overrides: list[tuple[str, str]]) -> dict:
    """Set `section.key = value` (or a top-level `key`) in a raw config dict; unknown keys fail."""
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for dotted, text in overrides:
        parts = dotted.split(".")
        if len(parts) == 1:
            _check_keys("top level", {parts[0]: 0}, TOP_LEVEL)
            raw[parts[0]] = parse_typed(dotted, text, TOP_LEVEL[parts[0]])
            continue
        if len(parts) != 2 or parts[0] not in SECTIONS:
            raise ConfigError(f"unknown override --{dotted} (use --SECTION.KEY with SECTION one of "
                              f"{', '.join(SECTIONS)})")
        section, key = parts
        types = _field_types(SECTIONS[section])
        _check_keys(section, {key: 0}, types)
        raw.setdefault(section, {})[key] = parse_typed(dotted, text, types[key])
    return raw


def _section(section: str, cls, values: dict, defaults=None):
    """One table as its dataclass; a failed check is one line starting with the section."""
    _check_keys(section, values, [f.name for f in dataclasses.fields(cls)])
    base = {} if defaults is None else dataclasses.asdict(defaults)
    try:
        return cls(**{**base, **values})
    except ConfigError as error:
        message = str(error)
        raise ConfigError(message if message.startswith(section) else f"{section}: {message}") from None
    except TypeError as error:
        raise ConfigError(f"{section}: {error}") from None


def from_dict(raw: dict) -> RunConfig:
    """Validate a raw (TOML-shaped) dict into a RunConfig; raises ConfigError with one line."""
    _check_keys("top level", raw, (*TOP_LEVEL, *SECTIONS))
    data = _section("data", DataConfig, dict(raw.get("data", {})))
    model_values = dict(raw.get("model", {}))
    model_values.setdefault("max_vertices", data.presets()["pretrain"].max_vertices)
    model = _section("model", ModelConfig, model_values)
    defaults = RunConfig()
    stages = {section: _section(section, StageConfig, dict(raw.get(section, {})), getattr(defaults, section))
              for section in ("train", "finetune")}
    return RunConfig(name=raw.get("name", "small"), seed=raw.get("seed", 0), data=data, model=model, **stages)


def stage_specs(config: RunConfig) -> dict:
    """study_presets(**config.data) with the `pretrain` and `finetune` sets replaced by the stage's
    task where it is not the study's: the task on that stage's graph sizes (n_max, finetune_n_max),
    every set keeping max_vertices = n_max."""
    presets = config.data.presets()
    sizes = {"pretrain": presets["pretrain"], "finetune": presets["finetune"]}
    for stage, spec in sizes.items():
        task = config.tasks[f"{stage}_task"]
        if task != STAGE_TASKS[f"{stage}_task"]:
            fields = {"balance_threshold": spec.balance_threshold} if task.startswith("distance-") else {}
            presets[stage] = task_spec(task, n_max=spec.n_max, n_min=spec.n_min, max_vertices=spec.max_vertices,
                                       **fields)
    return presets


def load_config(path, overrides: list[tuple[str, str]] = ()) -> RunConfig:
    path = Path(path)
    raw = read_toml(path, ConfigError, "config ")
    return from_dict(apply_overrides(raw, list(overrides)))


def to_toml(config: RunConfig) -> str:
    """Serialize the resolved config (round-trips through `from_dict(tomllib.loads(...))`)."""
    return dumps(config.to_dict())
