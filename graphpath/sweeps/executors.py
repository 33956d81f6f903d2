"""Where a sweep's jobs run: each job is `execute` (one `graphpath.training.run.train` run in this
process, its output in the job's job.log), run by one of the EXECUTORS that `make_executor` builds.

    local           a spawn process pool, one torch thread per worker; Ctrl-C reaches a running job
                    only (an idle worker ignores it)
    slurm           submitit's AutoExecutor; the job is `TrainJob`, which submitit requeues with the
                    same arguments when Slurm preempts it or its time runs out
    submitit-local  submitit's LocalExecutor, the same bookkeeping on one machine

A job whose directory holds checkpoints of its stage (an earlier attempt killed or preempted)
continues from its own last checkpoint (`train(..., resume=True)`, as `graphpath.train --resume`).
"""
from __future__ import annotations

import contextlib
import datetime
import multiprocessing
import os
import shutil
import signal
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import submitit

from graphpath_common.files import WriteError
from graphpath_common.locks import FolderBusy
from graphpath_common.rundir import RunDir
from graphpath_common.toml import tomllib

EXECUTORS = ("local", "slurm", "submitit-local")


class SweepError(ValueError):
    """Bad sweep input (unknown executor, empty grid, foreign run directory); one line, exit 2."""


def is_complete(run_dir: Path, stage: str) -> bool:
    return RunDir(run_dir).finished(stage)


