"""Reading a run directory (layout: graphpath_common.rundir; schemas: docs/contracts.md) for the
page, and nothing else.

The blog never trains and never imports the model code: everything it shows is read here from
`runs/<name>/`. Required files make the run "complete enough to publish"; optional ones
(`perturb.json` and any `perturb-*.json`, one per perturbed model) switch sections of the post
on or off.

    required   config.toml, metrics.jsonl, phases.json, eval.json
    group      a directory of seed runs (`graphpath.training.run --seeds`: seed-<k>/ each a run, the pooled
               eval.json, report.md and config.toml beside them): metrics, phases and checkpoints
               are the first seed's, every result the pooled eval.json's
    optional   provenance.json, perturb.json, perturb-*.json (e.g. perturb-handcrafted.json),
               studies/*/edt.json, partial.json, mixture.json, transfer.json (python -m experiments.* --out RUN_DIR/studies/NAME)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from graphpath_common.rundir import STUDY_KINDS, RunDir, read_json, read_jsonl
from graphpath_common.toml import read_toml


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
    provenance: dict | None = None  # provenance.json (how the run was made); None for an older run

    @property
    def model_dir(self) -> Path:
        """Where the training files (metrics, phases, checkpoints/) are: the first seed's run for a group."""
        return self.seed_runs[0] if self.seed_runs else self.path

    def stage_metrics(self, stage: str) -> list[dict]:
        return [row for row in self.metrics if row.get("stage") == stage]


def _read_json(path: Path) -> dict:
    return read_json(path, RunDirError)


def _read_jsonl(path: Path) -> list[dict]:
    rows = read_jsonl(path, RunDirError)
    if not rows:
        raise RunDirError(f"{path} holds no metrics: was the run stopped before its first log?")
    return rows


def load_run(path: str | Path) -> Run:
    """Reads and lightly checks a run directory (or a group of seed runs); raises RunDirError with a
    one-line message."""
    path = Path(path)
    if not path.exists():
        raise RunDirError(f"run directory {path} does not exist")
    if not path.is_dir():
        raise RunDirError(f"{path} is not a directory (expected a run directory such as runs/NAME)")
    run = RunDir(path)
    training = run.first  # a group: the first seed's run holds metrics, phases and checkpoints
    required = (run.config, training.metrics, training.phases, run.eval)
    missing = [str(file.relative_to(path)) for file in required if not file.is_file()]
    if missing:
        raise RunDirError(f"run directory {path} is incomplete: missing {', '.join(missing)} "
                          "(run `python -m graphpath.train` and `python -m graphpath.evaluate` first)")
    config = read_toml(run.config, RunDirError)
    name = config.get("name") if isinstance(config.get("name"), str) else path.resolve().name
    return Run(path=path, name=name, config=config,
               metrics=_read_jsonl(training.metrics),
               phases=_read_json(training.phases),
               eval=_read_json(run.eval),
               perturb=[_read_json(file) for file in run.perturb_files()],
               studies=_read_studies(run), seed_runs=tuple(seed.path for seed in run.seeds),
               provenance=run.read_provenance(RunDirError))


def _read_studies(run: RunDir) -> dict:
    """The first `studies/*/<kind>.json` (by folder name) of each study kind in the run directory."""
    found = {}
    for kind in STUDY_KINDS:
        files = run.study_files(kind)
        if files:
            found[kind] = _read_json(files[0])
    return found
