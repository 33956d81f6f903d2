"""Which models an analysis looks at, and on which data: the subjects of perturb, basin, llc and interpret.

    subjects(path, tool, stages=None, data=None, handcrafted=False, n=None) -> [Subject]

`path` is a run directory, a group of seeds (every seed is analysed: graphpath.core.resolve.load_runs)
or "handcrafted" (with `n`). Each learned checkpoint is analysed on the distribution it was trained
on: a pre-training checkpoint on its pre-training GraphSpec, a fine-tuned one on its fine-tuning
GraphSpec (the checkpoint's data contract, graphpath.core.contract), unless the user names a study
set (`data`, a data_gen.PRESET_NAMES name), which must ask what the model answers. The hand-built
model (`handcrafted=True`, beside a run trained on distances) is built for the run's vertex count
and analysed on the run's pre-training GraphSpec (or the named set); alone (`path == "handcrafted"`)
on the study set `data` (default `test-any-large`) at size n. Every subject carries a `data` record
saying which distribution it was analysed on and why; the tools write it into their JSON.

Errors are one-line `CheckpointError`s (exit 2 on every command line).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from data_gen import GraphSpec, PRESET_NAMES, study_presets
from data_gen.spec import study_sizes_up_to
from graphpath_common.rundir import STAGES
from handcrafted import build_bfs_transformer, model_size

from graphpath.core.checkpoint import CheckpointError
from graphpath.core.resolve import TrainedModel, load_runs

HANDCRAFTED_DEFAULT_SET = "test-any-large"


@dataclass
class Subject:
    """One model to analyse and the data to analyse it on."""
    name: str  # "learned" or "handcrafted"
    stage: str | None  # "pretrain" / "finetune" for a learned checkpoint; None for the hand-built model
    seed: int | None  # the training seed of a learned checkpoint
    model: nn.Module
    spec: GraphSpec
    data: dict  # {"source": "trained" | "named" | "run-pretrain", "preset": str | None, "stage": ..., "spec": {...}}
    description: dict  # where the model came from (JSON)
    trained: TrainedModel | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        """A stable label: "pretrain/seed-0", "finetune/seed-3", "handcrafted"."""
        if self.name == "handcrafted":
            return "handcrafted"
        return f"{self.stage}/seed-{self.seed}"

    @property
    def group(self) -> str:
        """The models pooled over seeds: "pretrain", "finetune" or "handcrafted"."""
        return self.stage or self.name

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def _data_record(source: str, spec: GraphSpec, preset: str | None, stage: str | None) -> dict:
    return {"source": source, "preset": preset, "stage": stage, "spec": spec.to_dict()}


def _stages_present(path: Path, stages) -> list[tuple[str, list[TrainedModel]]]:
    found = []
    for stage in stages:
        try:
            found.append((stage, load_runs(path, stage)))
        except CheckpointError as error:
            if str(error).startswith(f"no {stage} checkpoint") and len(stages) > 1:
                continue  # a run that never fine-tuned: analyse what it has
            raise
    if not found:
        raise CheckpointError(f"no checkpoint of stage {' or '.join(stages)} in {path}")
    return found


def hand_built(n: int, spec: GraphSpec, data: dict, **betas) -> Subject:
    model = build_bfs_transformer(n, **betas)
    return Subject("handcrafted", None, None, model, spec, data,
                   {"model": "handcrafted", "n": n, "size": model_size(n), **betas})


def subjects(path, tool: str, stages=None, data: str | None = None, handcrafted: bool = False,
             n: int | None = None) -> list[Subject]:
    """Every model `path` names (each seed, each stage in `stages`, default both) with its data;
    see the module docstring. CheckpointError (one line) on a missing run, a missing stage, a named
    set the model does not answer, or a hand-built model asked for without a size."""
    if data is not None and data not in PRESET_NAMES:
        raise CheckpointError(f"{tool}: unknown data set {data!r} (choose from {', '.join(PRESET_NAMES)})")
    if str(path) == "handcrafted":
        if not (isinstance(n, int) and 3 <= n <= 64):
            raise CheckpointError(f"{tool}: handcrafted needs --n in [3, 64], got {n!r}")
        preset = data or HANDCRAFTED_DEFAULT_SET
        spec = study_presets(**study_sizes_up_to(n))[preset]
        return [hand_built(n, spec, _data_record("named", spec, preset, None))]
    if n is not None:
        raise CheckpointError(f"{tool}: --n is only for handcrafted (a checkpoint knows its own size)")
    stages = tuple(stages or STAGES)
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise CheckpointError(f"{tool}: unknown stage(s) {', '.join(unknown)} (choose from {', '.join(STAGES)})")
    out = []
    for stage, runs in _stages_present(Path(path), stages):
        for trained in runs:
            if data is None:
                spec = trained.spec(stage)
                record = _data_record("trained", spec, None, stage)
            else:
                spec = trained.analysis_spec(data, tool)
                record = _data_record("named", spec, data, None)
            if spec.max_vertices != trained.max_vertices:
                raise CheckpointError(f"{tool}: {trained.name()} reads vertex ids up to {trained.max_vertices}, "
                                      f"its data spec has max_vertices={spec.max_vertices}")
            out.append(Subject("learned", stage, int(trained.info.get("seed", 0)), trained.model, spec, record,
                               trained.description(), trained))
    if handcrafted:
        first = out[0].trained
        if first.answers != "distance":
            raise CheckpointError(f"{tool}: the hand-built model answers distances; {first.name()} was trained "
                                  f"to answer {first.answers!r}")
        if data is None:
            spec = first.analysis_spec(None, tool)
            record = _data_record("run-pretrain", spec, None, next(iter(first.contract)))
        else:
            spec = first.analysis_spec(data, tool)
            record = _data_record("named", spec, data, None)
        out.append(hand_built(first.max_vertices, spec, record))
    return out


def add_arguments(parser, verb: str, handcrafted: bool = True) -> None:
    """The arguments every analysis command shares: the model, its stage and its data."""
    parser.add_argument("model" if handcrafted else "run", help="a run directory or group of seeds"
                        + (", or 'handcrafted' with --n" if handcrafted else ""))
    if handcrafted:
        parser.add_argument("--n", type=int, help="handcrafted only: vertex count")
    parser.add_argument("--stage", choices=STAGES, help="one stage only")
    parser.add_argument("--data", help=f"{verb} on this study set instead of each checkpoint's own data")
    if handcrafted:
        parser.add_argument("--with-handcrafted", dest="with_handcrafted", action="store_true",
                            help="also the hand-built model, on the run's pre-training data")


def describe_data(record: dict) -> str:
    """One phrase for a data record: what the page and the command lines print."""
    spec = record["spec"]
    sizes = f"n {spec['n_min']}..{spec['n_max']}"
    if record["source"] == "trained":
        return f"its own {record['stage']} data ({sizes})"
    if record["source"] == "run-pretrain":
        return f"the run's pre-training data ({sizes})"
    return f"the named set {record['preset']} ({sizes})"
