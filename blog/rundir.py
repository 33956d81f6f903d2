"""Reading a run directory (DESIGN.md, docs/contracts.md) for the page, and nothing else.

The blog never trains and never imports the model code: everything it shows is read here from
`runs/<name>/`. Required files make the run "complete enough to publish"; optional ones
(`perturb.json` and any `perturb-*.json`, one per perturbed model) switch sections of the post
on or off.

    required   config.toml, metrics.jsonl, phases.json, eval.json
    group      a directory of seed runs (`graphpath.training.run --seeds`: seed-<k>/ each a run, the pooled
               eval.json, report.md and config.toml beside them): metrics, phases and checkpoints
               are the first seed's, every result the pooled eval.json's
    optional   perturb.json, perturb-*.json (e.g. perturb-handcrafted.json),
               studies/*/edt.json, partial.json, mixture.json, transfer.json (python -m experiments.* --out RUN_DIR/studies/NAME)
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from graphpath_common.toml import read_toml

REQUIRED_FILES = ("config.toml", "metrics.jsonl", "phases.json", "eval.json")


class BlogError(Exception):
    """Anything that stops the page being built; its message is one line for the user."""


class RunDirError(BlogError):
    """A run directory the page cannot be built from; the message is one line for the user."""


@dataclass(frozen=True)
class Run:
    path: Path
    name: str  # config's `name` if set, else the directory name
    config: dict
    metrics: list[dict]  # one dict per line of metrics.jsonl, in file order
    phases: dict
    eval: dict
    perturb: list[dict]  # perturb.json first, then perturb-*.json by name; empty if none
    studies: dict = field(default_factory=dict)  # {"edt"|"partial"|"mixture": studies/*/<kind>.json}
    seed_runs: tuple = ()  # a group's seed-<k> run directories, by seed; () for a single run

    @property
    def model_dir(self) -> Path:
        """Where the training files (metrics, phases, checkpoints/) are: the first seed's run for a group."""
        return self.seed_runs[0] if self.seed_runs else self.path

    def stage_metrics(self, stage: str) -> list[dict]:
        return [row for row in self.metrics if row.get("stage") == stage]


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise RunDirError(f"cannot read {path}: {err}") from None
    except json.JSONDecodeError as err:
        raise RunDirError(f"{path} is not valid JSON (line {err.lineno}: {err.msg})") from None
    if not isinstance(value, dict):
        raise RunDirError(f"{path} must hold a JSON object, found {type(value).__name__}")
    return value


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise RunDirError(f"cannot read {path}: {err}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise RunDirError(f"{path} line {number} is not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise RunDirError(f"{path} line {number} must be a JSON object")
        rows.append(row)
    if not rows:
        raise RunDirError(f"{path} holds no metrics: was the run stopped before its first log?")
    return rows


SEED_DIR = re.compile(r"^seed-(\d+)$")


def seed_runs(path: Path) -> tuple:
    """A group's seed run directories (seed-<k>/ holding config.toml), by seed; () when `path` has
    checkpoints of its own or no seed runs."""
    if (path / "checkpoints").is_dir():
        return ()
    found = [(int(m.group(1)), child) for child in path.iterdir()
             if child.is_dir() and (m := SEED_DIR.match(child.name)) and (child / "config.toml").is_file()]
    return tuple(child for _, child in sorted(found))


def load_run(path: str | Path) -> Run:
    """Reads and lightly checks a run directory (or a group of seed runs); raises RunDirError with a
    one-line message."""
    path = Path(path)
    if not path.exists():
        raise RunDirError(f"run directory {path} does not exist")
    if not path.is_dir():
        raise RunDirError(f"{path} is not a directory (expected a run directory such as runs/NAME)")
    seeds = seed_runs(path)
    training = seeds[0] if seeds else path
    missing = [name for name in REQUIRED_FILES
               if not ((training if name in ("metrics.jsonl", "phases.json") else path) / name).is_file()]
    if missing:
        raise RunDirError(f"run directory {path} is incomplete: missing {', '.join(missing)} "
                          "(run `python -m graphpath.train` and `python -m graphpath.evaluate` first)")
    config = read_toml(path / "config.toml", RunDirError)
    perturb_files = sorted(path.glob("perturb*.json"), key=lambda p: (p.name != "perturb.json", p.name))
    name = config.get("name") if isinstance(config.get("name"), str) else path.resolve().name
    return Run(path=path, name=name, config=config,
               metrics=_read_jsonl(training / "metrics.jsonl"),
               phases=_read_json(training / "phases.json"),
               eval=_read_json(path / "eval.json"),
               perturb=[_read_json(file) for file in perturb_files],
               studies=_read_studies(path), seed_runs=seeds)


STUDY_KINDS = ("edt", "partial", "mixture", "transfer")


def _read_studies(path: Path) -> dict:
    """The first `studies/*/<kind>.json` (by folder name) of each study kind in the run directory."""
    found = {}
    for kind in STUDY_KINDS:
        files = sorted((path / "studies").glob(f"*/{kind}.json")) if (path / "studies").is_dir() else []
        if files:
            found[kind] = _read_json(files[0])
    return found
