"""python -m graphpath.sweep — a grid of ordinary training jobs, run resumably, locally or on Slurm.

A study is a list of jobs plus an analysis. Each job is one `graphpath.training.run` run directory under
`OUT/jobs/<key>/` (config.toml, metrics.jsonl, checkpoints/, job.log), with `job.json` recording
the hash of its resolved config:
    Job(key, config, "pretrain")                     python -m graphpath.train --stage pretrain
    Job(key, config, "finetune", after=pretrain_key) the pre-trained job's `pretrain-final`
                                                     checkpoint is copied in, then --stage finetune
A job is complete when its stage's final checkpoint exists; complete jobs are skipped, so a killed
study reruns only what is missing, and a rerun retries only jobs that failed. A job that was killed
or preempted continues from its own last good checkpoint (`graphpath.train --resume`); on Slurm,
submitit requeues a preempted or timed-out job (`TrainJob.checkpoint`), which continues the same
way. A job directory whose recorded hash differs from the grid's config, or that holds files but no
job.json, is an error before anything runs: results of two configs are never mixed. A fine-tuning
job waits for its pre-training job; one whose pre-training failed is reported as blocked.

Ctrl-C stops the sweep with one line (exit 130): a local job in progress is interrupted (it keeps
its checkpoints), submitit jobs are cancelled; rerun the command to continue them. The sweep's
folder is held while it runs (graphpath_common.locks): a second sweep into it exits 2.

Executors (`run_sweep(executor=...)`, `--executor`; graphpath/sweeps/executors.py):
    local           a process pool of `--workers` processes (default: the CPUs this process may
                    use), one torch thread each; every job runs `graphpath.training.run.train` in-process
                    in a worker, its output in the job's job.log
    slurm           submitit's AutoExecutor on a Slurm cluster (--partition, --time, --cpus-per-task,
                    --gpus-per-task); jobs are submitted as their dependencies finish
    submitit-local  submitit's LocalExecutor (one process per job, as on a cluster): the slurm
                    path's bookkeeping on one machine

The generic command runs a grid file:
    python -m graphpath.sweep experiments/sweep-tiny.toml [--workers K] [--executor ...] [--out DIR]
    name = "tiny"                 # OUT defaults to runs/<name>
    base = "small.toml"           # a run config, relative to the grid file (or an inline [base] table)
    stage = "pretrain"            # pretrain | all (all: a fine-tuning job after every pre-training)
    [grid]                        # dotted config keys -> lists; the jobs are their product
    seed = [0, 1, 2]
    "train.lr" = [1e-3, 3e-3]
and writes OUT/sweep.json (each job's values, status and best held-out loss per stage). Studies
(experiments.edt, partial, mixture, transfer) build their own jobs and call `run_sweep`.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from graphpath_common.cli import ArgumentParser, run_cli
from graphpath_common.jsonfile import write_json
from graphpath_common.keys import reject_unknown_keys
from graphpath_common.locks import hold
from graphpath_common.rundir import RunDir
from graphpath_common.toml import read_toml, toml_value

from graphpath.core.config import ConfigError, apply_overrides, from_dict, to_toml
from graphpath.sweeps.executors import (EXECUTORS, SweepError, check_executor, default_workers, is_complete,
                                        make_executor, shut_down_on_exit)

PROG = "python -m graphpath.sweep"
STAGES = ("pretrain", "finetune")


class SweepFailed(RuntimeError):
    """Some jobs failed (each reported with its log); exit 1, rerun to retry only those."""


@dataclass(frozen=True)
class Job:
    key: str  # run directory under OUT/jobs/ (may contain "/")
    config: dict  # raw (TOML-shaped) run config
    stage: str = "pretrain"  # pretrain | finetune
    after: str | None = None  # finetune: the key of the pre-training job it starts from


def config_text(raw: dict) -> str:
    """The resolved config TOML of a raw run config; a ConfigError becomes a SweepError."""
    try:
        return to_toml(from_dict(raw))
    except ConfigError as error:
        raise SweepError(str(error)) from None


def job_dir(root: Path, job: Job) -> Path:
    return Path(root) / "jobs" / job.key


def job_hash(text: str, source: Path | None) -> str:
    """What job.json records: the resolved config (and, for fine-tuning, where it starts from)."""
    if source is not None:
        text += f"\n# from {Path(source).resolve()}\n"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_jobs(jobs: list[Job], root: Path) -> dict[str, str]:
    """{key: hash} for a valid grid; raises SweepError for an empty or malformed grid and for a run
    directory that belongs to another config (checked for every job before any runs)."""
    if not jobs:
        raise SweepError("the grid has zero jobs")
    keys = [job.key for job in jobs]
    if len(set(keys)) != len(keys):
        raise SweepError(f"job keys repeat: {sorted({k for k in keys if keys.count(k) > 1})[:3]}")
    stage_of = {job.key: job.stage for job in jobs}
    hashes = {}
    for job in jobs:
        if job.stage not in STAGES:
            raise SweepError(f"job {job.key}: stage must be one of {', '.join(STAGES)}, got {job.stage!r}")
        if (job.stage == "finetune") != (job.after is not None) or (job.after and stage_of.get(job.after) != "pretrain"):
            raise SweepError(f"job {job.key}: a finetune job names the pretrain job it starts from (after=), "
                             "and only a finetune job does")
        source = job_dir(root, Job(job.after, {})) if job.after else None
        hashes[job.key] = digest = job_hash(config_text(job.config), source)
        out = job_dir(root, job)
        marker = RunDir(out).job
        if marker.is_file():
            recorded = json.loads(marker.read_text()).get("config_sha256")
            if recorded != digest:
                raise SweepError(f"{out} holds results of a different config (hash {recorded}, this grid's {digest}); "
                                 "remove it or choose another --out")
        elif out.is_dir() and any(out.iterdir()) and not any(k.startswith(job.key + "/") for k in keys):
            raise SweepError(f"{out} is not a job directory of this sweep (files but no job.json); "
                             "remove it or choose another --out")
    return hashes


def _claim(root: Path, job: Job, digest: str) -> None:
    """Record the job's config hash (check_jobs has made sure a recorded one matches, so the
    checkpoints of an earlier attempt are this job's own and it continues from them)."""
    out = job_dir(root, job)
    out.mkdir(parents=True, exist_ok=True)
    write_json(RunDir(out).job, {"config_sha256": digest, "stage": job.stage, "after": job.after, "key": job.key})


