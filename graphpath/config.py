"""Run configuration: TOML presets in `experiments/`, dotted command-line overrides, validation.

A config file has top-level `name` and `seed` and four tables:
    [data]      keyword arguments of `data_gen.study_presets` (n_max, finetune_n_max, ...), and
                each stage's task: `pretrain_task`, `finetune_task` (names in data_gen.tasks.SUITE;
                defaults distance-12 and distance-onpath, the study's sets)
    [model]     `graphpath.model.ModelConfig` (max_vertices comes from data.n_max)
    [train]     the pre-training stage: `StageConfig`
    [finetune]  the fine-tuning stage: `StageConfig`
Overrides name a key with dots: `--train.lr 1e-3`, `--model.n_layers 4`, `--data.n_max 6`;
values are parsed as TOML literals (so `true`, `[0.9, 0.95]`, `"path"` work) and unknown keys
are rejected with the list of known ones.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path

from data_gen import SpecError, study_presets
from data_gen.tasks import SUITE, task_spec
from graphpath_common.toml import tomllib

from .model import ConfigError, ModelConfig

DECAYS = ("cosine", "linear", "constant", "step")


@dataclass
class StageConfig:
    steps: int = 1000  # optimizer steps in this stage
    batch_size: int = 512  # graphs per step (across all processes)
    lr: float = 1e-3  # peak learning rate (AdamW)
    min_lr: float = 0.0  # learning rate at the end of the decay
    warmup_steps: int = 0  # linear warmup from 0 to lr
    decay: str = "cosine"  # cosine | linear | constant | step (lr, then min_lr from decay_step on)
    decay_step: int | None = None  # decay "step" only: the step where lr drops to min_lr
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    betas: list = field(default_factory=lambda: [0.9, 0.999])  # AdamW betas
    grad_clip: float | None = None  # max global grad norm; None (left out) = no clipping
    log_every: int = 10  # steps between metrics.jsonl lines (per-label MSE of the batch)
    eval_every: int = 100  # steps between held-out evaluations (also at the end)
    eval_size: int = 4096  # held-out graphs (sampled once from the stage's family, own seed)
    checkpoint_every: int = 500  # steps between checkpoints (also at the end)
    buckets: int = 4  # sort each batch by edge count into this many trimmed chunks
    dataset: str | None = None  # pre-built dataset directory; None = stream fresh graphs
    compile: bool = False  # torch.compile the model's tensor program (weights are saved uncompiled)
    mode: str = "full"  # fine-tuning only: full | norm-embed | readout | lora (graphpath.partial)
    lora_rank: int | None = None  # mode "lora": rank r of each weight's delta
    lora_alpha: float | None = None  # mode "lora": the delta is scaled by lora_alpha / r (None = r)
    body: str = "pretrained"  # fine-tuning only: "random" = the same mode on a fresh, untrained body

    def validate(self, section: str) -> None:
        def need(ok: bool, message: str):
            if not ok:
                raise ConfigError(f"{section}: {message}")

        for name in ("steps", "batch_size", "log_every", "eval_every", "eval_size", "checkpoint_every", "buckets"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                 f"{name} must be a positive integer, got {value!r}")
        need(isinstance(self.warmup_steps, int) and 0 <= self.warmup_steps,
             f"warmup_steps must be a non-negative integer, got {self.warmup_steps!r}")
        for name in ("lr", "min_lr", "weight_decay"):
            value = getattr(self, name)
            need(isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0,
                 f"{name} must be a non-negative number, got {value!r}")
        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(self.min_lr <= self.lr, f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        need(self.decay in DECAYS, f"decay must be one of {', '.join(DECAYS)}, got {self.decay!r}")
        need((self.decay == "step") == (self.decay_step is not None),
             "decay_step is needed with decay \"step\" and only then")
        need(self.decay_step is None or (isinstance(self.decay_step, int) and 0 < self.decay_step <= self.steps),
             f"decay_step must lie in [1, steps={self.steps}], got {self.decay_step!r}")
        need(isinstance(self.betas, (list, tuple)) and len(self.betas) == 2
             and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas),
             f"betas must be two numbers in [0, 1), got {self.betas!r}")
        need(self.grad_clip is None or (isinstance(self.grad_clip, (int, float)) and self.grad_clip > 0),
             f"grad_clip must be > 0 or absent, got {self.grad_clip!r}")
        need(self.dataset is None or isinstance(self.dataset, str), f"dataset must be a path, got {self.dataset!r}")
        need(isinstance(self.compile, bool), f"compile must be true or false, got {self.compile!r}")
        from .partial import validate_stage

        validate_stage(self.mode, self.lora_rank, self.lora_alpha if self.lora_alpha is not None else 1.0,
                       self.body, section)


@dataclass
class RunConfig:
    name: str = "small"  # run directory name under runs/ (unless --out is given)
    seed: int = 0  # every generator derives from this
    data: dict = field(default_factory=dict)  # study_presets keyword arguments
    model: ModelConfig = field(default_factory=ModelConfig)
    train: StageConfig = field(default_factory=StageConfig)
    finetune: StageConfig = field(default_factory=lambda: StageConfig(
        steps=100, lr=1e-5, weight_decay=1e-5, decay="constant"))
    tasks: dict = field(default_factory=lambda: dict(STAGE_TASKS))  # [data] pretrain_task / finetune_task

    def to_dict(self) -> dict:
        """The fully resolved config, TOML-ready (None values and default stage tasks are left out)."""
        tasks = {key: task for key, task in self.tasks.items() if task != STAGE_TASKS[key]}
        out = {"name": self.name, "seed": self.seed, "data": {**self.data, **tasks}}
        for section in ("model", "train", "finetune"):
            out[section] = {k: v for k, v in dataclasses.asdict(getattr(self, section)).items() if v is not None}
        return out


PRESET_KWARGS = list(inspect.signature(study_presets).parameters)
# [data] keys beyond the presets: each stage's task (the study's distance tasks by default). They
# live in RunConfig.tasks, so `config.data` stays study_presets' keyword arguments.
STAGE_TASKS = {"pretrain_task": "distance-12", "finetune_task": "distance-onpath"}
DATA_KEYS = PRESET_KWARGS + list(STAGE_TASKS)
SECTIONS = {"model": ModelConfig, "train": StageConfig, "finetune": StageConfig}


def _check_keys(section: str, values: dict, known) -> None:
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(section + '.' + k for k in unknown)} "
                          f"(known in [{section}]: {', '.join(sorted(known))})")


def parse_value(text: str):
    """A TOML literal (number, bool, string, list); bare words are taken as strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict, overrides: list[tuple[str, str]]) -> dict:
    """Set `section.key = value` (or a top-level `key`) in a raw config dict; unknown keys fail."""
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for dotted, text in overrides:
        parts = dotted.split(".")
        if len(parts) == 1:
            _check_keys("top level", {parts[0]: 0}, ("name", "seed"))
            raw[parts[0]] = parse_value(text)
            continue
        if len(parts) != 2 or parts[0] not in ("data",) + tuple(SECTIONS):
            raise ConfigError(f"unknown override --{dotted} (use --SECTION.KEY with SECTION one of "
                              f"data, {', '.join(SECTIONS)})")
        section, key = parts
        known = DATA_KEYS if section == "data" else [f.name for f in dataclasses.fields(SECTIONS[section])]
        _check_keys(section, {key: 0}, known)
        value = parse_value(text)
        raw.setdefault(section, {})[key] = None if value == "none" else value
    return raw


