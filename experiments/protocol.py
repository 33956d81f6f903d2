"""What every study beyond the paper shares: models deep enough for their graphs, steps that grow
with a dataset, test and selection samples from the split table, scoring a job's final model,
the convergence gate over a study's jobs, and the choice of a learning rate on a validation sample.

Depth. A transformer reading edge tokens extends what each position knows by composing attention
steps. One hop per layer needs d layers for a distance d; path doubling (each layer squares the
reach relation, as in parallel prefix / pointer jumping: Hillis & Steele 1986; Sanford et al.
2024, "Transformers, parallel computation, and logarithmic depth") needs ceil(log2 d). Edge
tokens must also be gathered into per-vertex state first, one more layer. `min_layers(n)` =
ceil(log2(n - 1)) + 1 for graphs of up to n vertices (largest finite distance n - 1): a lower
bound, not a guarantee that a model that deep learns the task.

Steps for a fixed dataset of D graphs: `steps_for` = epochs * D / batch, clipped to
[min_steps, max_steps]; evaluations every steps / `EVALUATIONS` steps, so every job's curve has
the same number of points for the convergence gate.

Samples: `study_sample("test" | "validation", study, task, spec, size, seed)` draws rows
`study-test` / `study-validation` of data_gen.splits with key crc32("study:task") and draw
seed + 1: one sample per seed, so a t-interval over seeds includes the sampling of test graphs.

Learning rates (`choose_lr`): every arm is trained at each lr of a stated grid; the lr whose mean
validation loss over seeds is lowest is chosen per arm, and only that lr's test losses are
reported. The validation sample is never reported. A choice at the grid's smallest or largest lr is marked
(`at_edge`).
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np

from graphpath.sweeps.convergence import Criterion, check_job, label_variance
from graphpath.sweeps.runner import SweepError

EVALUATIONS = 8  # evaluations per fixed-dataset job (the convergence windows need a few each)
STEP_KEYS = ("epochs", "min_steps", "max_steps")


def min_layers(n_max: int) -> int:
    """Layers a model needs for graphs of up to `n_max` vertices (module docstring)."""
    return math.ceil(math.log2(max(n_max - 1, 2))) + 1


def require_depth(model: dict, n_max: int, where: str) -> None:
    """SweepError unless `model` has at least `min_layers(n_max)` layers."""
    from graphpath.core.model import ModelConfig

    layers = model.get("n_layers", ModelConfig.__dataclass_fields__["n_layers"].default)
    need = min_layers(n_max)
    if layers < need:
        raise SweepError(f"{where}: {layers} layers cannot compute distances up to {n_max - 1} (graphs of "
                         f"{n_max} vertices need at least {need}: ceil(log2 {n_max - 1}) by path doubling + 1)")


def step_rule(values, where: str) -> dict:
    """The `[steps]` table of a study: {epochs, min_steps, max_steps}, checked."""
    if not isinstance(values, dict):
        raise SweepError(f"{where} must be a table with {', '.join(STEP_KEYS)}")
    from graphpath_common.keys import reject_unknown_keys

    reject_unknown_keys(STEP_KEYS, values, SweepError, where)
    for key in STEP_KEYS:
        if not isinstance(values.get(key), (int, float)) or isinstance(values.get(key), bool) or values[key] <= 0:
            raise SweepError(f"{where}: {key} must be a positive number, got {values.get(key)!r}")
    if values["min_steps"] > values["max_steps"]:
        raise SweepError(f"{where}: min_steps {values['min_steps']} exceeds max_steps {values['max_steps']}")
    if values["min_steps"] < 2 * EVALUATIONS:
        raise SweepError(f"{where}: min_steps must be at least {2 * EVALUATIONS} (one evaluation every steps / "
                         f"{EVALUATIONS})")
    return values


def steps_for(size: int, batch_size: int, rule: dict, factor: int = 1) -> dict:
    """Stage keys for a job on `size` graphs: steps (times `factor`, for the doubling check),
    batch_size (at most the dataset), eval_every, log_every and checkpoint_every."""
    batch = min(batch_size, size)
    steps = int(min(max(math.ceil(rule["epochs"] * size / batch), rule["min_steps"]), rule["max_steps"])) * factor
    every = max(1, steps // EVALUATIONS)
    return {"steps": steps, "batch_size": batch, "eval_every": every, "log_every": every, "checkpoint_every": steps}


def study_sample(kind: str, study: str, task: str, spec, size: int, seed: int):
    """(GraphBatch, label variance) of the study's test or validation sample of `task` for `seed`."""
    from data_gen.splits import split_batch

    batch = split_batch(f"study-{kind}", spec=spec, size=size, draw=seed + 1, key=zlib.crc32(f"{study}:{task}".encode()))
    return batch, label_variance(batch.label.numpy())