def run_sweep(jobs: list[Job], root: Path, executor: str = "local", workers: int | None = None,
              slurm: dict | None = None, progress: bool = True, desc: str = "jobs") -> dict[str, dict]:
    """Run every incomplete job; returns {key: {"status": done|ran|failed|blocked, ...}}.

    "done" were complete before, "ran" finished now, "failed" carry their log path, "blocked" are
    fine-tuning jobs whose pre-training failed. Raises SweepError before running anything for bad
    input; a job's failure never stops the others.
    """
    root = Path(root)
    check_executor(executor)
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise SweepError(f"--workers must be a positive integer, got {workers!r}")
    with hold(root, "graphpath.sweeps.runner.run_sweep"):  # a command running it holds root already
        return _run_jobs(jobs, root, executor, workers, slurm, progress, desc)


def _run_jobs(jobs, root: Path, executor: str, workers, slurm, progress: bool, desc: str) -> dict[str, dict]:
    hashes = check_jobs(jobs, root)
    status = {job.key: {"status": "done"} for job in jobs if is_complete(job_dir(root, job), job.stage)}
    pending = [job for job in jobs if job.key not in status]
    bar = tqdm(total=len(jobs), initial=len(status), desc=desc, unit="job", disable=not progress, dynamic_ncols=True)
    say = bar.write if progress else (lambda line: print(line, file=sys.stderr))
    if not pending:
        bar.close()
        return status
    limit = workers or (len(pending) if executor == "slurm" else default_workers())
    submit, close, limit = make_executor(executor, root, min(limit, len(pending)), slurm)
    running = {}
    with shut_down_on_exit(close, bar, running):
        while pending or running:
            for job in list(pending):
                if len(running) >= limit:
                    break
                before = status.get(job.after, {}).get("status") if job.after else "done"
                if before in ("failed", "blocked"):
                    status[job.key] = {"status": "blocked", "after": job.after}
                    say(f"{job.key}: blocked (its pre-training {job.after} failed)")
                    pending.remove(job)
                    bar.update()
                elif before in ("done", "ran"):
                    _claim(root, job, hashes[job.key])
                    source = str(job_dir(root, Job(job.after, {}))) if job.after else None
                    running[job.key] = submit(str(job_dir(root, job)), config_text(job.config), job.stage, source)
                    pending.remove(job)
            finished = [key for key, future in running.items() if future.done()]
            if not finished:
                time.sleep(0.1)
                continue
            for key in finished:
                future = running.pop(key)
                try:
                    result = future.result()
                except Exception as error:  # the worker itself died (or submitit lost the job)
                    result = {"ok": False, "code": None, "seconds": None, "error": f"{type(error).__name__}: {error}",
                              "log": str(RunDir(job_dir(root, Job(key, {}))).job_log)}
                status[key] = {**result, "status": "ran" if result["ok"] else "failed"}
                bar.update()
                if result["ok"]:
                    say(f"{key}: finished in {result['seconds']:.1f}s")
                else:
                    say(f"{key}: FAILED (exit {result['code']}); log: {result['log']}")
    return status


