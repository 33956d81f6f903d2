"""A seed group's runs trained side by side: `python -m graphpath.train --seeds 0,1,2,3,4`.

Each seed is an ordinary run directory `OUT/seed-<k>/` trained by the ordinary command line
(`python -m graphpath.train --config OUT/seed-<k>/config.toml --out OUT/seed-<k> --no-eval ...`) in
a worker of the sweep runner's process pool (`graphpath.sweeps.runner.make_executor("local")`: one
torch thread per worker), its output in `OUT/seed-<k>/train.log`. Seeds are independent, so every
core trains its own model at one thread's full speed; the seeds are scored together afterwards by
the caller (graphpath.training.run). A run is deterministic for its seed however many run beside it,
and `--resume` continues every unfinished seed from its own newest checkpoint.

One progress bar counts the optimizer steps of every seed (read from their metrics.jsonl). A seed
that fails is named with its log and the command exits 1 after the others finish; Ctrl-C stops
them all, each at its last checkpoint.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from graphpath_common.files import atomic_write_text

from graphpath.core.config import RunConfig, to_toml

LOG_NAME = "train.log"


class SeedsFailed(RuntimeError):
    """Some seeds did not finish; the message names their logs."""


def run_seed(argv: list[str], log_path: str) -> int:
    """One seed's training in this process (a pool worker): the train command, its stdout and
    stderr in `log_path`. Returns its exit status; never raises for the run's own failure."""
    import traceback

    from graphpath.training.run import main as train_main

    with open(log_path, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            return train_main(argv)
        except BaseException:  # noqa: BLE001 - the seed's failure (Ctrl-C included) is its log's to tell
            traceback.print_exc()
            return 1


def seed_argv(args, config_path: Path, out: Path) -> list[str]:
    """The train command line of one seed: the group's stage, resume, device and figure choices,
    one thread, no scoring (the group is scored pooled afterwards)."""
    argv = ["--config", str(config_path), "--out", str(out), "--stage", args.stage, "--device", args.device,
            "--threads", "1", "--no-eval"]
    if args.resume:
        argv.append("--resume")
    if args.no_figures:
        argv.append("--no-figures")
    if args.stop_after is not None:
        argv += ["--stop-after", str(args.stop_after)]
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
    path = run_dir / "metrics.jsonl"
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


def train_seeds(args, runs: list[tuple[RunConfig, Path]], workers: int | None = None,
                progress: bool = True) -> bool:
    """Train every (config, run directory) of a seed group in the local process pool; True when
    every seed finished its stages, False when --stop-after stopped them. Raises SeedsFailed
    naming the logs of seeds that failed."""
    from graphpath.sweeps.runner import make_executor

    stages = ["pretrain", "finetune"] if args.stage == "all" else [args.stage]
    per_seed = {"pretrain": 0, "finetune": 0}
    for config, out in runs:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.toml", to_toml(config))
        per_seed = {"pretrain": config.train.steps, "finetune": config.finetune.steps}
    total = len(runs) * sum(per_seed[name] for name in stages)
    submit, close, _ = make_executor("local", runs[0][1].parent, workers or default_workers(len(runs)))
    futures = {out: submit(run_seed, seed_argv(args, out / "config.toml", out), str(out / LOG_NAME))
               for _, out in runs}
    bar = tqdm(total=total, desc=f"{len(runs)} seeds", unit="step", disable=not progress, dynamic_ncols=True,
               mininterval=1.0)
    codes: dict[Path, int] = {}
    try:
        while len(codes) < len(runs):
            time.sleep(1.0)
            for out, future in futures.items():
                if out not in codes and future.done():
                    codes[out] = future.result()
            done = sum(steps_done(out, stages, config) for config, out in runs)
            if done > bar.n:
                bar.update(done - bar.n)
    finally:
        bar.close()
        close()
    failed = [out for out, code in codes.items() if code != 0]
    if failed:
        raise SeedsFailed(f"{len(failed)} of {len(runs)} seeds failed; logs: "
                          + ", ".join(str(out / LOG_NAME) for out in failed))
    done = all((out / "checkpoints" / f"{stages[-1]}-final.json").is_file() for _, out in runs)
    if not done:
        print(f"stopped after --stop-after; continue with --resume (logs: {runs[0][1] / LOG_NAME}, ...)",
              file=sys.stderr)
    return done
