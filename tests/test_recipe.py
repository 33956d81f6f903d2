"""Training recipes for a CPU: a wall-clock time budget that anneals and stops in time (and carries
over a resume), a batch-size ramp (exact on resume), the validation loss beside the held-out loss,
and seed groups trained side by side in the sweep runner's process pool with the same bytes as one
seed at a time."""
import json

import pytest
import torch
from safetensors.torch import load_file

from graphpath.core.config import ConfigError, StageConfig
from graphpath.training.run import main
from graphpath.training.stage import lr_factor

from test_train import TINY, read_metrics  # graphs n <= 5, a 1-layer 16-wide model: a step takes milliseconds


def test_the_decay_follows_the_budget_fraction_when_given():
    stage = StageConfig(steps=100, lr=1e-3, min_lr=1e-5, warmup_steps=10, decay="cosine", time_budget=60.0)
    assert lr_factor(3, stage, 0.9) == lr_factor(3, stage) == 4 / 10  # warmup counts steps
    assert lr_factor(50, stage, 0.0) == pytest.approx(1.0)
    assert lr_factor(50, stage, 1.0) == pytest.approx(1e-2)  # min_lr / lr, whatever the step
    assert lr_factor(50, stage, 0.5) == pytest.approx(lr_factor(55, stage))  # half way either way
    for bad in (0, -1.0, "soon", True):
        with pytest.raises(ConfigError, match="time_budget"):
            StageConfig(time_budget=bad)
    with pytest.raises(ConfigError, match="time_budget"):
        StageConfig(steps=10, time_budget=5.0, decay="step", decay_step=5)


def test_a_time_budget_anneals_and_ends_the_stage_in_time(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--out", str(out), "--stage", "pretrain", *TINY, "--train.steps", "1000000",
                 "--train.time_budget", "3", "--train.min_lr", "1e-6"]) == 0
    records = read_metrics(out)
    info = json.loads((out / "checkpoints" / "pretrain-final.json").read_text())
    assert 4 < info["step"] < 1000000 and 3.0 <= info["elapsed_s"] < 10.0  # one step and one evaluation past it
    assert records[-1]["step"] == info["step"] and "eval_loss" in records[-1]  # the last step is evaluated
    peak = max(m["lr"] for m in records)
    assert peak > 0.5e-3 and records[-1]["lr"] < 0.1 * peak  # annealed within the budget
    assert f"pretrain: {info['step']} steps" in capsys.readouterr().err  # the step count reached is reported


def test_a_resumed_stage_keeps_spending_the_same_budget(tmp_path):
    out = tmp_path / "run"
    common = ["--stage", "pretrain", *TINY, "--train.steps", "1000000", "--train.time_budget", "30",
              "--train.checkpoint_every", "1000"]
    assert main(["--out", str(out), *common, "--stop-after", "4"]) == 0
    path = out / "checkpoints" / "pretrain-4.json"
    info = json.loads(path.read_text())
    assert 0 < info["elapsed_s"] < 30
    info["elapsed_s"] = 29.0  # as if 29 of the 30 seconds had gone before the interruption
    path.write_text(json.dumps(info))
    assert main(["--out", str(out), "--resume", "--no-eval", "--no-figures"]) == 0
    final = json.loads((out / "checkpoints" / "pretrain-final.json").read_text())
    assert 30.0 <= final["elapsed_s"] < 40.0
    records = read_metrics(out)
    assert records[-1]["lr"] < 0.1 * 1e-3  # it resumed near the end of the schedule


