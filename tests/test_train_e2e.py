"""The default command end to end (pre-train, fine-tune, score, figures) at a reduced size."""
import json

import pytest
import torch

import graphpath.training.run as train_cli
from data_gen import study_presets
from graphpath_common.toml import tomllib
from graphpath.core.checkpoint import load_model
from graphpath.evaluation.suite import evaluate_run
from graphpath.training.phases import curve_steps


@pytest.mark.slow
def test_default_command_at_a_reduced_size(tmp_path, monkeypatch):
    scored = {}

    def small_score(out, device):
        scored["out"] = out
        evaluate_run(out, device=str(device), size=256, grid_size=16, sets=["study"], cache_dir=None,
                     progress=False, figures=False)

    monkeypatch.setattr(train_cli, "score", small_score)
    monkeypatch.setenv("GRAPHPATH_NO_PNG", "1")  # PNG export is exercised separately; keep this fast
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path / "small"
    try:
        code = train_cli.main(["--out", str(out), "--model.n_layers", "2", "--model.d_model", "32",
                               "--train.steps", "60", "--train.eval_every", "30", "--train.eval_size", "512",
                               "--train.batch_size", "128", "--train.warmup_steps", "10", "--train.checkpoint_every", "40",
                               "--train.log_every", "10",
                               "--finetune.steps", "10", "--finetune.eval_size", "512", "--finetune.batch_size", "128"])
    finally:
        torch.set_num_threads(before)
    assert code == 0 and scored["out"] == out
    config = tomllib.loads((out / "config.toml").read_text())
    presets = study_presets(**config["data"])  # the resolved [data] table rebuilds small.toml's sizes
    assert (presets["pretrain"].max_vertices, presets["finetune"].n_max) == (8, 5)
    assert config["data"]["n_max"] == 8 and config["train"]["steps"] == 60
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [m["step"] for m in metrics if m["stage"] == "pretrain"]  # every 10 steps, and the detector's curve
    assert logged == sorted(set(range(10, 61, 10)) | curve_steps(60, 30, warmup=10))
    assert set(range(2, 11, 2)) <= set(logged)  # the warm-up, every other step
    assert [m["step"] for m in metrics if m["stage"] == "finetune"] == [0] + list(range(5, 11, 5))
    phases = json.loads((out / "phases.json").read_text())
    assert set(phases) == {"phase_changes", "curves_checked", "detector", "settle", "finetune"}
    assert set(phases["settle"]["steps"]) == {"1", "2", "3"} and phases["settle"]["threshold"] == 0.1
    for name in ("pretrain-40", "pretrain-final", "finetune-final"):
        assert (out / "checkpoints" / f"{name}.safetensors").is_file()
    model, info = load_model(out)
    assert info["stage"] == "finetune" and info["step"] == 10 and model.config.n_layers == 2
    for name in ("loss", "label_loss-pretrain", "confusion-pretrain", "label_loss-finetune", "confusion-finetune"):
        assert (out / "figures" / f"{name}.html").is_file()
    doc = json.loads((out / "eval.json").read_text())
    learned = doc["models"]["learned"]["results"]
    assert learned["pretrain"]["count"] == 256 and 0 <= learned["pretrain"]["accuracy"] <= 1
