"""Kill -9 during pre-training, resume, repeat: the final weights are byte-for-byte those of an
uninterrupted run.

A 400-step pre-training of a tiny model (one CPU thread, a checkpoint every 10 steps) runs as a
subprocess and is SIGKILLed at 5 moments drawn from a seeded generator, each time resumed with
`--resume`. One of the kills lands while a checkpoint is being written: that attempt runs with
GRAPHPATH_TEST_CHECKPOINT_PAUSE, which holds the writer between the tensor files and the JSON, and
is killed once a checkpoint's weights exist without their JSON (so the half-written checkpoint must
be ignored on resume). The rest are killed at a random delay after the run's newest checkpoint
passes a random step.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from graphpath.training.run import main

ROOT = Path(__file__).resolve().parent.parent
STEPS, EVERY = 400, 10
ARGS = ["--stage", "pretrain", "--data.n_max", "5", "--data.finetune_n_max", "4", "--data.small_target", "4",
        "--data.pretrain_threshold", "3", "--data.finetune_threshold", "2", "--model.d_model", "16",
        "--model.n_layers", "1", "--model.n_heads", "2", "--train.batch_size", "8", "--train.steps", str(STEPS),
        "--train.warmup_steps", "10", "--train.log_every", "50", "--train.eval_every", str(STEPS),
        "--train.eval_size", "64", "--train.checkpoint_every", str(EVERY), "--threads", "1",
        "--no-eval", "--no-figures"]


def newest_step(checkpoints: Path, suffix: str = ".json") -> int:
    """The highest numbered pretrain checkpoint with a file of this suffix (-1 if none)."""
    steps = [int(p.name[len("pretrain-"):-len(suffix)]) for p in checkpoints.glob(f"pretrain-*{suffix}")
             if p.name[len("pretrain-"):-len(suffix)].isdigit()]
    return max(steps, default=-1)


def half_written(checkpoints: Path, at_least: int, since: float) -> int | None:
    """A checkpoint step >= at_least whose tensor files were written after `since` but whose JSON
    is not on disk (yet)."""
    for path in checkpoints.glob("pretrain-*.state.safetensors"):
        step = path.name[len("pretrain-"):-len(".state.safetensors")]
        if (step.isdigit() and int(step) >= at_least and path.stat().st_mtime >= since
                and not (checkpoints / f"pretrain-{step}.json").exists()):
            return int(step)
    return None


def start(out: Path, resume: bool, pause: bool, log) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("GRAPHPATH_TEST_CHECKPOINT_PAUSE", None)
    if pause:
        env["GRAPHPATH_TEST_CHECKPOINT_PAUSE"] = "3"
    argv = ["--out", str(out), "--resume"] if resume else ["--out", str(out), *ARGS]
    return subprocess.Popen([sys.executable, "-m", "graphpath.train", *argv], cwd=ROOT, env=env,
                            stdout=log, stderr=log)


@pytest.mark.slow
def test_sigkill_at_five_moments_then_resume_gives_identical_weights(tmp_path):
    rng = random.Random(9)
    targets = sorted(rng.sample(range(3, 37), 5))  # in units of 10 steps: kill once past these steps
    targets = [EVERY * t for t in targets]
    window = rng.randrange(5)  # the kill that lands while a checkpoint is being written
    delays = [rng.uniform(0.0, 0.15) for _ in targets]

    whole, parts = tmp_path / "whole", tmp_path / "parts"
    before = torch.get_num_threads()
    try:
        assert main(["--out", str(whole), *ARGS]) == 0
    finally:
        torch.set_num_threads(before)

    checkpoints = parts / "checkpoints"
    log = (tmp_path / "parts.log").open("w")
    kills = []
    for attempt, (target, delay) in enumerate(zip(targets, delays)):
        target = max(target, newest_step(checkpoints) + EVERY)  # progress past where it resumes
        started = time.time() - 1.0  # file times may be coarser than the clock
        process = start(parts, resume=attempt > 0, pause=attempt == window, log=log)
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                assert process.poll() is None, f"run ended before kill {attempt} ({target}): see {tmp_path}/parts.log"
                if attempt == window:
                    step = half_written(checkpoints, target, started)
                    if step is not None:
                        break
                elif newest_step(checkpoints) >= target:
                    time.sleep(delay)
                    break
                time.sleep(0.005)
            else:
                pytest.fail(f"kill {attempt} never reached step {target}")
            os.kill(process.pid, signal.SIGKILL)
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(30)
        assert process.returncode == -signal.SIGKILL
        kills.append(newest_step(checkpoints))
        if attempt == window:  # killed between the tensor files and the JSON: a half-written checkpoint
            assert (checkpoints / f"pretrain-{step}.safetensors").exists()
            assert not (checkpoints / f"pretrain-{step}.json").exists()
            assert newest_step(checkpoints) == step - EVERY
    process = start(parts, resume=True, pause=False, log=log)
    assert process.wait(300) == 0, (tmp_path / "parts.log").read_text()[-2000:]
    log.close()

    assert kills == sorted(kills) and len(set(kills)) == 5  # five kills at five different places
    a = (whole / "checkpoints" / "pretrain-final.safetensors").read_bytes()
    b = (parts / "checkpoints" / "pretrain-final.safetensors").read_bytes()
    assert a == b  # byte-for-byte: same header, same tensors