def require_complete(status: dict[str, dict]) -> None:
    """SweepFailed naming the failed jobs' logs unless every job is done."""
    bad = {key: s for key, s in status.items() if s["status"] in ("failed", "blocked")}
    if bad:
        logs = [s["log"] for s in bad.values() if s.get("log")]
        raise SweepFailed(f"{len(bad)} of {len(status)} jobs did not finish ({sum(s['status'] == 'failed' for s in bad.values())} "
                          f"failed, the rest blocked); logs: {', '.join(logs[:3])}{' ...' if len(logs) > 3 else ''}; "
                          "rerun the same command to retry only them")


def read_metrics(run_dir: Path) -> list[dict]:
    run = RunDir(run_dir)
    if not run.metrics.is_file():
        raise SweepError(f"{run_dir} is not a finished run directory (no {run.metrics.name})")
    return run.read_metrics(SweepError)


def best_eval_loss(run_dir: Path, stage: str) -> float:
    """The best held-out loss of a stage (early stopping; the fine-tune step-0 line included)."""
    losses = [m["eval_loss"] for m in read_metrics(run_dir)
              if m["stage"] == stage and m.get("eval_loss") is not None]  # null: a non-finite loss
    if not losses:
        raise SweepError(f"{run_dir} has no held-out {stage} evaluation")
    return float(min(losses))


def non_embedding_parameters(model_config: dict, max_vertices: int) -> int:
    """N: parameters outside the vertex embedding (Kaplan et al.'s convention)."""
    import torch

    from graphpath.core.model import build_model

    with torch.random.fork_rng(devices=[]):
        model = build_model({**model_config, "max_vertices": max_vertices})
    return model.num_parameters() - model.vertex_embed.weight.numel()


# ---- the generic grid file ------------------------------------------------------------------------

GRID_KEYS = ("name", "base", "stage", "grid")


def _value_name(value) -> str:
    return str(value).replace("/", "_").replace(" ", "")


def load_grid(path: Path) -> tuple[str, list[Job]]:
    """(name, jobs) of a grid file (see the module docstring)."""
    path = Path(path)
    grid = read_toml(path, SweepError)
    reject_unknown_keys(GRID_KEYS, grid, SweepError, "sweep grid")
    name, stage, axes = grid.get("name", path.stem), grid.get("stage", "pretrain"), grid.get("grid", {})
    base = grid.get("base", {})
    if isinstance(base, str):
        base_path = (path.parent / base) if not Path(base).is_absolute() else Path(base)
        base = read_toml(base_path, SweepError, "base config ")
    if not isinstance(base, dict):
        raise SweepError("base must be a run config file name or an inline [base] table")
    if stage not in ("pretrain", "all"):
        raise SweepError(f"stage must be pretrain or all, got {stage!r}")
    if not isinstance(axes, dict) or not all(isinstance(v, list) for v in axes.values()):
        raise SweepError("[grid] maps dotted config keys to lists of values")
    jobs = []
    for values in itertools.product(*axes.values()):
        chosen = dict(zip(axes, values))
        key = ",".join(f"{k}={_value_name(v)}" for k, v in chosen.items()) or "base"
        try:
            raw = apply_overrides(base, [(k, toml_value(v)) for k, v in chosen.items()])
        except ConfigError as error:
            raise SweepError(str(error)) from None
        jobs.append(Job(f"{key}/pretrain" if stage == "all" else key, raw, "pretrain"))
        if stage == "all":
            jobs.append(Job(f"{key}/finetune", raw, "finetune", after=f"{key}/pretrain"))
    if not jobs or any(not v for v in axes.values()):
        raise SweepError(f"{path}: the grid has zero jobs (an axis of [grid] is empty)")
    return name, jobs


