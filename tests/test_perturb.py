"""`graphpath.analysis.perturb`: perturbations do what they say, recovery works, the CLI checks its input."""
from __future__ import annotations

import json

import pytest
import torch

from data_gen import sample, study_presets
from graphpath.analysis import perturb as P
from handcrafted import build_bfs_transformer


def data(n: int, size: int, seed: int):
    spec = study_presets(n_max=n, finetune_n_max=min(7, n), small_target=min(7, n))["test-any-large"]
    return spec, sample(spec, size, seed)


@pytest.mark.parametrize("kind,group", [("all", None), ("group", "blocks.2.*")])
def test_sigma_zero_changes_nothing(kind, group):
    model = build_bfs_transformer(5)
    _, batch = data(5, 400, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss_before = P.held_out_loss(model, batch)
    touched = P.perturb_(model, kind, 0.0, seed=3, group=group)
    assert touched and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert P.held_out_loss(model, batch) == loss_before
    assert loss_before < 1e-6


def test_group_touches_only_its_parameters():
    model = build_bfs_transformer(5)
    before = {k: v.clone() for k, v in model.named_parameters()}
    touched = P.perturb_(model, "group", 0.5, seed=0, group="blocks.2.attn.*")
    assert set(touched) == {"blocks.2.attn.W_Q", "blocks.2.attn.W_K", "blocks.2.attn.W_V", "blocks.2.attn.W_O"}
    for name, p in model.named_parameters():
        assert torch.equal(before[name], p.detach()) == (name not in touched)


def test_replace_raises_loss_and_is_seeded():
    _, batch = data(5, 400, 2)
    chosen = []
    for seed in range(4):
        model = build_bfs_transformer(5)
        (name,) = P.perturb_(model, "replace", 1.0, seed=seed)
        chosen.append(name)
        assert P.held_out_loss(model, batch) > 1e-2, name  # the study's perturbation hurts
        twin = build_bfs_transformer(5)
        P.perturb_(twin, "replace", 1.0, seed=seed)
        assert torch.equal(dict(twin.named_parameters())[name], dict(model.named_parameters())[name])
    assert len(set(chosen)) > 1  # the seed picks the matrix


def test_absolute_scale_draws_noise_of_that_size():
    model = build_bfs_transformer(6)
    (name,) = P.perturb_(model, "replace", 1.0, seed=5, scale="absolute")
    weight = dict(model.named_parameters())[name].detach()
    assert abs(weight.std().item() - 1.0) < 0.15 and abs(weight.mean().item()) < 0.15, name
    twin = build_bfs_transformer(6)
    (same,) = P.perturb_(twin, "replace", 2.0, seed=5, scale="absolute")
    assert same == name and torch.allclose(dict(twin.named_parameters())[name].detach(), 2 * weight)


def test_recovery_brings_loss_down_on_handcrafted_n5():
    spec, eval_batch = data(5, 512, 20_000)
    cfg = P.PerturbConfig(model="handcrafted", n=5, steps=60, eval_every=20, lr=3e-3, batch_size=128)
    model = build_bfs_transformer(5)
    P.perturb_(model, "replace", 0.3, seed=2)
    curve = P.recover(model, spec, eval_batch, cfg, seed=2, device=torch.device("cpu"))
    after, best = curve[0][1], min(loss for _, loss in curve[1:])
    assert after > 0.5, curve
    assert best < 0.25 * after, curve


def test_basin_radius_is_largest_sigma_with_half_recovered():
    runs = [{"sigma": s, "recovered": r} for s, r in
            [(0.1, True), (0.1, True), (0.3, True), (0.3, False), (1.0, False), (1.0, False), (3.0, True),
             (3.0, False), (3.0, False)]]
    assert P.recovery_rates(runs) == {"0.1": 1.0, "0.3": 0.5, "1.0": 0.0, "3.0": pytest.approx(1 / 3)}
    assert P.basin_radius(runs) == 0.3
    assert P.basin_radius([{"sigma": 0.1, "recovered": False}]) is None


def run_cli(args, capsys):
    code = P.main(args)
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize("args,needle", [
    (["--model", "mystery", "--n", "8"], "unknown model"),
    (["--model", "handcrafted", "--n", "2"], "--n in [3, 64]"),
    (["--model", "handcrafted", "--n", "65"], "--n in [3, 64]"),
    (["--model", "handcrafted"], "--n in [3, 64]"),
    (["--model", "handcrafted", "--n", "5", "--sigmas=-0.1,1"], "sigma"),
    (["--model", "handcrafted", "--n", "5", "--sigmas", ""], "empty sweep"),
    (["--model", "handcrafted", "--n", "5", "--seeds", ""], "empty sweep"),
    (["--model", "handcrafted", "--n", "5", "--steps", "0"], "steps"),
    (["--model", "handcrafted", "--n", "5", "--steps", "-3"], "steps"),
    (["--model", "handcrafted", "--n", "5", "--kind", "shake"], "unknown perturbation kind"),
    (["--model", "handcrafted", "--n", "5", "--kind", "group"], "needs --group"),
    (["--model", "handcrafted", "--n", "5", "--kind", "group", "--group", "nope.*", "--steps", "1"], "matches no parameter"),
    (["--model", "handcrafted", "--n", "5", "--optimizer", "lbfgs"], "unknown optimizer"),
    (["--model", "handcrafted", "--n", "5", "--scale", "huge"], "unknown scale"),
    (["--model", "handcrafted", "--n", "5", "--clip", "0"], "clip"),
    (["--model", "handcrafted", "--n", "5", "--device", "gpu9"], "unknown device"),
    (["--model", "handcrafted", "--n", "5", "--threshold", "0"], "threshold"),
    (["--model", "handcrafted", "--n", "5", "--config", "/nonexistent.toml"], "cannot read config"),
    (["--model", "handcrafted", "--n", "5", "--data", "nope"], "unknown data set"),
    ([], "--model is required"),
    (["--model", "handcrafted", "--n", "five"], "invalid int value"),
    (["--model", "handcrafted", "--n", "5", "--sigmas", "a,b"], "comma-separated"),
])
def test_bad_input_exits_2_with_one_line(args, needle, capsys, tmp_path):
    code, err = run_cli(args + ["--out", str(tmp_path / "p.json"), "--quiet"], capsys)
    assert code == 2 and needle in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "p.json").exists()


