"""python -m graphpath.train on tiny configs: learning, exact resume, overrides, failures, fp32 loss."""
import json

import pytest
import torch
from safetensors.torch import load_file

from data_gen import sample, study_presets
from graphpath.training import stage as trainer
from graphpath.core.config import ConfigError, apply_overrides, from_dict, load_config, to_toml
from graphpath.training.run import DEFAULT_CONFIG, main
from graphpath.training.phases import curve_steps
from graphpath.training.stage import Runtime, compute_loss, lr_factor

# Graphs n <= 5, a 1-layer 16-wide model: a step takes milliseconds.
TINY = ["--data.n_max", "5", "--data.finetune_n_max", "4", "--data.small_target", "4",
        "--data.pretrain_threshold", "3", "--data.finetune_threshold", "2",
        "--model.d_model", "16", "--model.n_layers", "1",
        "--train.batch_size", "64", "--train.warmup_steps", "2", "--train.log_every", "2", "--train.eval_every", "4",
        "--train.eval_size", "256", "--finetune.batch_size", "64", "--finetune.log_every", "2",
        "--finetune.eval_every", "3", "--finetune.eval_size", "256", "--no-eval", "--no-figures"]


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_loss_falls_on_a_learnable_set(tmp_path):
    out = tmp_path / "run"
    code = main(["--out", str(out), "--stage", "pretrain", *TINY, "--train.steps", "120", "--train.lr", "3e-3",
                 "--train.eval_every", "120", "--train.log_every", "10"])
    assert code == 0
    records = read_metrics(out)
    assert records[-1]["loss"] < records[0]["loss"] / 4
    spec = study_presets(5, 4, 4, 3, 2)["pretrain"]
    mean_guess = sample(spec, 4096, 99).label.float()
    baseline = float(((mean_guess - mean_guess.mean()) ** 2).mean())  # predicting the mean label
    assert records[-1]["eval_loss"] < baseline / 3
    assert set(records[0]) >= {"stage", "step", "examples", "loss", "label_loss", "lr", "examples_per_s"}
    assert records[0]["examples"] == records[0]["step"] * 64
    # the phase detector's held-out curve: every other step through the warm-up, log-spaced from
    # step 1, then every eval
    curve = [m["step"] for m in records if "curve_label_loss" in m]
    assert curve == sorted(curve_steps(120, 120, warmup=2)) and curve[:3] == [1, 2, 3] and 120 in curve
    assert all(m["curve_loss"] > 0 for m in records if "curve_label_loss" in m)
    phases = json.loads((out / "phases.json").read_text())
    assert {c["label"] for c in phases["curves_checked"]} >= {"all"} and phases["detector"]["min_drop"] == 0.7


def weights(path):
    return load_file(str(path))


# with a weight average in both stages the checkpoints hold the average and carry the optimizer's
# weights (raw.*) and the average's step count, so the resumed run must still match bit for bit
@pytest.mark.parametrize("average", [[], ["--train.ema_decay", "0.9", "--finetune.ema_decay", "0.8"]],
                         ids=["plain", "ema"])
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, average):
    common = [*TINY, "--train.steps", "9", "--train.checkpoint_every", "4", "--finetune.steps", "6",
              "--finetune.lr", "1e-3", "--finetune.checkpoint_every", "100", *average]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(["--out", str(whole), *common]) == 0
    assert main(["--out", str(parts), *common, "--stop-after", "6"]) == 0  # inside pre-training
    assert not (parts / "checkpoints" / "pretrain-final.json").exists()
    assert main(["--out", str(parts), "--resume", "--stop-after", "3", "--no-eval", "--no-figures"]) == 0
    assert (parts / "checkpoints" / "pretrain-final.json").exists()
    assert not (parts / "checkpoints" / "finetune-final.json").exists()
    assert main(["--out", str(parts), "--resume", "--no-eval", "--no-figures"]) == 0
    for name in ("pretrain-final", "finetune-final"):
        a, b = weights(whole / "checkpoints" / f"{name}.safetensors"), weights(parts / "checkpoints" / f"{name}.safetensors")
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    steps = lambda run: [(m["stage"], m["step"]) for m in read_metrics(run)]
    assert steps(whole) == steps(parts)
    held = lambda run: [(m["eval_loss"], m.get("raw_eval_loss")) for m in read_metrics(run) if "eval_loss" in m]
    assert held(whole) == held(parts)
    phases = json.loads((parts / "phases.json").read_text())
    assert set(phases["finetune"]) == {"loss_before", "loss_after"}
    final = json.loads((parts / "checkpoints" / "pretrain-final.json").read_text())
    scored = [m for m in read_metrics(parts) if m["stage"] == "pretrain" and "eval_loss" in m]
    assert final["heldout_loss"] == scored[-1]["eval_loss"]  # the saved weights are the scored ones
    if average:
        assert final["scored_weights"] == "ema" and final["ema_decay"] == 0.9
        assert all(m["eval_weights"] == "ema" and m["raw_eval_loss"] != m["eval_loss"] for m in scored)
        raw = weights(parts / "checkpoints" / "pretrain-final.state.safetensors")
        saved = weights(parts / "checkpoints" / "pretrain-final.safetensors")
        assert any(not torch.equal(raw[f"raw.{key}"], saved[key]) for key in saved)  # the average, not the raw
    else:
        assert "scored_weights" not in final and not any("eval_weights" in m or "raw_eval_loss" in m
                                                           for m in read_metrics(parts))