def from_dict(raw: dict) -> RunConfig:
    """Validate a raw (TOML-shaped) dict into a RunConfig; raises ConfigError with one line."""
    _check_keys("top level", raw, ("name", "seed", "data", *SECTIONS))
    name, seed = raw.get("name", "small"), raw.get("seed", 0)
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigError(f"name must be a plain directory name, got {name!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    data = dict(raw.get("data", {}))
    _check_keys("data", data, DATA_KEYS)
    tasks = {key: data.pop(key, default) for key, default in STAGE_TASKS.items()}
    for key, task in tasks.items():
        if task not in SUITE:
            raise ConfigError(f"data.{key}: unknown task {task!r} (choose from {', '.join(SUITE)})")
    defaults_data = {k: p.default for k, p in inspect.signature(study_presets).parameters.items()}
    data = {k: v for k, v in {**defaults_data, **data}.items() if v is not None}  # fully resolved
    try:
        presets = study_presets(**data)
    except (SpecError, TypeError) as error:
        raise ConfigError(f"data: {error}") from None
    max_vertices = presets["pretrain"].max_vertices
    model_values = dict(raw.get("model", {}))
    _check_keys("model", model_values, [f.name for f in dataclasses.fields(ModelConfig)])
    if model_values.setdefault("max_vertices", max_vertices) != max_vertices:
        raise ConfigError(f"model.max_vertices ({model_values['max_vertices']}) must equal the data's "
                          f"max_vertices ({max_vertices}); leave it out")
    try:
        model = ModelConfig(**model_values)
    except TypeError as error:
        raise ConfigError(f"model: {error}") from None
    stages = {}
    defaults = RunConfig()
    for section in ("train", "finetune"):
        values = dict(raw.get(section, {}))
        _check_keys(section, values, [f.name for f in dataclasses.fields(StageConfig)])
        base = dataclasses.asdict(getattr(defaults, section))
        stage = StageConfig(**{**base, **values})
        stage.validate(section)
        stages[section] = stage
    return RunConfig(name=name, seed=seed, data=data, model=model, tasks=tasks, **stages)


def stage_specs(config: RunConfig) -> dict:
    """study_presets(**config.data) with the `pretrain` and `finetune` sets replaced by the stage's
    task where it is not the study's: the task on that stage's graph sizes (n_max, finetune_n_max),
    every set keeping max_vertices = n_max."""
    presets = study_presets(**config.data)
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
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config {path} is not valid TOML: {error}") from None
    return from_dict(apply_overrides(raw, list(overrides)))


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(config: RunConfig) -> str:
    """Serialize the resolved config (round-trips through `from_dict(tomllib.loads(...))`)."""
    values = config.to_dict()
    lines = [f"name = {_toml_value(values['name'])}", f"seed = {values['seed']}"]
    for section in ("data", "model", "train", "finetune"):
        lines += ["", f"[{section}]"] + [f"{k} = {_toml_value(v)}" for k, v in values[section].items()]
    return "\n".join(lines) + "\n"