def score(run_dir: Path, stage: str, batch) -> dict:
    """{loss (MSE), accuracy (rounded prediction == label)} of the job's final `stage` model."""
    from graphpath.core.checkpoint import CheckpointError
    from graphpath.core.resolve import load
    from graphpath.evaluation.predict import predict
    from graphpath.evaluation.scores import rounded
    from graphpath_common.rundir import RunDir

    final = RunDir(run_dir).checkpoint(stage)
    if not final.is_file():
        raise SweepError(f"{run_dir} is missing or unfinished (no {final.name})")
    try:
        model = load(final).model
    except CheckpointError as error:
        raise SweepError(str(error)) from None
    prediction = predict(model, batch)
    label = batch.label.numpy()
    return {"loss": float(np.mean((prediction - label) ** 2)),
            "accuracy": float(np.mean(rounded(np.nan_to_num(prediction, nan=-1.0)) == label))}


_BASELINES: dict = {}


def heldout_baseline(raw_config: dict, stage: str) -> float:
    """The constant predictor's loss on the job's held-out set (the `heldout-<stage>` split at the
    stage's spec and eval_size): what its eval_loss is compared with."""
    from graphpath.core.config import from_dict, stage_specs
    from graphpath.training.stage import heldout_set

    config = from_dict(raw_config)
    spec = stage_specs(config)[stage]
    section = config.train if stage == "pretrain" else config.finetune
    key = (repr(spec), section.eval_size, stage)
    if key not in _BASELINES:
        _BASELINES[key] = label_variance(heldout_set(config, spec, stage, section).label.numpy())
    return _BASELINES[key]


def gate(out: Path, jobs: dict, rules: dict[str, Criterion]) -> dict:
    """{job key: verdict} for jobs {key: (stage, rule name, raw config)}; a rule with max_ratio
    or floor is judged against the held-out set's constant predictor."""
    from graphpath.sweeps.runner import Job, job_dir

    verdicts = {}
    for key, (stage, rule_name, raw) in jobs.items():
        rule = rules[rule_name]
        baseline = heldout_baseline(raw, stage) if (rule.max_ratio, rule.floor) != (None, None) else None
        verdicts[key] = {**check_job(job_dir(out, Job(key, {})), stage, rule, baseline), "rule": rule_name}
    return verdicts


def choose_lr(validation: dict) -> tuple[float, dict]:
    """(chosen lr, {lr: mean validation loss}) from {lr: [validation loss per seed]}: the lowest
    mean (NaN losses, from diverged models, count as worst)."""
    means = {lr: float(np.mean(v)) if np.all(np.isfinite(v)) else math.inf for lr, v in validation.items()}
    return min(means, key=lambda lr: (means[lr], lr)), means


def at_edge(lr: float, grid) -> bool:
    """Is `lr` the smallest or largest of a grid of several? Such a choice is not a tuned lr: the
    best may lie outside the grid."""
    return len(grid) > 1 and lr in (min(grid), max(grid))


def check_lrs(lrs, where: str) -> list[float]:
    if (not isinstance(lrs, list) or not lrs or len(set(lrs)) != len(lrs)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in lrs)):
        raise SweepError(f"{where} must be a non-empty list of distinct positive learning rates, got {lrs!r}")
    return [float(v) for v in lrs]


def lr_name(lr: float) -> str:
    return f"lr{lr:.0e}".replace("e-0", "e-").replace("+0", "")