def test_unknown_config_key_exits_2(capsys, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[perturb]\nsigmass = [0.1]\n')
    code, err = run_cli(["--config", str(config), "--model", "handcrafted", "--n", "5", "--quiet"], capsys)
    assert code == 2 and "sigmass" in err and err.count("\n") == 1


def test_presets_are_valid_sweep_configs():
    from pathlib import Path
    from graphpath_common.toml import tomllib

    for path in sorted(Path("experiments").glob("perturb*.toml")):
        table = tomllib.loads(path.read_text())["perturb"]
        cfg = P.PerturbConfig(model="handcrafted", n=8, **table)
        assert cfg.steps >= 1, path
    study = tomllib.loads(Path("experiments/perturb-study.toml").read_text())["perturb"]
    assert study["kind"] == "replace" and study["scale"] == "absolute" and study["sigmas"] == [1.0]
    assert study["lr"] == 1e-6 and study["batch_size"] == 512


def _learned_run(directory, max_vertices: int, data_n_max: int):
    from graphpath.core.checkpoint import save_checkpoint
    from graphpath.core.model import ModelConfig, build_model as build_learned

    config = ModelConfig(max_vertices=max_vertices, d_model=16, n_layers=1, n_heads=2)
    model = build_learned(config)
    info = {"model_config": config.to_dict(), "data": {"n_max": data_n_max, "finetune_n_max": 5, "small_target": 5},
            "step": 0, "seed": 0, "stage": "pretrain"}
    save_checkpoint(directory / "checkpoints", "pretrain-final", model, info)
    return directory


def test_checkpoint_errors_exit_2(capsys, tmp_path):
    code, err = run_cli(["--model", str(tmp_path / "absent"), "--quiet"], capsys)
    assert code == 2 and "unknown model" in err
    (tmp_path / "empty").mkdir()
    code, err = run_cli(["--model", str(tmp_path / "empty"), "--quiet"], capsys)
    assert code == 2 and "no checkpoint" in err and err.count("\n") == 1
    run = _learned_run(tmp_path / "mismatch", max_vertices=8, data_n_max=6)
    code, err = run_cli(["--model", str(run), "--quiet"], capsys)
    assert code == 2 and "max_vertices" in err and err.count("\n") == 1
    code, err = run_cli(["--model", str(run), "--n", "8", "--quiet"], capsys)
    assert code == 2 and "--n is only for" in err


@pytest.mark.slow
def test_cli_end_to_end_handcrafted_and_learned(capsys, tmp_path):
    out = tmp_path / "hand" / "perturb.json"
    config = tmp_path / "sweep.toml"
    config.write_text('[perturb]\nkind = "replace"\nsigmas = [0.0, 0.5]\nseeds = [0, 1]\nsteps = 6\n'
                      'eval_every = 3\neval_size = 64\nbatch_size = 32\n')
    code, err = run_cli(["--config", str(config), "--model", "handcrafted", "--n", "5", "--out", str(out),
                         "--edge-tokens", "--quiet"], capsys)
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["schema"] == 1 and doc["steps"] == 6 and doc["loss_before"] < 1e-6
    assert doc["target"]["model"] == "handcrafted" and doc["target"]["n"] == 5 and doc["settings"]["kind"] == "replace"
    assert doc["target"]["size"]["edge_tokens"] and doc["settings"]["edge_tokens"]
    assert [(r["sigma"], r["seed"]) for r in doc["runs"]] == [(0.0, 0), (0.0, 1), (0.5, 0), (0.5, 1)]
    for run in doc["runs"]:
        assert [step for step, _ in run["curve"]] == [0, 3, 6]
        assert run["loss_after"] == run["curve"][0][1] and run["recovered"] == (run["recovered_step"] is not None)
        assert run["recovered"] == any(v is not None and v <= doc["threshold"] for _, v in run["curve"])
    assert set(doc["recovery_rate"]) == {"0.0", "0.5"}
    rates = {}
    for run in doc["runs"]:  # recomputed from the runs by hand, not through basin_radius
        rates.setdefault(run["sigma"], []).append(run["recovered"])
    half = [s for s, r in rates.items() if sum(r) >= len(r) / 2]
    assert doc["basin_radius"] == (max(half) if half else None)
    for path in doc["figures"]:
        assert (out.parent / "figures" / path.split("/")[-1]).stat().st_size > 1000
    run = _learned_run(tmp_path / "learned", max_vertices=6, data_n_max=6)
    code, err = run_cli(["--model", str(run), "--kind", "all", "--sigmas", "0,0.1", "--seeds", "0", "--steps", "2",
                         "--eval-size", "32", "--batch-size", "16", "--with-handcrafted", "--quiet"], capsys)
    assert code == 0, err
    doc = json.loads((run / "perturb.json").read_text())
    hand = json.loads((run / "perturb-handcrafted.json").read_text())
    assert doc["target"]["stage"] == "pretrain" and doc["data"]["target"] == "fixed"
    assert hand["target"]["n"] == 6 and hand["loss_before"] < 1e-6 and hand["data"] == doc["data"]
    first = doc["runs"][0]
    assert first["loss_after"] == pytest.approx(doc["loss_before"], rel=1e-6)  # sigma 0, kind all
    assert len(doc["figures"]) == 3 and all((run / "figures" / p.split("/")[-1]).is_file() for p in doc["figures"])