def execute(run_dir: str, text: str, stage: str, source: str | None) -> dict:
    """Run one job in this process (a pool worker or a submitit job): `graphpath.training.run.train`
    with one thread, continuing from the job's own last checkpoint when an earlier attempt left one;
    its stdout and stderr appended to run_dir/job.log. Never raises for the job's own failure; Ctrl-C
    stops it (exit 130, its checkpoints kept)."""
    job = RunDir(run_dir)
    start = time.time()
    code, ok = 1, False
    main_thread = threading.current_thread() is threading.main_thread()  # only it may set signal handlers
    previous = signal.signal(signal.SIGINT, signal.default_int_handler) if main_thread else None  # see _worker_setup
    try:
        job.path.mkdir(parents=True, exist_ok=True)
        with open(job.job_log, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            resume = bool(job.checkpoint_files(stage))
            stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            print(f"== {stamp}: {'continuing from the last checkpoint' if resume else 'starting'} ==", flush=True)
            code = _train(job, text, stage, source, resume)
            ok = code == 0 and is_complete(job.path, stage)
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
    return {"ok": ok, "code": code, "seconds": time.time() - start, "log": str(job.job_log)}


def _train(job: RunDir, text: str, stage: str, source: str | None, resume: bool) -> int:
    """`train` one job's stage into `job`, as `python -m graphpath.train` would; its exit status
    (bad input 2, a diverged loss 1, Ctrl-C 130), each failure one line (or a traceback) in job.log."""
    prog = "graphpath.train"
    try:
        from graphpath.core.checkpoint import CheckpointError
        from graphpath.core.config import ConfigError, from_dict
        from graphpath.evaluation.sets import EvalError
        from graphpath.training.feed import DataError
        from graphpath.training.run import train
        from graphpath.training.stage import TrainingDiverged
        from graphpath_common.cli import UsageError, handled_interrupt

        config = from_dict(tomllib.loads(text))
        if source is not None:
            job.checkpoints.mkdir(parents=True, exist_ok=True)
            for path in RunDir(source).checkpoints.glob(f"{RunDir(source).checkpoint('pretrain').stem}.*"):
                shutil.copyfile(path, job.checkpoints / path.name)
        try:
            train(config, job.path, stage=stage, resume=resume, threads=1, evaluate=False, figures=False)
            return 0
        except (ConfigError, CheckpointError, DataError, EvalError, UsageError, WriteError, FolderBusy) as error:
            print(f"{prog}: {error}")  # bad input: one line, as the command line says it
            return 2
        except TrainingDiverged as error:
            print(f"{prog}: {error}")
            return 1
        except KeyboardInterrupt:
            print(f"{prog}: interrupted; the job continues from its last checkpoint when the sweep is rerun")
            return handled_interrupt()
    except Exception:  # the job's failure, reported with its log; the sweep goes on
        traceback.print_exc()
        return 1


class TrainJob(submitit.helpers.Checkpointable):
    """`execute` as a submitit job. When Slurm preempts it or its time runs out, submitit calls
    `checkpoint` (Checkpointable's), which requeues this job with the same arguments: it continues
    from its last checkpoint as any rerun of `execute` does."""

    def __call__(self, run_dir: str, text: str, stage: str, source: str | None) -> dict:
        return execute(run_dir, text, stage, source)


def _worker_setup() -> None:
    """A local pool worker: one torch thread, and Ctrl-C only while a job runs (`execute`), so an
    idle worker is not killed by it mid-wait."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def check_executor(kind: str) -> None:
    """SweepError unless `kind` is an executor that can run here (Slurm: submitit finds `srun`)."""
    if kind not in EXECUTORS:
        raise SweepError(f"unknown executor {kind!r} (choose from {', '.join(EXECUTORS)})")
    if kind == "slurm" and submitit.SlurmExecutor.affinity() < 0:
        raise SweepError("--executor slurm: no Slurm on this machine (no srun on PATH); executors that work here: "
                         + ", ".join(k for k in EXECUTORS if k != "slurm"))


def _interrupt_pool(pool: ProcessPoolExecutor) -> None:
    """Ctrl-C to every pool worker: a running job stops at once, keeping its checkpoints (a real
    Ctrl-C in a terminal reaches them itself; this covers a SIGINT sent to the sweep alone)."""
    for process in list(getattr(pool, "_processes", {}).values()):  # the pool's worker processes
        with contextlib.suppress(OSError):
            os.kill(process.pid, signal.SIGINT)


def interruptible(call, *args):
    """`call(*args)` in a pool worker with Ctrl-C reaching it (see _worker_setup), as `execute` does."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler) if main_thread else None
    try:
        return call(*args)
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def shut_down_on_exit(close, bar=None, running=None):
    """The body of a loop over an executor's jobs: on the way out the progress bar (if any) is closed,
    then `close(interrupted)` from make_executor, interrupting the running jobs when Ctrl-C left the
    body and letting them finish otherwise. `running`: a dict of the futures still running, read at
    Ctrl-C time, whose jobs are cancelled first (submitit's; a local pool's are interrupted by close).
    The KeyboardInterrupt is re-raised."""
    interrupted = False
    try:
        yield
    except KeyboardInterrupt:
        interrupted = True
        for future in (running or {}).values():
            with contextlib.suppress(Exception):
                future.cancel()
        raise
    finally:
        if bar is not None:
            bar.close()
        close(interrupted)


def make_executor(kind: str, root: Path, workers: int, slurm: dict | None = None, call=None):
    """(submit(run_dir, config text, stage, source) -> future with .done() / .result() / .cancel(),
    close(interrupted=False), at most this many at once). `call`: a module-level function the jobs
    run instead of `execute` (submit(*args) runs call(*args); a seed group's seeds, a search's
    trial pieces); with slurm it is submitted as it is (not requeued on preemption as TrainJob is)."""
    check_executor(kind)
    if kind == "local":
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_setup)

        def close(interrupted: bool = False) -> None:
            if interrupted:
                _interrupt_pool(pool)
            pool.shutdown(wait=True, cancel_futures=True)

        if call is not None:
            return lambda *args: pool.submit(interruptible, call, *args), close, workers
        return lambda *args: pool.submit(execute, *args), close, workers
    folder = Path(root) / "submitit"
    slurm = dict(slurm or {})
    job = (lambda: call) if call is not None else TrainJob
    if kind == "submitit-local":
        executor = submitit.LocalExecutor(folder)
        executor.update_parameters(timeout_min=int(slurm.get("time", 60)))
        return lambda *args: executor.submit(job(), *args), lambda interrupted=False: None, workers
    executor = submitit.AutoExecutor(folder, cluster="slurm")
    params = {"timeout_min": int(slurm.get("time", 60)), "cpus_per_task": int(slurm.get("cpus_per_task", 1)),
              "tasks_per_node": 1, "nodes": 1, "name": "graphpath-sweep"}
    if slurm.get("partition"):
        params["slurm_partition"] = slurm["partition"]
    if slurm.get("gpus_per_task"):
        params["gpus_per_node"] = int(slurm["gpus_per_task"])
    executor.update_parameters(**params)
    return lambda *args: executor.submit(job(), *args), lambda interrupted=False: None, workers
