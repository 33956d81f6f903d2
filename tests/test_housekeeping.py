"""Housekeeping: old checkpoints are pruned (the newest `keep_checkpoints` and the finals stay), a
warmup longer than the stage is named in one line, a damaged checkpoint is named by the page,
seeds pooled or run twice are refused, and an interrupted torchrun run is told a torchrun command."""
import json
import shutil

import pytest

from graphpath.core.checkpoint import resume_checkpoint, verify_checkpoint
from graphpath.training.run import main
from graphpath.training.stage import Runtime

from every_command import FIXTURE
from test_resume_rule import TINY


def names(run, stage="pretrain"):
    return sorted((p.name for p in (run / "checkpoints").glob(f"{stage}-*.json")),
                  key=lambda n: (n.endswith("final.json"), len(n), n))


def test_only_the_newest_numbered_checkpoints_and_the_finals_are_kept(tmp_path):
    run = tmp_path / "run"
    assert main(["--out", str(run), *TINY, "--train.checkpoint_every", "5", "--train.keep_checkpoints", "2",
                 "--stop-after", "27"]) == 0
    assert names(run) == ["pretrain-25.json", "pretrain-27.json"]
    files = {p.name for p in (run / "checkpoints").iterdir()}
    assert files == {f"pretrain-{s}.{x}" for s in (25, 27) for x in ("json", "safetensors", "state.safetensors")}
    assert resume_checkpoint(run, "pretrain").name == "pretrain-27.json"
    assert main(["--out", str(run), "--resume", "--no-eval", "--no-figures"]) == 0
    assert names(run) == ["pretrain-30.json", "pretrain-35.json", "pretrain-final.json"]
    for name in names(run) + names(run, "finetune"):
        verify_checkpoint(run / "checkpoints" / name)


def test_the_default_keeps_three(tmp_path):
    run = tmp_path / "run"
    assert main(["--out", str(run), *TINY, "--stage", "pretrain", "--train.checkpoint_every", "5"]) == 0
    assert names(run) == ["pretrain-25.json", "pretrain-30.json", "pretrain-35.json", "pretrain-final.json"]


def test_a_warmup_longer_than_the_stage_is_one_warning_line(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "run"), *TINY, "--stage", "pretrain", "--train.warmup_steps", "50"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == ["python -m graphpath.train: warning: [train] warmup_steps (50) exceeds steps (40): the "
                        "learning rate stops at 0.8 of its peak lr = 0.001, never reaching it"]


def test_the_page_names_a_damaged_checkpoint(tmp_path, capsys):
    from blog.__main__ import main as blog

    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    weights = run / "checkpoints" / "finetune-final.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # cut inside its header
    assert blog([str(run), "--out", str(tmp_path / "page")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"model_parameters ({weights} is damaged" in err


@pytest.mark.parametrize("argv, needle", [
    (["graphpath.perturb", "--model", "handcrafted", "--n", "4", "--seeds", "0,0,1"], "0 repeats in [0, 0, 1]"),
    (["graphpath.basin", "handcrafted", "--n", "4", "--seeds", "1", "1"], "1 repeats in [1, 1]"),
    (["graphpath.train", "--seeds", "0,1,0"], "--seeds must be distinct"),
])
def test_a_seed_given_twice_is_refused(tmp_path, capsys, argv, needle):
    from graphpath.analysis.basin import main as basin
    from graphpath.analysis.perturb import main as perturb

    command = {"graphpath.perturb": perturb, "graphpath.basin": basin, "graphpath.train": main}[argv[0]]
    assert command([*argv[1:], "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_a_study_with_a_seed_twice_is_refused(tmp_path, capsys):
    from experiments.partial import main as partial

    config = tmp_path / "partial.toml"
    config.write_text(FIXTURE.parent.parent.parent.joinpath("experiments", "partial.toml").read_text()
                      .replace("seeds = [0, 1, 2]", "seeds = [0, 1, 1]").replace("seeds = [0]", "seeds = [0, 0]"))
    assert partial(["--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "seeds must be distinct" in capsys.readouterr().err


def test_runs_pooled_twice_are_refused(tmp_path, capsys):
    from graphpath.evaluation.suite import main as evaluate

    run = tmp_path / "run"
    assert main(["--out", str(run), *TINY, "--stage", "pretrain"]) == 0
    assert evaluate(["--runs", str(run), f"{run}/", "--out", str(tmp_path / "pooled")]) == 2
    assert f"run {run} is given twice" in capsys.readouterr().err
    shutil.copytree(run, tmp_path / "copy")  # another directory, the same seed
    assert evaluate(["--runs", str(run), str(tmp_path / "copy"), "--out", str(tmp_path / "pooled")]) == 2
    assert "runs to pool must be different seeds; seed 0 is in" in capsys.readouterr().err
    assert not (tmp_path / "pooled").exists()


def test_a_torchrun_run_is_told_the_torchrun_command(monkeypatch, tmp_path):
    import torch

    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    two = Runtime(torch.device("cpu"), rank=0, world=2)
    assert two.resume_command(tmp_path) == (f"torchrun --standalone --nproc-per-node 2 -m graphpath.train "
                                            f"--out {tmp_path} --resume")
    four = Runtime(torch.device("cpu"), rank=0, world=4)
    assert four.resume_command(tmp_path).startswith("torchrun --nnodes 2 --nproc-per-node 2 -m graphpath.train")
    assert Runtime(torch.device("cpu")).resume_command(tmp_path) == f"python -m graphpath.train --out {tmp_path} --resume"
