"""Which model a path means, and what it was trained on: the one resolver every tool uses.

    load(path, stage=None, device="cpu") -> TrainedModel       one model
    load_runs(path, stage=None, device="cpu") -> [TrainedModel]  every seed of a group

`path` is a run directory (its final checkpoint: finetune-final, else pretrain-final, else the
newest numbered one; `stage` picks a stage's newest), a group of seeds (`resolve`: the first
seed's run, as every one-model tool has always taken it; `resolve_runs`: each seed), a
checkpoints/ folder, or one checkpoint's JSON, tensor file or stem.

A `TrainedModel` carries the model (eval mode), its checkpoint's metadata, the run's config and
its data contract (graphpath.core.contract: every stage's task and GraphSpec). Tools ask it which
data to use (`spec`) and check data they were given (`require_answers`, `require_study`), so a
model trained on one task is never analysed on another's data without a word.

Every failure is a one-line `CheckpointError` (a ValueError; exit 2 on every command line): a
missing path, a directory that holds no run, an altered or incomplete checkpoint, a config.toml
that disagrees with the checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from data_gen import GraphSpec, study_presets
from graphpath_common.rundir import CHECKPOINTS, RunDir, list_checkpoints

from graphpath.core.checkpoint import CheckpointError, find_checkpoint, load_model
from graphpath.core.config import ConfigError, RunConfig, load_config
from graphpath.core.contract import (ContractError, StageData, answers, contract_from_json, contract_to_json,
                                     describe, is_study, legacy_contract)


@dataclass
class TrainedModel:
    """A learned model and everything known about how it was made. Shapes: see `predict`."""
    model: nn.Module  # graphpath.core.model.GraphTransformer, eval mode
    info: dict  # the checkpoint JSON (without train_state) plus "path"
    checkpoint: Path  # the checkpoint's JSON file
    run: RunDir | None  # the run directory holding it; None for a checkpoint outside one
    config: RunConfig | None  # the run's config.toml; None outside a run directory
    contract: dict[str, StageData]  # {stage: StageData} in training order
    legacy: bool = False  # contract rebuilt: the checkpoint predates recorded contracts
    group: RunDir | None = None  # the group of seeds it was taken from

    @property
    def stage(self) -> str:
        return self.info["stage"]

    @property
    def step(self) -> int:
        return int(self.info["step"])

    @property
    def data(self) -> dict:
        """The run's sizes: `data_gen.study_presets` keyword arguments (the evaluation sets' sizes)."""
        return dict(self.info["data"])

    @property
    def max_vertices(self) -> int:
        return int(self.info["model_config"]["max_vertices"])

    @property
    def answers(self) -> str:
        """What the output means: the last training stage's label ("distance", "degree", ...)."""
        return answers(self.contract)

    @property
    def is_study(self) -> bool:
        """Trained on the study's tasks (distance-12 then distance-onpath) from fresh graphs."""
        return is_study(self.contract)

    def spec(self, stage: str | None = None) -> GraphSpec:
        """The GraphSpec stage `stage` drew its graphs from; by default the first stage that asked
        what the model answers now (a study run: pre-training; pre-trained on degree and fine-tuned
        on reachable: fine-tuning). CheckpointError when the model never trained in that stage or
        read a mixture dataset."""
        stage = stage or next(name for name, data in self.contract.items() if data.answers == self.answers)
        if stage not in self.contract:
            raise CheckpointError(f"{self.name()} was not trained in stage {stage!r} "
                                  f"(trained on: {describe(self.contract)})")
        data = self.contract[stage]
        if data.dataset and data.dataset.get("mixture"):
            raise CheckpointError(f"{self.name()}: its {stage} stage read the mixture dataset {data.dataset['path']}, "
                                  "which no single GraphSpec draws; name the data to use")
        return data.spec

    def analysis_spec(self, preset: str | None, tool: str) -> GraphSpec:
        """The data a tool analyses this model on: its first training stage's GraphSpec, or the study
        set `preset` (a data_gen.PRESET_NAMES name) at the run's sizes, which must ask what the model
        answers. CheckpointError (one line) otherwise."""
        if preset is None:
            spec = self.spec()
        else:
            spec = study_presets(**self.data)[preset]
            self.require_answers(spec, tool)
        if spec.max_vertices != self.max_vertices:
            raise CheckpointError(f"{tool}: {self.name()} reads vertex ids up to {self.max_vertices}, its data spec "
                                  f"has max_vertices={spec.max_vertices}")
        return spec

    def require_answers(self, spec: GraphSpec, tool: str) -> None:
        """CheckpointError unless `spec` asks the question this model was trained to answer."""
        if spec.task != self.answers:
            raise CheckpointError(f"{tool}: {self.name()} was trained to answer {self.answers!r} "
                                  f"({describe(self.contract)}), not {spec.task!r}; use data of its own task")

    def require_study(self, tool: str) -> None:
        """CheckpointError unless the model was trained on the study's distance tasks."""
        if not self.is_study:
            raise CheckpointError(f"{tool}: {self.name()} was trained on {describe(self.contract)}; {tool} "
                                  f"measures the study's distance tasks only (python -m experiments.transfer "
                                  f"scores the other tasks)")

    def name(self) -> str:
        where = self.run.path if self.run is not None else self.checkpoint
        return f"{where} ({self.checkpoint.name[:-len('.json')]})"

    def describe(self) -> str:
        """One line: where, which checkpoint, and what it was trained on."""
        seeds = f", first of {len(self.group.seeds)} seeds in {self.group.path}" if self.group else ""
        note = " (recorded before contracts: rebuilt from config.toml or the study's tasks)" if self.legacy else ""
        return f"{self.name()}, step {self.step}{seeds}; trained on {describe(self.contract)}{note}"

    def description(self) -> dict:
        """JSON for a tool's output: where the model came from and what it was trained on."""
        return {"model": str(self.run.path if self.run is not None else self.checkpoint),
                "checkpoint": str(self.checkpoint), "step": self.info.get("step"), "stage": self.stage,
                "seed": self.info.get("seed"), "model_config": self.info["model_config"],
                "data_sizes": self.data, "trained_on": contract_to_json(self.contract),
                "contract_recorded": not self.legacy}

    def predict(self, graphs, target=None, num_vertices=None, device="cpu"):
        """The model's answers on `graphs` (graphpath.evaluation.predict.predict_graphs)."""
        from graphpath.evaluation.predict import predict_graphs

        return predict_graphs(self, graphs, target, num_vertices, device)


