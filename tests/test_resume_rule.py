"""What a resumed run may change (graphpath.training.resume): config.toml never claims a value the
run did not use; a resumable change holds from the step the stage resumed at and is recorded."""
import dataclasses
import json

import pytest

from graphpath.core.config import load_config
from graphpath.training.run import main
from graphpath.training.stage import lr_factor

# Graphs n <= 5, a 1-layer 16-wide model, 40 + 10 steps: a run takes about a second.
TINY = ["--data.n_max", "5", "--data.finetune_n_max", "4", "--data.small_target", "4",
        "--data.pretrain_threshold", "3", "--data.finetune_threshold", "2", "--model.d_model", "16",
        "--model.n_layers", "1", "--train.batch_size", "32", "--train.steps", "40", "--train.warmup_steps", "5",
        "--train.min_lr", "0",
        "--train.log_every", "5", "--train.eval_every", "20", "--train.eval_size", "64",
        "--train.checkpoint_every", "10", "--finetune.batch_size", "32", "--finetune.steps", "10",
        "--finetune.eval_size", "64", "--finetune.eval_every", "5", "--finetune.log_every", "5",
        "--threads", "1", "--no-eval", "--no-figures"]


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def lr_at(run, stage, step):
    return next(m["lr"] for m in metrics(run) if m["stage"] == stage and m["step"] == step)


@pytest.fixture
def stopped(tmp_path):
    """A run stopped at pre-training step 25 (checkpoints 10, 20, 25)."""
    run = tmp_path / "run"
    assert main(["--out", str(run), *TINY, "--stop-after", "25"]) == 0
    return run


def test_a_new_lr_holds_from_the_resumed_step_and_is_recorded(stopped, tmp_path):
    assert main(["--out", str(stopped), "--resume", "--train.lr", "1e-2", "--no-eval", "--no-figures"]) == 0
    config = load_config(stopped / "config.toml")
    assert config.train.lr == 0.01
    # the line of step 30 records the lr its step used: optimizer step index 29 of the new schedule
    assert lr_at(stopped, "pretrain", 30) == pytest.approx(0.01 * lr_factor(29, config.train), rel=1e-12)
    old = dataclasses.replace(config.train, lr=0.001)  # the schedule before the resume
    assert lr_at(stopped, "pretrain", 25) == pytest.approx(0.001 * lr_factor(24, old), rel=1e-12)
    (record,) = json.loads((stopped / "resumes.json").read_text())
    assert record["stage"] == "pretrain" and record["step"] == 25
    assert record["changed"] == {"train.lr": [0.001, 0.01]}
    # an unchanged resume of the same stop keeps the old peak: the override is what moved it
    same = tmp_path / "same"
    assert main(["--out", str(same), *TINY, "--stop-after", "25"]) == 0
    assert main(["--out", str(same), "--resume", "--no-eval", "--no-figures"]) == 0
    assert lr_at(stopped, "pretrain", 30) == pytest.approx(10 * lr_at(same, "pretrain", 30), rel=1e-12)
    assert not (same / "resumes.json").exists()


def test_a_change_that_would_not_hold_is_refused_in_one_line(stopped, capsys):
    before = {name: (stopped / name).read_bytes() for name in ("config.toml", "metrics.jsonl")}
    capsys.readouterr()
    assert main(["--out", str(stopped), "--resume", "--train.batch_size", "16", "--model.d_model", "32",
                 "--train.lr", "1e-2", "--no-eval", "--no-figures"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "train.batch_size (32 -> 16)" in err and "model.d_model (16 -> 32)" in err
    assert "train.lr" not in err.split("cannot change now:")[1].split(".")[0]  # lr may change; it is not named
    assert {name: (stopped / name).read_bytes() for name in before} == before  # nothing rewritten
    assert not (stopped / "resumes.json").exists()


def test_steps_may_grow_but_not_fall_below_the_step_reached(stopped, capsys):
    assert main(["--out", str(stopped), "--resume", "--train.steps", "20", "--no-eval", "--no-figures"]) == 2
    assert "pretrain has reached step 25" in capsys.readouterr().err
    assert main(["--out", str(stopped), "--resume", "--train.steps", "50", "--stage", "pretrain",
                 "--no-eval", "--no-figures"]) == 0
    assert json.loads((stopped / "checkpoints" / "pretrain-final.json").read_text())["step"] == 50
    assert max(m["step"] for m in metrics(stopped) if m["stage"] == "pretrain") == 50


def test_a_finished_stage_is_fixed_and_a_stage_not_begun_is_free(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["--out", str(run), *TINY, "--stage", "pretrain"]) == 0
    # fine-tuning has not begun: its table and its [data] keys take new values
    assert main(["--out", str(run), "--stage", "finetune", "--finetune.lr", "3e-4", "--data.finetune_n_max", "3",
                 "--no-eval", "--no-figures", "--threads", "1"]) == 0
    config = load_config(run / "config.toml")
    assert config.finetune.lr == 3e-4 and config.data.finetune_n_max == 3
    assert lr_at(run, "finetune", 5) == pytest.approx(3e-4 * lr_factor(4, config.finetune), rel=1e-12)
    assert not (run / "resumes.json").exists()  # nothing changed under a stage in progress
    # pre-training has finished: even its lr is fixed now
    capsys.readouterr()
    assert main(["--out", str(run), "--resume", "--train.lr", "1e-2", "--no-eval", "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert "pretrain finished" in err and "train.lr (0.001 -> 0.01)" in err
    assert load_config(run / "config.toml").train.lr == 0.001


def test_pack_and_batch_ramp_are_fixed_and_time_budget_and_validation_size_may_change(stopped, capsys):
    assert load_config(stopped / "config.toml").train.pack  # small.toml packs
    capsys.readouterr()
    assert main(["--out", str(stopped), "--resume", "--train.pack", "false", "--train.batch_ramp", "[[30, 64]]",
                 "--no-eval", "--no-figures"]) == 2
    err = capsys.readouterr().err
    refused = err.split("cannot change now:")[1].split(". On resume")[0]
    assert "train.pack" in refused and "train.batch_ramp" in refused, err
    assert main(["--out", str(stopped), "--resume", "--train.time_budget", "600", "--train.validation_size", "32",
                 "--stage", "pretrain", "--no-eval", "--no-figures"]) == 0
    (record,) = json.loads((stopped / "resumes.json").read_text())
    assert record["changed"] == {"train.time_budget": [None, 600], "train.validation_size": [None, 32]}
    assert [m["step"] for m in metrics(stopped) if "val_loss" in m] == [40]  # scored from the resumed step on


def test_ema_decay_is_fixed_once_the_stage_has_started(stopped, capsys):
    capsys.readouterr()
    assert main(["--out", str(stopped), "--resume", "--train.ema_decay", "0.99", "--no-eval", "--no-figures"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "train.ema_decay (null -> 0.99)" in err
