"""What a model was trained on: its data contract, one entry per stage it was trained in.

A checkpoint JSON records it under `stages`, in training order:

    "stages": {"pretrain": {"task": "distance-12", "spec": {GraphSpec fields}, "dataset": null},
               "finetune": {"task": "distance-onpath", "spec": {...}, "dataset": null}}

`task` is the data_gen.tasks.SUITE name of the stage's task, `spec` the GraphSpec its fresh
graphs were drawn from (`graphpath.core.config.stage_specs`), `dataset` {"path", "mixture"} when
the stage read a pre-built dataset instead (then `spec` is the dataset manifest's). A pre-training
checkpoint lists pre-training only; a fine-tuned one both stages, or fine-tuning alone when it
fine-tuned an untrained body (`finetune.body = "random"`).

Checkpoints written before contracts were recorded have no `stages`: `legacy_contract` rebuilds
it from the run's config.toml when the checkpoint sits in a run directory, else from the
checkpoint's `data` sizes with the study's tasks (what every run trained before stage tasks
could be chosen).
"""
from __future__ import annotations

from dataclasses import dataclass

from data_gen import GraphSpec, SpecError
from data_gen.tasks import SUITE_FIELDS

from graphpath.core.config import STAGE_TASKS, DataConfig, RunConfig, stage_specs
from graphpath.core.model import ConfigError, ModelConfig

STAGES = ("pretrain", "finetune")


class ContractError(ValueError):
    """A data contract that cannot be read or does not fit; one line."""


@dataclass(frozen=True)
class StageData:
    """One stage's training data: the suite task, the GraphSpec, and the dataset when one was read."""
    task: str  # data_gen.tasks.SUITE name: "distance-12", "degree", ...
    spec: GraphSpec
    dataset: dict | None = None  # {"path": str, "mixture": dict | None} for a pre-built dataset

    @property
    def answers(self) -> str:
        """What the label means (GraphSpec.task): "distance", "degree", "reachable", ..."""
        return self.spec.task

    def to_dict(self) -> dict:
        return {"task": self.task, "spec": self.spec.to_dict(), "dataset": self.dataset}

    @classmethod
    def from_dict(cls, values: dict, where: str = "") -> "StageData":
        try:
            task, spec = values["task"], GraphSpec.from_dict(values["spec"])
        except (KeyError, TypeError, SpecError) as error:
            raise ContractError(f"{where}unreadable stage contract {values!r}: {error}") from None
        if task not in SUITE_FIELDS:
            raise ContractError(f"{where}unknown task {task!r} in the stage contract")
        dataset = values.get("dataset")
        return cls(task, spec, dataset if isinstance(dataset, dict) else None)

    def describe(self) -> str:
        sizes = f"n {self.spec.n_min}..{self.spec.n_max}"
        source = f", dataset {self.dataset['path']}" if self.dataset else ""
        return f"{self.task} ({sizes}{source})"


def trained_stages(config: RunConfig, stage: str) -> list[str]:
    """The stages a checkpoint of `stage` was trained in, in order."""
    if stage == "pretrain":
        return ["pretrain"]
    return ["pretrain", "finetune"] if config.finetune.body == "pretrained" else ["finetune"]


def _dataset(path: str | None) -> tuple[dict | None, GraphSpec | None]:
    if path is None:
        return None, None
    from data_gen.dataset import read_manifest

    manifest = read_manifest(path)
    return {"path": str(path), "mixture": manifest.get("mixture")}, GraphSpec.from_dict(manifest["spec"])


def stage_contract(config: RunConfig, stage: str) -> dict[str, StageData]:
    """{stage: StageData} for a checkpoint of `stage` trained under `config`."""
    specs = stage_specs(config)
    out = {}
    for name in trained_stages(config, stage):
        dataset, manifest_spec = _dataset((config.train if name == "pretrain" else config.finetune).dataset)
        out[name] = StageData(config.tasks[f"{name}_task"], manifest_spec or specs[name], dataset)
    return out


def contract_to_json(contract: dict[str, StageData]) -> dict:
    return {name: data.to_dict() for name, data in contract.items()}


def contract_from_json(values, where: str = "") -> dict[str, StageData]:
    if not isinstance(values, dict) or not values or set(values) - set(STAGES):
        raise ContractError(f"{where}unreadable data contract {values!r} (stages: pretrain, finetune)")
    return {name: StageData.from_dict(values[name], where) for name in STAGES if name in values}


def legacy_contract(info: dict, config: RunConfig | None) -> dict[str, StageData]:
    """The contract of a checkpoint written before contracts were recorded: the run's config.toml
    if known, else the study's tasks at the checkpoint's `data` sizes."""
    if config is None:
        try:
            config = RunConfig(data=DataConfig(**info["data"]), model=ModelConfig.from_dict(info["model_config"]))
        except (ConfigError, TypeError, KeyError) as error:
            raise ContractError(f"checkpoint data {info.get('data')!r}: {error}") from None
    return {name: StageData(config.tasks[f"{name}_task"], stage_specs(config)[name])
            for name in trained_stages(config, info["stage"])}


def answers(contract: dict[str, StageData]) -> str:
    """What the model's output means: the label of its last training stage ("distance", ...)."""
    return list(contract.values())[-1].answers


def is_study(contract: dict[str, StageData]) -> bool:
    """Trained on the study's own tasks (distance-12, then distance-onpath) from fresh graphs."""
    return all(data.task == STAGE_TASKS[f"{name}_task"] and data.dataset is None
               for name, data in contract.items())


def describe(contract: dict[str, StageData]) -> str:
    return "; ".join(f"{name} {data.describe()}" for name, data in contract.items())
