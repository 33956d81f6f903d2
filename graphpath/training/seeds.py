"""A seed group's runs trained side by side: `python -m graphpath.train --seeds 0,1,2,3,4`.

Each seed is an ordinary run directory `OUT/seed-<k>/` trained by the ordinary command line
(`python -m graphpath.train --config OUT/config.toml --seed k --out OUT/seed-<k> --no-eval ...`) in
a worker of the sweep runner's local process pool (graphpath.sweeps.executors: one torch thread
per worker), its output in `OUT/seed-<k>/train.log`. Each seed's process holds its own directory
(graphpath_common.locks) and applies the resume rule (graphpath.training.resume) to it, as a single
run does. Seeds are independent, so every core trains its own model at one thread's full speed;
the seeds are scored together afterwards by the caller (graphpath.training.run). A run is
deterministic for its seed however many run beside it, and `--resume` continues every unfinished
seed from its own newest checkpoint.

One progress bar counts the optimizer steps of every seed (read from their metrics.jsonl). A seed
that fails is named with its log and the command exits 1 after the others finish; Ctrl-C stops
them all, each at its last checkpoint.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from tqdm import tqdm

from graphpath_common.rundir import RunDir

from graphpath.core.config import RunConfig

LOG_NAME = "train.log"


class SeedsFailed(RuntimeError):
    """Some seeds did not finish; the message names their logs."""


def run_seed(argv: list[str], log_path: str) -> int:
    """One seed's training in this process (a pool worker): the train command, its stdout and
    stderr appended to `log_path`. Returns its exit status (bad input 2, a diverged loss 1, Ctrl-C
    130); never raises for the run's own failure."""
    import traceback

    from graphpath.training.run import main as train_main

    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            return train_main(argv)
        except Exception:  # noqa: BLE001 - the seed's failure is its log's to tell
            traceback.print_exc()
            return 1


def seed_argv(options, device: str, config_path: Path, seed: int, out: Path) -> list[str]:
    """The train command line of one seed: the group's config with the seed's `--seed`, the
    group's stage, resume, device and figure choices, one thread, no scoring (the group is scored
    pooled afterwards)."""
    argv = ["--config", str(config_path), "--seed", str(seed), "--out", str(out), "--stage", options.stage,
            "--device", device, "--threads", "1", "--no-eval"]
    if options.resume:
        argv.append("--resume")
    if not options.figures:
        argv.append("--no-figures")
    if options.stop_after is not None:
        argv += ["--stop-after", str(options.stop_after)]
    return argv


def default_workers(count: int) -> int:
    """Every seed at once, up to four per CPU this process may use. Seeds of equal length finish
    soonest all at once: 5 seeds on 2 cores take 2.5 seeds' time side by side, 3 in rounds of 2."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(count, 4 * cpus))


def steps_done(run_dir: Path, stages: list[str], config: RunConfig) -> int:
    """Optimizer steps of `stages` that a run directory's metrics.jsonl records so far."""
    path = RunDir(run_dir).metrics
    if not path.is_file():
        return 0
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - 4096))
        lines = [line for line in handle.read().decode(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        try:
            last = json.loads(line)
        except json.JSONDecodeError:  # the first line of the tail may be cut, a last one half-written
            continue
        if last.get("stage") in stages:
            before = config.train.steps if last["stage"] == "finetune" and "pretrain" in stages else 0
            return before + int(last.get("step", 0))
    return 0


def train_seeds(options, device: str, config_path: Path, runs: list[tuple[RunConfig, Path]],
                workers: int | None = None) -> bool:
    """Train every (config, run directory) of a seed group in the local process pool, each from
    the group's `config_path` with its own seed; True when every seed finished its stages, False
    when `options.stop_after` stopped them. Raises SeedsFailed naming the logs of seeds that failed."""
    from graphpath.sweeps.executors import make_executor, shut_down_on_exit

    stages = options.stages
    total = sum(config.train.steps * ("pretrain" in stages) + config.finetune.steps * ("finetune" in stages)
                for config, _ in runs)
    submit, close, _ = make_executor("local", Path(config_path).parent, workers or default_workers(len(runs)),
                                     call=run_seed)
    futures = {out: submit(seed_argv(options, device, config_path, config.seed, out), str(out / LOG_NAME))
               for config, out in runs}
    bar = tqdm(total=total, desc=f"{len(runs)} seeds", unit="step", disable=not options.progress,
               dynamic_ncols=True, mininterval=1.0)
    codes: dict[Path, int] = {}
    with shut_down_on_exit(close, bar):
        while len(codes) < len(runs):
            time.sleep(1.0)
            for out, future in futures.items():
                if out not in codes and future.done():
                    codes[out] = future.result()
            done = sum(steps_done(out, stages, config) for config, out in runs)
            if done > bar.n:
                bar.update(done - bar.n)
    failed = [out for out, code in codes.items() if code != 0]
    if failed:
        raise SeedsFailed(f"{len(failed)} of {len(runs)} seeds failed; logs: "
                          + ", ".join(str(out / LOG_NAME) for out in failed))
    return all(RunDir(out).finished(stages[-1]) for _, out in runs)
