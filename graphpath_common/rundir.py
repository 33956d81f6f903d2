"""The run directory: every file name and the layout of `runs/<name>/`, owned here and nowhere else.

    RUN/config.toml               the fully resolved run config
    RUN/provenance.json           how the directory was made (graphpath_common.provenance)
    RUN/metrics.jsonl             one JSON object per logged training step
    RUN/phases.json               detected phase changes, the fine-tuning before/after losses
    RUN/resumes.json              settings a resume changed, and from which step (graphpath.training.resume)
    RUN/checkpoints/<stage>-<step>.{safetensors,state.safetensors,json}, <stage>-final.*
    RUN/eval.json, RUN/report.md  the evaluation suite's scores and report
    RUN/figures/                  every figure (training, evaluation, perturbation, interpret)
    RUN/perturb.json, perturb-<model>.json, basin.json, llc.json, interpret.json
    RUN/studies/<name>/<kind>.json  a study run against this directory (python -m experiments.*)
    RUN/seed-<k>/                 a group of seeds: each an ordinary run directory, no checkpoints/
                                  at the group level (python -m graphpath.train --seeds 0,1,2)
    RUN/job.json, job.log         a sweep job (graphpath.sweeps.runner)

`RunDir` is torch-free (the page imports it) and reads nothing when made: it names files, finds
seed runs and checkpoints, and reads the small JSON files for whoever asks. The schema of every
file is in docs/contracts.md.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

STAGES = ("pretrain", "finetune")
FINAL = "final"
CONFIG = "config.toml"
PROVENANCE = "provenance.json"
METRICS = "metrics.jsonl"
PHASES = "phases.json"
RESUMES = "resumes.json"
CHECKPOINTS = "checkpoints"
EVAL = "eval.json"
REPORT = "report.md"
FIGURES = "figures"
PERTURB = "perturb.json"
BASIN = "basin.json"
LLC = "llc.json"
INTERPRET = "interpret.json"
LEGACY_INTERPRET = "inspect.json"  # what `graphpath.interpret` wrote while it was `graphpath.inspect`
STUDIES = "studies"
JOB = "job.json"
JOB_LOG = "job.log"
STUDY_KINDS = ("edt", "partial", "mixture", "transfer")

SEED_DIR = re.compile(r"^seed-(\d+)$")
CHECKPOINT_JSON = re.compile(r"^(pretrain|finetune)-(\d+|final)\.json$")


class RunDirError(ValueError):
    """A run directory (or one of its files) that cannot be read; one line, for exit status 2."""


def checkpoint_stem(stage: str, step: int | str) -> str:
    """`<stage>-<step>` or `<stage>-final`: the common stem of a checkpoint's files."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r} (choose from {', '.join(STAGES)})")
    if step != FINAL and not (isinstance(step, int) and step >= 0):
        raise ValueError(f"a checkpoint step is a non-negative integer or {FINAL!r}, got {step!r}")
    return f"{stage}-{step}"


def checkpoint_order(json_path: Path) -> tuple[int, float]:
    """Sort key of a checkpoint JSON: pre-training before fine-tuning, then by step, `final` last."""
    stage, step = CHECKPOINT_JSON.match(Path(json_path).name).groups()
    return STAGES.index(stage), float("inf") if step == FINAL else int(step)


def list_checkpoints(directory, stage: str | None = None) -> list[Path]:
    """Every complete checkpoint's JSON in `directory` (of `stage`, or all), oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.glob("*.json") if CHECKPOINT_JSON.match(p.name)
             and (stage is None or p.name.startswith(stage + "-"))]
    return sorted(found, key=checkpoint_order)


def read_json(path, error: type[Exception] = RunDirError) -> dict:
    """The JSON object in `path`; a missing, unreadable or malformed file raises `error`, one line."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as failure:
        raise error(f"cannot read {path}: {failure.strerror or failure}") from None
    except UnicodeDecodeError as failure:
        raise error(f"cannot read {path}: {failure}") from None
    except json.JSONDecodeError as failure:
        raise error(f"{path} is not valid JSON (line {failure.lineno}: {failure.msg})") from None
    if not isinstance(value, dict):
        raise error(f"{path} must hold a JSON object, found {type(value).__name__}")
    return value


