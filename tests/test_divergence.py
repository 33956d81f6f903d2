"""A diverging run: only checkpoints with a finite held-out loss are good, the stop message's
command works when followed, no JSON writer emits NaN, and an untrainable lr is refused."""
import json
import math
import shlex

import pytest
import torch

from graphpath.core.checkpoint import resume_checkpoint
from graphpath.training import stage
from graphpath.training.run import main
from graphpath_common.jsonfile import json_line, json_text

from test_resume_rule import TINY


def diverge_at(monkeypatch, what: str, step: int):
    """Make the batch loss ("loss") or the held-out loss ("held-out") NaN from `step` on."""
    if what == "loss":
        real = stage.compute_loss
        seen = {"n": 0}

        def compute_loss(model, batch, buckets, runtime):
            loss, pred = real(model, batch, buckets, runtime)
            seen["n"] += 1
            return (loss * math.nan if seen["n"] >= step else loss), pred
        monkeypatch.setattr(stage, "compute_loss", compute_loss)
    else:
        real = stage.StageLoop.heldout_loss

        def heldout_loss(self):
            return math.nan if self.step >= step else real(self)
        monkeypatch.setattr(stage.StageLoop, "heldout_loss", heldout_loss)


def follow(err: str) -> list[str]:
    """The argv of the command the stop message says to run."""
    command = err.split("Continue with a lower lr: ")[1].strip()
    assert command.startswith("python -m graphpath.train ")
    return shlex.split(command)[3:]


def test_the_stop_names_the_last_good_checkpoint_and_its_command_works(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    diverge_at(monkeypatch, "loss", 23)
    assert main(["--out", str(run), *TINY]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "pretrain loss became nan at step 23" in err and "last good checkpoint: checkpoints/pretrain-20" in err
    good = json.loads((run / "checkpoints" / "pretrain-20.json").read_text())
    assert math.isfinite(good["heldout_loss"])
    monkeypatch.undo()
    argv = follow(err)
    assert argv[-2:] == ["--train.lr", "0.0001"]
    assert main([*argv, "--no-eval", "--no-figures", "--threads", "1"]) == 0
    assert (run / "checkpoints" / "finetune-final.json").is_file()
    (record,) = json.loads((run / "resumes.json").read_text())
    assert record["step"] == 20 and record["changed"] == {"train.lr": [0.001, 0.0001]}


def test_weights_that_already_diverged_are_never_a_checkpoint(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    diverge_at(monkeypatch, "held-out", 15)  # the step-20 weights give NaN: pretrain-20 is not written
    assert main(["--out", str(run), *TINY]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "held-out loss became nan at step 20" in err and "checkpoints/pretrain-10" in err
    assert sorted(p.name for p in (run / "checkpoints").glob("*.json")) == ["pretrain-10.json"]
    assert resume_checkpoint(run, "pretrain").name == "pretrain-10.json"
    monkeypatch.undo()
    assert main([*follow(err), "--no-eval", "--no-figures", "--threads", "1"]) == 0


def test_with_no_good_checkpoint_the_command_restarts_the_stage(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    diverge_at(monkeypatch, "loss", 3)
    assert main(["--out", str(run), *TINY]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no good pretrain checkpoint yet, so the stage restarts from step 0" in err
    monkeypatch.undo()
    assert main([*follow(err), "--stage", "pretrain", "--no-eval", "--no-figures", "--threads", "1"]) == 0
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[0] == 5  # the failed attempt's lines are gone
    assert not (run / "resumes.json").exists()  # nothing had started: the new lr holds from step 0


def test_a_checkpoint_recording_a_nonfinite_loss_is_not_resumed_from(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["--out", str(run), *TINY, "--stop-after", "25"]) == 0
    newest = run / "checkpoints" / "pretrain-25.json"
    info = json.loads(newest.read_text())
    newest.write_text(json.dumps({**info, "heldout_loss": None}))  # as written for a diverged model
    capsys.readouterr()
    config = (run / "config.toml").read_bytes()
    assert main(["--out", str(run), "--resume", "--train.lr", "1e-4", "--no-eval", "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert "non-finite held-out loss" in err and "previous good checkpoint pretrain-20" in err
    assert (run / "config.toml").read_bytes() == config and not (run / "resumes.json").exists()


@pytest.mark.parametrize("value", ["1e38", "inf", "nan", "-1e-3", "0"])
def test_an_lr_that_cannot_train_is_refused_before_anything_is_written(tmp_path, capsys, value):
    assert main(["--out", str(tmp_path / "run"), *TINY, "--train.lr", value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train: lr must" in err
    assert not (tmp_path / "run").exists()


def test_json_writers_write_nonfinite_numbers_as_null(tmp_path):
    doc = {"loss": math.nan, "curve": [[1, math.inf], (2, -math.inf)], "ok": 0.5, "n": 3, "name": "x"}
    assert json.loads(json_text(doc)) == {"loss": None, "curve": [[1, None], [2, None]], "ok": 0.5, "n": 3,
                                          "name": "x"}
    assert "NaN" not in json_line(doc) and "Infinity" not in json_line(doc)
    log = stage.MetricsLog(tmp_path / "metrics.jsonl", True)
    log.write({"stage": "pretrain", "step": 1, "loss": math.nan, "eval_loss": math.inf})
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"stage": "pretrain", "step": 1, "loss": None,
                                                                     "eval_loss": None}


def test_evaluating_a_diverged_model_stops_in_one_line_writing_nothing(tmp_path, capsys):
    from graphpath.core.checkpoint import load_model, read_info, save_checkpoint
    from graphpath.evaluation.suite import main as evaluate

    run = tmp_path / "run"
    assert main(["--out", str(run), *TINY, "--stage", "pretrain"]) == 0
    final = run / "checkpoints" / "pretrain-final.json"
    model, _ = load_model(final)
    with torch.no_grad():
        model.readout.weight.fill_(math.nan)
    info = {k: v for k, v in read_info(final).items() if k not in ("sha256", "train_state")}
    save_checkpoint(final.parent, "pretrain-final", model, info)
    capsys.readouterr()
    assert evaluate([str(run), "--size", "64", "--grid-size", "4", "--quiet", "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "predicts NaN or infinity" in err
    assert not (run / "eval.json").exists() and not (run / "report.md").exists()
    assert not (run / "figures").exists()  # the run trained without figures; evaluation drew none