def test_a_batch_ramp_grows_the_batches_and_resumes_bit_identically(tmp_path):
    common = ["--stage", "pretrain", *TINY, "--train.steps", "9", "--train.batch_ramp", "[[3, 128], [6, 192]]",
              "--train.checkpoint_every", "100", "--train.log_every", "1"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(["--out", str(whole), *common]) == 0
    examples = [m["examples"] for m in read_metrics(whole)]
    assert examples == [64, 128, 192, 320, 448, 576, 768, 960, 1152]
    assert main(["--out", str(parts), *common, "--stop-after", "4"]) == 0  # across the first step up
    assert main(["--out", str(parts), "--resume", "--stage", "pretrain", "--no-eval", "--no-figures"]) == 0
    a = load_file(str(whole / "checkpoints" / "pretrain-final.safetensors"))
    b = load_file(str(parts / "checkpoints" / "pretrain-final.safetensors"))
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert [m["examples"] for m in read_metrics(parts)] == examples
    for bad in ([[0, 64]], [[5, 64], [4, 96]], [[3, 0]], [[20, 64]], [3, 64]):
        with pytest.raises(ConfigError, match="batch_ramp"):
            StageConfig(steps=10, batch_ramp=bad)
    assert [StageConfig(steps=10, batch_size=8, batch_ramp=[[2, 16]]).batch_at(s) for s in (0, 1, 2, 9)] == [8, 8, 16, 16]


def test_validation_loss_is_scored_beside_the_held_out_loss(tmp_path):
    out = tmp_path / "run"
    assert main(["--out", str(out), "--stage", "pretrain", *TINY, "--train.steps", "8",
                 "--train.validation_size", "64"]) == 0
    evaluated = [m for m in read_metrics(out) if "eval_loss" in m]
    assert [m["step"] for m in evaluated] == [4, 8]
    assert all("val_loss" in m and m["val_loss"] != m["eval_loss"] for m in evaluated)  # other graphs
    assert main(["--out", str(tmp_path / "plain"), "--stage", "pretrain", *TINY, "--train.steps", "4"]) == 0
    assert not any("val_loss" in m for m in read_metrics(tmp_path / "plain"))


def test_the_training_optimizer_takes_adamws_fused_step_on_cpu():
    from graphpath.core.model import GraphTransformer, ModelConfig
    from graphpath.training.stage import stage_optimizer

    model = GraphTransformer(ModelConfig(d_model=16, n_layers=1, n_heads=2, max_vertices=5))
    assert stage_optimizer(model, StageConfig()).defaults["fused"] is True
    assert stage_optimizer(model.double(), StageConfig()).defaults["fused"] is None  # float64: the plain step


def test_a_packed_run_is_the_same_bytes_for_its_seed_and_resumes_bit_identically(tmp_path, monkeypatch):
    """The main job's recipe in small: packed layout, fused AdamW, a batch-size ramp, interrupted
    inside each stage and resumed, against the same seed run straight through (twice)."""
    from graphpath.core.model import GraphTransformer

    packed = []
    forward = GraphTransformer._forward_packed
    monkeypatch.setattr(GraphTransformer, "_forward_packed",
                        lambda self, batch: packed.append(len(batch)) or forward(self, batch))
    common = [*TINY, "--train.steps", "9", "--train.batch_ramp", "[[4, 96]]", "--train.checkpoint_every", "100",
              "--finetune.steps", "6", "--finetune.lr", "1e-3", "--finetune.checkpoint_every", "100",
              "--train.pack", "true", "--finetune.pack", "true"]
    runs = {name: tmp_path / name for name in ("whole", "again", "parts")}
    assert main(["--out", str(runs["whole"]), *common]) == 0
    eval_size = int(TINY[TINY.index("--train.eval_size") + 1])  # held-out scoring is packed too
    assert [n for n in packed if n != eval_size][:5] == [64, 64, 64, 64, 96]  # training steps, ramped at step 4
    assert main(["--out", str(runs["again"]), *common]) == 0
    assert main(["--out", str(runs["parts"]), *common, "--stop-after", "5"]) == 0  # past the ramp's step
    assert main(["--out", str(runs["parts"]), "--resume", "--stop-after", "6", "--no-eval", "--no-figures"]) == 0
    assert main(["--out", str(runs["parts"]), "--resume", "--no-eval", "--no-figures"]) == 0
    for name in ("pretrain-final", "finetune-final"):
        found = {run: load_file(str(path / "checkpoints" / f"{name}.safetensors")) for run, path in runs.items()}
        for run in ("again", "parts"):
            assert all(torch.equal(found["whole"][key], found[run][key]) for key in found["whole"]), (run, name)
    held = lambda run: [m["eval_loss"] for m in read_metrics(run) if "eval_loss" in m]
    assert held(runs["whole"]) == held(runs["parts"]) == held(runs["again"])


@pytest.mark.slow
def test_seeds_side_by_side_match_seeds_one_at_a_time(tmp_path):
    common = [*TINY, "--train.steps", "6", "--finetune.steps", "3", "--train.pack", "true"]
    assert main(["--out", str(tmp_path / "group"), "--seeds", "0,1", "--workers", "2", *common]) == 0
    for seed in (0, 1):
        alone = tmp_path / f"alone-{seed}"
        assert main(["--out", str(alone), "--seed", str(seed), "--threads", "1", *common]) == 0
        side = tmp_path / "group" / f"seed-{seed}"
        assert "pretrain: 6 steps" in (side / "train.log").read_text()
        for name in ("pretrain-final", "finetune-final"):
            a = load_file(str(alone / "checkpoints" / f"{name}.safetensors"))
            b = load_file(str(side / "checkpoints" / f"{name}.safetensors"))
            assert all(torch.equal(a[key], b[key]) for key in a), (seed, name)
