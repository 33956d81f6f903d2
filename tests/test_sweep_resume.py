"""Sweep jobs on the cluster path: a job killed mid-run continues from its own last checkpoint on the
rerun (bit-identical to an uninterrupted job), submitit requeues a preempted job with the same
arguments, and `--executor slurm` without Slurm is one line naming the executors that work."""
import os
import signal
import subprocess
import sys
import time

import pytest
import submitit
from safetensors.torch import load_file

from graphpath.sweeps.executors import TrainJob, make_executor
from graphpath.sweeps.runner import main

from every_command import ROOT, tiny_grid

GRID = tiny_grid("kill", [3], 600, 20)


def test_slurm_without_slurm_is_one_line_naming_what_works(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: -1))  # no srun here
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    assert main([str(grid), "--out", str(tmp_path / "out"), "--executor", "slurm", "--partition", "p",
                 "--time", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["python -m graphpath.sweep: --executor slurm: no Slurm on this machine (no srun on PATH); "
                   "executors that work here: local, submitit-local"]
    assert not (tmp_path / "out").exists()


def test_a_preempted_slurm_job_is_requeued_with_the_same_arguments(tmp_path):
    job = TrainJob()
    args = (str(tmp_path / "jobs" / "k"), "name = 'x'\n", "pretrain", None)
    again = job.checkpoint(*args)  # what submitit calls on preemption or timeout
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    assert again.function is job and again.args == args and again.kwargs == {}
    submit, close, _ = make_executor("submitit-local", tmp_path, 1)
    close()


def run_sweep_process(grid, out, env):
    return subprocess.Popen([sys.executable, "-m", "graphpath.sweep", str(grid), "--out", str(out), "--workers", "1",
                             "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


@pytest.mark.slow
def test_a_job_killed_mid_run_continues_from_its_last_checkpoint(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    checkpoints = killed / "jobs" / "seed=3" / "checkpoints"
    process = run_sweep_process(grid, killed, env)
    deadline = time.time() + 240
    while time.time() < deadline and not any(p.name.startswith("pretrain-1") for p in checkpoints.glob("*.json")):
        time.sleep(0.2)  # until a checkpoint at step >= 100 exists
    os.killpg(process.pid, signal.SIGKILL)  # the sweep and its worker, as a preemption would
    process.wait()
    assert not (checkpoints / "pretrain-final.json").exists()
    reached = max(int(p.name[len("pretrain-"):-len(".json")]) for p in checkpoints.glob("pretrain-*.json"))
    rerun = run_sweep_process(grid, killed, env)
    uninterrupted = run_sweep_process(grid, whole, env)
    for done in (rerun, uninterrupted):
        _, err = done.communicate(timeout=600)
        assert done.returncode == 0, err[-2000:]
    log = (killed / "jobs" / "seed=3" / "job.log").read_text()
    assert log.count("== ") == 2 and "continuing from the last checkpoint" in log  # both attempts kept
    second = log.split("continuing from the last checkpoint")[1]
    assert f" {reached}/600 " in second.replace("|", " ")  # its bar starts where the kill left it
    a = load_file(checkpoints / "pretrain-final.safetensors")
    b = load_file(whole / "jobs" / "seed=3" / "checkpoints" / "pretrain-final.safetensors")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)  # as if it had never been killed
