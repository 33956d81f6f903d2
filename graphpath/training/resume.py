"""What may change when a run continues (`--resume`, or `--stage finetune` on a pre-trained run).

A run's `config.toml` is its recipe: it must only ever hold values the run used. Once a stage has
a checkpoint it has *started*; once it has `<stage>-final` it has *finished*. Then:

- `name`, `seed`, `[model]` and the `[data]` keys every stage shares (`n_max`, `small_target`)
  are fixed once any stage has started; the `[data]` keys of one stage (`pretrain_*` or
  `finetune_*`: graph sizes, balance threshold, task) once that stage has started.
- A finished stage's table (`[train]` for pre-training, `[finetune]`) is fixed entirely: it will
  not run again, so a new value would be a claim about steps that never used it.
- A started stage's table is fixed except `RESUMABLE`: the peak and final learning rate (`lr`,
  `min_lr`: the usual answer to a diverging run), `steps` (not below the step reached),
  `grad_clip`, and the bookkeeping keys that change no weight (`log_every`, `eval_every`,
  `checkpoint_every`, `keep_checkpoints`, `compile`). A change to these holds from the step the
  stage resumes at: the schedule is rebuilt from the new values (warmup and decay keep their
  shape), and `resumes.json` records the stage, that step and each key's old and new value.
- A stage that has not started takes any value: it will run with it from its first step.

Anything else is refused before anything is written: one line naming every key that differs,
exit 2 (start a new run with `--out` to train with other values).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path

from graphpath_common.cli import UsageError
from graphpath_common.jsonfile import write_json
from graphpath_common.rundir import STAGES, RunDir

from graphpath.core.config import RunConfig

RESUMABLE = ("lr", "min_lr", "steps", "grad_clip", "log_every", "eval_every", "checkpoint_every",
             "keep_checkpoints", "compile")
SECTION = {"pretrain": "train", "finetune": "finetune"}
STAGE_DATA = {"pretrain": ("pretrain_threshold", "pretrain_task"),
              "finetune": ("finetune_n_max", "finetune_threshold", "finetune_task")}


def _flat(config: RunConfig) -> dict[str, object]:
    """{"train.lr": 0.001, "seed": 0, ...}: every key of the resolved config, None where unset."""
    values = {"name": config.name, "seed": config.seed}
    for section in ("data", "model", "train", "finetune"):
        for key, value in dataclasses.asdict(getattr(config, section)).items():
            values[f"{section}.{key}"] = value
    return values


def stage_progress(out: Path, stage: str) -> tuple[int | None, bool]:
    """(the step of the stage's newest checkpoint, or None if it has none; whether it finished)."""
    found = RunDir(out).checkpoint_files(stage)
    if not found:
        return None, False
    step = found[-1].name[len(stage) + 1:-len(".json")]
    return (None if step == "final" else int(step)), step == "final"


def _owner(key: str) -> str | None:
    """The stage whose start fixes `key` (None: fixed once any stage has started)."""
    section, _, name = key.partition(".")
    if section in ("train", "finetune"):
        return "pretrain" if section == "train" else "finetune"
    if section == "data":
        return next((stage for stage, names in STAGE_DATA.items() if name in names), None)
    return None


def check_changes(config: RunConfig, out: Path) -> dict[str, dict]:
    """The resumable changes to record, {stage: {"step": s, "changed": {key: [old, new]}}}, of
    `config` against the run's config.toml; UsageError naming every key that may not change."""
    recorded = RunDir(out).config
    if not recorded.is_file():
        return {}
    from graphpath.core.config import load_config

    old, new = _flat(load_config(recorded)), _flat(config)
    progress = {stage: stage_progress(out, stage) for stage in STAGES}
    started = {stage for stage, (step, finished) in progress.items() if step is not None or finished}
    if not started:
        return {}
    refused, record = [], {}
    for key in old:
        if old[key] == new[key]:
            continue
        owner = _owner(key)
        if owner is not None and owner not in started:
            continue  # that stage has not begun: it runs with the new value from its first step
        step, finished = progress.get(owner, (None, False))
        name = key.partition(".")[2]
        if owner is None or key.startswith("data.") or finished or name not in RESUMABLE:
            refused.append(f"{key} ({_show(old[key])} -> {_show(new[key])})")
        elif name == "steps" and new[key] < step:
            refused.append(f"{key} ({_show(old[key])} -> {_show(new[key])}: {owner} has reached step {step})")
        else:
            record.setdefault(owner, {"step": step, "changed": {}})["changed"][key] = [old[key], new[key]]
    if refused:
        done = ", ".join(f"{s} {'finished' if progress[s][1] else 'at step ' + str(progress[s][0])}"
                         for s in STAGES if s in started)
        raise UsageError(f"{out} was trained with other values ({done}); these cannot change now: "
                         f"{'; '.join(refused)}. On resume a started stage may change only "
                         f"{', '.join(RESUMABLE)} (docs/contracts.md); train other values into a new --out")
    return record


def _show(value) -> str:
    return json.dumps(value)


def write_record(out: Path, changes: dict[str, dict]) -> None:
    """Append each stage's resumed changes to out/resumes.json (a list, oldest first)."""
    if not changes:
        return
    path = RunDir(out).resumes
    entries = json.loads(path.read_text()) if path.is_file() else []
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    entries += [{"stage": stage, "step": entry["step"], "changed": entry["changed"], "utc": now}
                for stage, entry in changes.items()]
    write_json(path, entries)