def read_jsonl(path, error: type[Exception] = RunDirError) -> list[dict]:
    """One dict per non-blank line of `path` (metrics.jsonl); [] when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as failure:
        raise error(f"cannot read {path}: {failure}") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as failure:
            raise error(f"{path} line {number} is not valid JSON ({failure.msg})") from None
        if not isinstance(row, dict):
            raise error(f"{path} line {number} must be a JSON object")
        rows.append(row)
    return rows


def seed_names(eval_doc: dict) -> list[str]:
    """A pooled evaluation's runs by name, in eval.json's order: 'seed S' for each (from the learned
    model's checkpoints) when every run has a distinct seed, else 'run i'."""
    info = eval_doc.get("models", {}).get(eval_doc.get("primary"), {}).get("info") or []
    seeds = [i.get("seed") for i in info]
    if seeds and all(s is not None for s in seeds) and len(set(seeds)) == len(seeds):
        return [f"seed {s}" for s in seeds]
    return [f"run {i}" for i in range(len(info))]


def run_names(eval_doc: dict, count: int) -> list[str]:
    """`seed_names` when it names `count` runs (per-run lists of that evaluation), else 'run i'."""
    names = seed_names(eval_doc)
    return names if len(names) == count else [f"run {i}" for i in range(count)]


def too_few_note(subgroups: dict) -> str:
    """' A subgroup of fewer than K graphs has no interval (—) ...' from eval.json `subgroups`."""
    least = subgroups.get("min_graphs_for_interval")
    return (f" A subgroup of fewer than {least} graphs has no interval (—): with so few graphs it would "
            "cover the truth clearly less often than 95%." if least else "")


@dataclass(frozen=True)
class RunDir:
    """A run directory (or a group of seed runs) at `path`; nothing is read until asked."""

    path: Path

    def __init__(self, path):
        object.__setattr__(self, "path", Path(path))

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    # ---- files ---------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def provenance(self) -> Path:
        return self.path / PROVENANCE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def phases(self) -> Path:
        return self.path / PHASES

    @property
    def resumes(self) -> Path:
        return self.path / RESUMES

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def eval(self) -> Path:
        return self.path / EVAL

    @property
    def report(self) -> Path:
        return self.path / REPORT

    @property
    def figures(self) -> Path:
        return self.path / FIGURES

    @property
    def perturb(self) -> Path:
        return self.path / PERTURB

    @property
    def basin(self) -> Path:
        return self.path / BASIN

    @property
    def llc(self) -> Path:
        return self.path / LLC

    @property
    def interpret(self) -> Path:
        """interpret.json, or the inspect.json an older run directory holds in its place."""
        legacy = self.path / LEGACY_INTERPRET
        current = self.path / INTERPRET
        return legacy if legacy.is_file() and not current.is_file() else current

    @property
    def job(self) -> Path:
        return self.path / JOB

    @property
    def job_log(self) -> Path:
        return self.path / JOB_LOG

    def figure(self, name: str) -> Path:
        return self.figures / name

    def perturb_variant(self, name: str) -> Path:
        """`perturb-<name>.json`: a second perturbed model's document beside perturb.json."""
        return self.path / f"{Path(PERTURB).stem}-{name}.json"

    def perturb_files(self) -> list[Path]:
        """perturb.json first, then every perturb-*.json by name."""
        found = self.path.glob(f"{Path(PERTURB).stem}*.json") if self.path.is_dir() else []
        return sorted(found, key=lambda p: (p.name != PERTURB, p.name))

    def study(self, name: str) -> Path:
        """studies/<name>/: where `python -m experiments.* --out RUN/studies/<name>` writes."""
        return self.path / STUDIES / name

    def study_files(self, kind: str) -> list[Path]:
        """Every studies/*/<kind>.json (kind: edt, partial, mixture, transfer), by folder name."""
        folder = self.path / STUDIES
        return sorted(folder.glob(f"*/{kind}.json")) if folder.is_dir() else []

    # ---- checkpoints -------------------------------------------------------------------------
    def checkpoint(self, stage: str, step: int | str = FINAL) -> Path:
        """The JSON of checkpoint `<stage>-<step>` (its tensors share the stem)."""
        return self.checkpoints / f"{checkpoint_stem(stage, step)}.json"

    def weights(self, stage: str, step: int | str = FINAL) -> Path:
        """The safetensors file of checkpoint `<stage>-<step>`'s model weights."""
        return self.checkpoints / f"{checkpoint_stem(stage, step)}.safetensors"

    def checkpoint_files(self, stage: str | None = None) -> list[Path]:
        """Every complete checkpoint's JSON (of `stage`, or all), oldest first."""
        return list_checkpoints(self.checkpoints, stage)

    def finished(self, stage: str) -> bool:
        """Whether `stage` wrote its final checkpoint."""
        return self.checkpoint(stage).is_file()

    # ---- seed groups -------------------------------------------------------------------------
    def seed(self, seed: int) -> "RunDir":
        """The run directory of seed `seed` in this group."""
        return RunDir(self.path / f"seed-{seed}")

    @property
    def seeds(self) -> tuple["RunDir", ...]:
        """The group's seed runs (seed-<k>/ holding a config.toml), by seed; () for a single run
        (a directory with checkpoints/ of its own is never a group)."""
        if not self.path.is_dir() or self.checkpoints.is_dir():
            return ()
        found = [(int(m.group(1)), child) for child in self.path.iterdir()
                 if child.is_dir() and (m := SEED_DIR.match(child.name)) and (child / CONFIG).is_file()]
        return tuple(RunDir(child) for _, child in sorted(found))

    @property
    def is_group(self) -> bool:
        return bool(self.seeds)

    @property
    def first(self) -> "RunDir":
        """This run, or for a group its first seed's run (where metrics, phases and checkpoints are)."""
        seeds = self.seeds
        return seeds[0] if seeds else self

    def runs(self) -> tuple["RunDir", ...]:
        """Every run that holds a model: the seeds of a group, else this run alone."""
        return self.seeds or (self,)

    # ---- reading -----------------------------------------------------------------------------
    def read_metrics(self, error: type[Exception] = RunDirError) -> list[dict]:
        """metrics.jsonl as a list of dicts, in file order ([] when there is none yet)."""
        return read_jsonl(self.metrics, error)

    def read_provenance(self, error: type[Exception] = RunDirError) -> dict | None:
        """provenance.json, or None for a run directory written before it was recorded."""
        return read_json(self.provenance, error) if self.provenance.is_file() else None