def test_the_weight_average_after_k_steps_is_the_ema_formula(tmp_path):
    """avg_1 = w_1, avg_k = decay * avg_(k-1) + (1 - decay) * w_k (w_k: the weights after optimizer
    step k), computed here in float64 from the weights the loop leaves after each step."""
    decay, k = 0.7, 5
    flags = [a for a in TINY if a not in ("--no-eval", "--no-figures")]
    overrides = [(flag[2:], value) for flag, value in zip(flags[::2], flags[1::2])]
    config = load_config(DEFAULT_CONFIG, [*overrides, ("train.ema_decay", str(decay))])
    spec = study_presets(**config.data.preset_kwargs())["pretrain"]
    model = trainer.GraphTransformer(config.model)
    loop = trainer.StageLoop(model, config, "pretrain", spec, tmp_path, Runtime(torch.device("cpu")), None)
    by_hand = None
    for _ in range(k):
        loop.train_batch()
        now = {name: p.detach().double().clone() for name, p in model.named_parameters()}
        by_hand = now if by_hand is None else {n: decay * by_hand[n] + (1 - decay) * now[n] for n in now}
    averaged = dict(loop.scored.named_parameters())
    assert int(loop.ema.n_averaged) == k
    for name, value in by_hand.items():
        torch.testing.assert_close(averaged[name].double(), value, rtol=1e-5, atol=1e-6)
    # the average is not the last weights (else the test could not tell an average from a copy)
    assert any(not torch.allclose(averaged[n].double(), p.detach().double()) for n, p in model.named_parameters())