def _where(path: Path) -> tuple[Path, RunDir | None, RunDir | None]:
    """(what to find the checkpoint in, run directory, group) for a path that exists."""
    if path.is_file() or not path.exists():  # a checkpoint file, or its stem
        return path, (RunDir(path.parent.parent) if path.parent.name == CHECKPOINTS else None), None
    run = RunDir(path)
    if run.is_group:
        return run.first.path, run.first, run
    if run.checkpoints.is_dir():
        return path, run, None
    if list_checkpoints(path):  # a checkpoints/ folder, or a folder of loose checkpoint files
        return path, (RunDir(path.parent) if path.name == CHECKPOINTS else None), None
    raise CheckpointError(f"{path} is not a run directory: it holds no {CHECKPOINTS}/, no checkpoint files "
                          f"and no seed-<k>/ runs")


def _config(run: RunDir | None) -> RunConfig | None:
    if run is None or not run.config.is_file():
        return None
    try:
        return load_config(run.config)
    except ConfigError as error:
        raise CheckpointError(f"{run.config}: {error}") from None


def _contract(info: dict, config: RunConfig | None, json_path: Path) -> tuple[dict, bool]:
    """(contract, legacy) of a checkpoint, checked against the run's config.toml when there is one."""
    try:
        if "stages" in info:
            contract, legacy = contract_from_json(info["stages"], f"checkpoint {json_path}: "), False
        else:
            contract, legacy = legacy_contract(info, config), True
    except ContractError as error:
        raise CheckpointError(str(error)) from None
    if config is not None:
        table = config.data.preset_kwargs()
        if dict(info["data"]) != table:
            raise CheckpointError(f"checkpoint {json_path} was trained at sizes {info['data']}, its run's "
                                  f"config.toml [data] says {table}")
        for stage, data in contract.items():
            configured = config.tasks[f"{stage}_task"]
            if data.task != configured:
                raise CheckpointError(f"checkpoint {json_path} records {stage} task {data.task!r}, its run's "
                                      f"config.toml says {configured!r}")
    return contract, legacy


def _load_one(json_path: Path, run: RunDir | None, group: RunDir | None, device) -> TrainedModel:
    model, info = load_model(json_path, device)
    config = _config(run)
    contract, legacy = _contract(info, config, json_path)
    return TrainedModel(model, info, json_path, run, config, contract, legacy, group)


def _existing(path) -> Path:
    path = Path(path)
    if not path.exists() and not Path(f"{path}.json").exists():
        raise CheckpointError(f"no run directory or checkpoint at {path}")
    return path


def load(path, stage: str | None = None, device="cpu") -> TrainedModel:
    """The model `path` names (a group: its first seed's) with what it was trained on."""
    target, run, group = _where(_existing(path))
    return _load_one(find_checkpoint(target, stage), run, group, device)


def load_runs(path, stage: str | None = None, device="cpu") -> list[TrainedModel]:
    """Every seed's model of a group (by seed), or the one model of a run or checkpoint."""
    path = _existing(path)
    group = RunDir(path) if path.is_dir() else None
    if group is not None and group.is_group:
        return [_load_one(find_checkpoint(seed.path, stage), seed, group, device) for seed in group.seeds]
    return [load(path, stage, device)]
