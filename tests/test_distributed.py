"""Two processes under torchrun (gloo on CPU): pre-training, fine-tuning and scoring in one call.

The main process writes each stage's final checkpoint; the other process starts fine-tuning from
it. GRAPHPATH_TEST_CHECKPOINT_PAUSE holds the writer between the tensor files and the JSON, so a
run without the barrier between stages fails here every time ("no complete checkpoint")."""
import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from test_train import TINY

pytestmark = pytest.mark.slow


def test_two_processes_train_both_stages_and_score(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRAPHPATH_TEST_CHECKPOINT_PAUSE": "2"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "graphpath.train", "--out", str(out), "--threads", "1", *[a for a in TINY if a != "--no-eval"],
               "--train.steps", "6", "--train.batch_size", "32", "--finetune.steps", "4",
               "--finetune.batch_size", "32"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoints = out / "checkpoints"
    for stage, steps in (("pretrain", 6), ("finetune", 4)):
        info = json.loads((checkpoints / f"{stage}-final.json").read_text())
        assert info["step"] == steps and info["examples"] == steps * 32
        feeds = info["train_state"]["feed"]  # one sampler state per process, each its own stream
        assert len(feeds) == 2 and feeds[0] != feeds[1]
    pre = load_file(checkpoints / "pretrain-final.safetensors")
    fine = load_file(checkpoints / "finetune-final.safetensors")
    assert pre.keys() == fine.keys() and any(not pre[k].equal(fine[k]) for k in pre)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["stage"] == "finetune"][:1] == [0]  # the before-fine-tuning score
    assert max(r["examples"] for r in rows if r["stage"] == "pretrain") == 6 * 32
    assert (out / "eval.json").is_file() and (out / "report.md").is_file()


def test_a_stopped_torchrun_run_is_told_the_command_that_resumes_it(tmp_path):
    """The hint after a stop is a torchrun command with the run's process layout, and running it
    finishes the run (a single-process --resume would be refused: "written by 2 processes")."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    first = subprocess.run([*launch, "-m", "graphpath.train", "--out", str(out), "--threads", "1", *TINY,
                            "--stage", "pretrain", "--train.steps", "6", "--train.batch_size", "32",
                            "--stop-after", "3"], env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    hint = f"continue with torchrun --standalone --nproc-per-node 2 -m graphpath.train --out {out} --resume"
    assert hint in first.stderr
    command = hint.split("continue with torchrun ")[1].split()
    again = subprocess.run([sys.executable, "-m", "torch.distributed.run", *command, "--stage", "pretrain",
                            "--threads", "1", "--no-eval", "--no-figures"], env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "checkpoints" / "pretrain-final.json").read_text())["step"] == 6