def summarize(jobs: list[Job], root: Path, status: dict) -> dict:
    rows = []
    for job in jobs:
        out = job_dir(root, job)
        row = {"key": job.key, "stage": job.stage, "after": job.after, "status": status[job.key]["status"],
               "run_dir": str(out)}
        if row["status"] in ("done", "ran"):
            row["best_eval_loss"] = best_eval_loss(out, job.stage)
        rows.append(row)
    return {"schema": 1, "jobs": rows}


def _main(argv) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("grid", type=Path, help="grid TOML (see the module docstring / docs/contracts.md)")
    add_executor_options(parser)
    parser.add_argument("--out", type=Path, default=None, help="sweep directory (default runs/<name>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    name, jobs = load_grid(args.grid)
    options = executor_options(args)
    out = args.out or Path("runs") / name
    start = time.time()
    with hold(out, PROG):
        status = run_sweep(jobs, out, progress=not args.quiet, desc=f"{name} jobs", **options)
        seconds = time.time() - start
        doc = summarize(jobs, out, status)
        doc.update(name=name, grid=str(args.grid), seconds=seconds)
        write_json(out / "sweep.json", doc)
    ran = sum(s["status"] == "ran" for s in status.values())
    print(f"{out / 'sweep.json'}: {len(jobs)} jobs, {ran} run now in {seconds:.1f}s"
          + (f" ({ran / seconds:.3f} jobs/s)" if ran else ""), file=sys.stderr)
    require_complete(status)
    return 0


def study_parser(prog: str, description: str, default_config: Path) -> ArgumentParser:
    """The options every study command shares: --config, --out, --no-figures, --quiet and the
    executor's (add a study's own options to the parser it returns)."""
    parser = ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", type=Path, default=default_config,
                        help=f"study TOML (default experiments/{default_config.name})")
    parser.add_argument("--out", type=Path, default=None, help="study directory (default runs/<name>)")
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_executor_options(parser)
    return parser


def add_executor_options(parser) -> None:
    """--executor, --workers and the Slurm options, shared by every study's command."""
    group = parser.add_argument_group("executor")
    group.add_argument("--executor", default="local", help=f"one of {', '.join(EXECUTORS)} (default local)")
    group.add_argument("--workers", type=int, default=None,
                       help="jobs at once (local default: the CPUs this process may use, one torch thread each)")
    group.add_argument("--partition", default=None, help="slurm: partition")
    group.add_argument("--time", type=int, default=60, metavar="MIN", help="slurm: time limit per job in minutes")
    group.add_argument("--cpus-per-task", type=int, default=1, help="slurm: CPUs per job")
    group.add_argument("--gpus-per-task", type=int, default=0, help="slurm: GPUs per job")


def executor_options(args) -> dict:
    """The executor settings of a command line, checked before any work (an executor that cannot
    run here, Slurm without Slurm, is one line, exit 2)."""
    check_executor(args.executor)
    if args.workers is not None and args.workers < 1:
        raise SweepError(f"--workers must be a positive integer, got {args.workers}")
    if args.time < 1:
        raise SweepError(f"--time must be a positive number of minutes, got {args.time}")
    return {"executor": args.executor, "workers": args.workers,
            "slurm": {"partition": args.partition, "time": args.time, "cpus_per_task": args.cpus_per_task,
                      "gpus_per_task": args.gpus_per_task}}


def save_study(doc: dict, out: Path, json_name: str, write_figures, figures: bool = True) -> Path:
    """A study's last step: its figures into `out/figures` (their paths under doc["figures"]) unless
    `figures` is false, then `doc` as `out/<json_name>` (a non-finite number as null); returns that
    JSON's path."""
    if figures:
        doc["figures"] = write_figures(doc, RunDir(out).figures)
    path = out / json_name
    write_json(path, doc)
    return path


def run_study_cli(prog: str, body, argv, *user_errors) -> int:
    """graphpath_common.cli.run_cli for a command that runs a sweep: bad input exit 2 (one line),
    failed jobs exit 1 (one line naming their logs), else body's status."""
    def guarded(args):
        try:
            return body(args)
        except SweepFailed as error:
            print(f"{prog}: {error}", file=sys.stderr)
            return 1

    return run_cli(prog, guarded, argv, SweepError, *user_errors)


def main(argv=None) -> int:
    return run_study_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