def test_finetune_records_the_loss_before_fine_tuning(tmp_path):
    out = tmp_path / "run"
    assert main(["--out", str(out), *TINY, "--train.steps", "4", "--finetune.steps", "3"]) == 0
    first = next(m for m in read_metrics(out) if m["stage"] == "finetune")
    assert first["step"] == 0 and first["examples"] == 0
    phases = json.loads((out / "phases.json").read_text())
    assert phases["finetune"]["loss_before"] == first["eval_loss"]
    last = [m for m in read_metrics(out) if m["stage"] == "finetune"][-1]
    assert phases["finetune"]["loss_after"] == last["eval_loss"]


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    real = trainer.compute_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        loss, pred = real(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 6 else loss), pred

    monkeypatch.setattr(trainer, "compute_loss", poisoned)
    out = tmp_path / "run"
    code = main(["--out", str(out), "--stage", "pretrain", *TINY, "--train.steps", "10", "--train.checkpoint_every", "4"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "nan at step 6" in err and "pretrain-4" in err
    assert (out / "checkpoints" / "pretrain-4.json").exists()
    assert not (out / "checkpoints" / "pretrain-final.json").exists()


@pytest.mark.parametrize("argv, fragment", [
    (["--train.lrr", "1"], "train.lrr"),
    (["--model.n_layers", "0"], "n_layers"),
    (["--train.lr", "-1"], "lr"),
    (["--optim.lr", "1"], "optim.lr"),
    (["--data.n_max", "2"], "data"),
    (["--model.max_vertices", "9"], "max_vertices"),
    (["--train.steps"], "needs a value"),
    (["--config", "/nonexistent.toml"], "cannot read"),
    (["--stage", "finetune"], "no finished pre-training"),
    (["--resume"], "holds no run"),
    (["--train.ema_decay", "1"], "ema_decay"),
    (["--train.ema_decay", "0"], "ema_decay"),
    (["--train.ema_decay", "nan"], "ema_decay"),
    (["--finetune.ema_decay", "x"], "finetune.ema_decay"),
    (["--finetune.mode", "lora", "--finetune.lora_rank", "2", "--finetune.ema_decay", "0.9"], "lora"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, fragment):
    assert main(["--out", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("python -m graphpath.train:") and fragment in err


def test_existing_run_needs_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--out", str(out), "--stage", "pretrain", *TINY, "--train.steps", "2"]) == 0
    assert main(["--out", str(out), "--stage", "pretrain", *TINY, "--train.steps", "2"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_overrides_and_round_trip():
    config = load_config(DEFAULT_CONFIG, [("train.lr", "5e-4"), ("model.n_layers", "3"), ("train.betas", "[0.9, 0.95]"),
                                          ("seed", "7"), ("train.dataset", "datasets/x")])
    assert (config.train.lr, config.model.n_layers, config.train.betas, config.seed) == (5e-4, 3, [0.9, 0.95], 7)
    assert config.train.dataset == "datasets/x"
    assert config.model.max_vertices == config.data.n_max
    from graphpath_common.toml import tomllib

    assert from_dict(tomllib.loads(to_toml(config))) == config
    assert set(config.data.to_dict()) <= {"n_max", "finetune_n_max", "small_target", "pretrain_threshold",
                                          "finetune_threshold"}
    with pytest.raises(ConfigError, match="known in"):
        apply_overrides({}, [("finetune.learning_rate", "1")])


def test_lr_schedule_warms_up_then_decays():
    config = load_config(DEFAULT_CONFIG, [("train.steps", "100"), ("train.warmup_steps", "10"), ("train.min_lr", "0.0")])
    factors = [lr_factor(s, config.train) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
    assert factors[-1] < 0.01


def test_wsd_holds_the_peak_lr_then_decays_linearly_to_min_lr():
    from graphpath.core.config import StageConfig

    stage = StageConfig(steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-4, decay="wsd", decay_step=80)
    factors = [lr_factor(s, stage) for s in range(101)]
    assert factors[0] == pytest.approx(0.1) and set(factors[9:81]) == {1.0}  # warm-up, then stable
    assert factors[90] == pytest.approx(1 - 0.9 * 0.5) and factors[100] == pytest.approx(0.1)  # half way, then min_lr
    for bad, needle in ((dict(decay="wsd"), "decay_step is needed"), (dict(decay="wsd", decay_step=80, time_budget=9.0),
                                                                      "not \"wsd\"")):
        with pytest.raises(ConfigError, match=needle):
            StageConfig(steps=100, **bad)


class Bf16Runtime(Runtime):
    def autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16)  # the CPU stand-in for CUDA bf16


def test_loss_is_float32_under_bf16_autocast():
    from graphpath.core.model import ModelConfig, build_model

    model = build_model(ModelConfig(max_vertices=5, d_model=16, n_layers=1))
    data = sample(study_presets(5, 4, 4)["pretrain"], 32, 0)
    loss, pred = compute_loss(model, data, 1, Bf16Runtime(torch.device("cpu")))
    assert loss.dtype == torch.float32 and pred.dtype == torch.float32
    loss.backward()
    assert model.readout.weight.grad.dtype == torch.float32


def test_training_from_a_prebuilt_dataset_resumes_exactly(tmp_path):
    from data_gen.build import main as build

    data = tmp_path / "pretrain-data"
    assert build(["--preset", "pretrain", "--size", "300", "--seed", "3", "--out", str(data), "--n-max", "5",
                  "--finetune-n-max", "4", "--small-target", "4", "--pretrain-threshold", "3",
                  "--finetune-threshold", "2"]) == 0
    common = ["--stage", "pretrain", *TINY, "--train.steps", "12", "--train.dataset", str(data)]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(["--out", str(whole), *common]) == 0  # 12 steps of 64 from 300 graphs: several epochs
    assert main(["--out", str(parts), *common, "--stop-after", "5"]) == 0
    assert main(["--out", str(parts), "--resume", "--no-eval", "--no-figures"]) == 0
    a, b = weights(whole / "checkpoints" / "pretrain-final.safetensors"), weights(parts / "checkpoints" / "pretrain-final.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_dataset_of_another_size_is_refused(tmp_path, capsys):
    from data_gen.build import main as build

    data = tmp_path / "big-data"
    assert build(["--preset", "pretrain", "--size", "200", "--seed", "3", "--out", str(data), "--n-max", "6", "--finetune-n-max", "4", "--small-target", "4"]) == 0
    assert main(["--out", str(tmp_path / "run"), "--stage", "pretrain", *TINY, "--train.dataset", str(data)]) == 2
    assert "max_vertices" in capsys.readouterr().err


def test_finetune_stage_uses_the_runs_own_config(tmp_path):
    out = tmp_path / "run"
    assert main(["--out", str(out), "--stage", "pretrain", *TINY, "--train.steps", "3"]) == 0
    assert main(["--out", str(out), "--stage", "finetune", "--finetune.steps", "2", "--no-eval", "--no-figures"]) == 0
    assert [m["step"] for m in read_metrics(out) if m["stage"] == "finetune"][-1] == 2


def test_bf16_on_cpu_is_one_line_and_nothing_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--out", str(out), "--device", "cpu", *TINY, "--finetune.precision", "bf16"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs CUDA" in err
    assert not out.exists()


@pytest.mark.parametrize("choice", ["continue", "fresh"])
def test_finetune_optimizer_continue_keeps_the_pretraining_moments(tmp_path, choice):
    from graphpath.core.checkpoint import read_info, read_train_tensors
    from graphpath.core.config import load_config
    from graphpath.training.run import stage_model
    from graphpath.training.stage import StageLoop

    out = tmp_path / "run"
    assert main(["--out", str(out), "--stage", "pretrain", *TINY, "--train.steps", "5",
                 "--finetune.optimizer", choice, "--finetune.lr", "3e-4"]) == 0
    config = load_config(out / "config.toml")
    runtime = Runtime(torch.device("cpu"))
    model = stage_model(config, "finetune", out, runtime, resumed=False)
    loop = StageLoop(model, config, "finetune", study_presets(5, 4, 4, 3, 2)["finetune"], out, runtime, None)
    pretrain = read_train_tensors(out / "checkpoints" / "pretrain-final.json")
    moments = {k: v for k, v in pretrain.items() if k.endswith(".exp_avg")}
    assert moments
    state = loop.optimizer.state_dict()["state"]
    if choice == "continue":  # the state the first fine-tuning step starts from is the pre-training one
        for key, value in moments.items():
            index = int(key.split(".")[1])
            assert torch.equal(state[index]["exp_avg"], value), key
        assert float(state[0]["step"]) == 5
    else:
        assert state == {}
    assert [g["lr"] for g in loop.optimizer.param_groups] == [3e-4, 3e-4]  # this stage's lr either way
    assert main(["--out", str(out), "--stage", "finetune", "--finetune.steps", "2", "--no-eval", "--no-figures"]) == 0
    assert read_info(out / "checkpoints" / "finetune-final.json")["finetune_optimizer"] == choice
    assert f'optimizer = "{choice}"' in (out / "config.toml").read_text()


@pytest.mark.slow
def test_seeds_train_into_a_group_scored_pooled_then_perturbed_and_published(tmp_path):
    from blog.__main__ import main as blog_main
    from blog.rundir import load_run
    from graphpath.analysis.perturb import main as perturb

    group = tmp_path / "small"
    tiny = [a for a in TINY if a != "--no-eval"]
    assert main(["--out", str(group), "--seeds", "0,1", *tiny, "--train.steps", "4", "--finetune.steps", "2"]) == 0
    assert [p.name for p in sorted(group.glob("seed-*"))] == ["seed-0", "seed-1"]
    seeds = [int(load_config(group / f"seed-{k}" / "config.toml").seed) for k in (0, 1)]
    assert seeds == [0, 1]
    w0 = weights(group / "seed-0" / "checkpoints" / "pretrain-final.safetensors")
    w1 = weights(group / "seed-1" / "checkpoints" / "pretrain-final.safetensors")
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)  # the seeds train different models
    doc = json.loads((group / "eval.json").read_text())
    assert (group / "report.md").is_file() and not (group / "checkpoints").exists()
    learned = doc["models"]["learned"]
    assert learned["runs"] == 2
    block = learned["results"]["pretrain"]
    assert len(block["per_run"]["mse"]) == 2 and block["mse"] == pytest.approx(sum(block["per_run"]["mse"]) / 2)
    assert main(["--out", str(group), "--seeds", "0,1", *tiny, "--train.steps", "4"]) == 2  # exists: --resume
    from graphpath.evaluation.suite import main as evaluate

    assert evaluate([str(group), "--size", "64", "--grid-size", "4", "--sets", "study", "--no-cache", "--quiet",
                     "--no-figures", "--no-handcrafted"]) == 0  # a group re-scored: its seeds pooled, in place
    rescored = json.loads((group / "eval.json").read_text())["models"]["learned"]
    assert rescored["runs"] == 2 and rescored["results"]["pretrain"]["count"] == 64
    assert perturb(["--model", str(group), "--sigmas", "0.1", "--seeds", "0", "--steps", "2", "--eval-every", "1",
                    "--eval-size", "32", "--batch-size", "16", "--no-figures", "--quiet"]) == 0
    perturbed = json.loads((group / "perturb.json").read_text())
    assert perturbed["target"]["model"] == str(group / "seed-0")
    run = load_run(group)
    assert run.model_dir == group / "seed-0" and run.metrics[0]["stage"] == "pretrain"
    assert blog_main([str(group)]) == 0
