"""graphpath.training.partial: frozen tensors stay bit-identical, trainable counts match the formula, LoRA
starts as the identity and its merged checkpoint is an ordinary one; bad modes exit 2."""
import pytest
import torch
from einops import rearrange

from data_gen import sample, study_presets
from graphpath.training import partial
from graphpath.core.checkpoint import load_model
from graphpath.core.config import ConfigError, from_dict
from graphpath.core.model import GraphTransformer, ModelConfig
from graphpath.training.run import main
from graphpath.training.stage import Runtime, compute_loss, stage_optimizer
from graphpath.core.config import StageConfig

CONFIGS = [ModelConfig(max_vertices=6, d_model=16, n_layers=2, n_heads=2),
           ModelConfig(max_vertices=7, d_model=12, n_layers=3, n_heads=3, d_head=5, d_ff=20, norm="post",
                       attn_bias=True),
           ModelConfig(max_vertices=5, d_model=8, n_layers=1, n_heads=1, norm="none")]


def batch(seed=0, size=48):
    return sample(study_presets(6, 4, 4)["pretrain"], size, seed)


def fresh(config, seed=0):
    torch.manual_seed(seed)
    return GraphTransformer(config)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("mode,rank", [("full", None), ("norm-embed", None), ("readout", None), ("lora", 1),
                                       ("lora", 3)])
def test_trainable_count_matches_formula(config, mode, rank):
    model = fresh(config)
    assert partial.apply_mode(model, mode, rank, None, seed=1) == partial.expected_trainable(config, mode, rank)
    if mode == "full":
        assert partial.trainable_count(model) == model.num_parameters()


@pytest.mark.parametrize("mode,rank", [("norm-embed", None), ("readout", None), ("lora", 2)])
def test_frozen_tensors_bit_identical_after_training(mode, rank):
    config = ModelConfig(max_vertices=6, d_model=16, n_layers=2, n_heads=2, attn_bias=True)
    model = fresh(config)
    partial.apply_mode(model, mode, rank, 4.0, seed=2)
    frozen = partial.frozen_snapshot(model)
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert frozen and trained
    optimizer = stage_optimizer(model, StageConfig(lr=1e-2, weight_decay=0.1))
    for step in range(4):
        loss, _ = compute_loss(model, batch(step), 2, Runtime(torch.device("cpu")))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = dict(model.named_parameters())
    for name, before in frozen.items():
        assert torch.equal(after[name], before), name
    assert any(not torch.equal(after[n], t) for n, t in trained.items())


def test_selection_is_by_module_type():
    model = fresh(CONFIGS[0])
    partial.apply_mode(model, "norm-embed")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {n for n, p in model.named_parameters()
                if n.startswith(("vertex_embed", "readout", "ln_final")) or ".ln" in n}
    assert trainable == expected


def test_lora_at_init_leaves_output_unchanged():
    config = CONFIGS[1]
    model = fresh(config).eval()
    data = batch(3)
    before = model(data)
    partial.apply_mode(model, "lora", 2, 8.0, seed=5)
    assert torch.equal(model(data), before)


def test_lora_delta_is_scaled_low_rank_product():
    model = fresh(CONFIGS[0])
    original = model.blocks[0].attn.W_Q.detach().clone()
    partial.apply_mode(model, "lora", 2, 6.0, seed=0)
    delta = model.blocks[0].attn.parametrizations.W_Q[0]
    with torch.no_grad():
        delta.B.normal_()
    matrix = rearrange(model.blocks[0].attn.W_Q - original, "h d e -> d (h e)")  # (D, H*E)
    torch.testing.assert_close(matrix, (6.0 / 2) * delta.A @ delta.B)
    assert torch.linalg.matrix_rank(matrix) == 2


def test_lora_state_dict_is_merged_and_loads_into_a_plain_model():
    config = CONFIGS[1]
    model = fresh(config)
    partial.apply_mode(model, "lora", 2, 2.0, seed=0)
    for delta in (m for m in model.modules() if isinstance(m, partial.LoRADelta)):
        with torch.no_grad():
            delta.B.normal_(std=0.1)
    state = model.state_dict()
    plain = GraphTransformer(config)
    assert set(state) == set(plain.state_dict())
    plain.load_state_dict(state)
    data = batch(4)
    model.eval(), plain.eval()
    torch.testing.assert_close(plain(data), model(data))


def test_finetune_lora_run_loads_with_load_model(tmp_path):
    out = tmp_path / "run"
    tiny = ["--data.n_max", "5", "--data.finetune_n_max", "4", "--data.small_target", "4",
            "--model.d_model", "16", "--model.n_layers", "1", "--train.steps", "4", "--train.batch_size", "32",
            "--train.eval_size", "32", "--finetune.steps", "3", "--finetune.batch_size", "32",
            "--finetune.eval_size", "32", "--finetune.lr", "1e-2", "--no-eval", "--no-figures"]
    assert main(["--out", str(out), *tiny, "--finetune.mode", "lora", "--finetune.lora_rank", "2"]) == 0
    model, info = load_model(out)
    assert info["stage"] == "finetune"
    pre, _ = load_model(out / "checkpoints" / "pretrain-final.json")
    changed = [n for n, p in model.state_dict().items() if not torch.equal(p, pre.state_dict()[n])]
    assert changed and all(n.endswith(("W_Q", "W_K", "W_V", "W_O", "fc_in.weight", "fc_out.weight", "readout.weight",
                                       "readout.bias")) for n in changed)


@pytest.mark.parametrize("override,needle", [
    (["--finetune.mode", "adapters"], "mode must be one of"),
    (["--finetune.mode", "lora"], "lora_rank must be a positive integer"),
    (["--finetune.mode", "lora", "--finetune.lora_rank", "0"], "lora_rank must be a positive integer"),
    (["--finetune.mode", "readout", "--finetune.lora_rank", "2"], "only used with mode"),
    (["--finetune.body", "scrambled"], "body must be one of"),
    (["--train.mode", "readout"], "fine-tuning stage only"),
])
def test_bad_mode_or_rank_is_one_line_exit_2(tmp_path, capsys, override, needle):
    assert main(["--out", str(tmp_path / "run"), *override]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_config_round_trips_mode_keys():
    config = from_dict({"finetune": {"mode": "lora", "lora_rank": 4, "lora_alpha": 8.0, "body": "random"}})
    assert (config.finetune.mode, config.finetune.lora_rank, config.finetune.body) == ("lora", 4, "random")
    with pytest.raises(ConfigError):
        from_dict({"finetune": {"mode": "lora", "lora_rank": 2, "lora_alpha": -1}})


def test_lora_stage_refuses_resume_and_random_body_starts_from_init(tmp_path, capsys):
    out = tmp_path / "run"
    tiny = ["--data.n_max", "5", "--data.finetune_n_max", "4", "--data.small_target", "4",
            "--model.d_model", "16", "--model.n_layers", "1", "--train.steps", "4", "--train.batch_size", "32",
            "--train.eval_size", "32", "--finetune.steps", "6", "--finetune.batch_size", "32",
            "--finetune.eval_size", "32", "--no-eval", "--no-figures", "--finetune.mode", "lora",
            "--finetune.lora_rank", "1"]
    assert main(["--out", str(out), "--stage", "pretrain", *tiny]) == 0
    assert main(["--out", str(out), "--stage", "finetune", *tiny, "--stop-after", "2"]) == 0
    capsys.readouterr()
    assert main(["--out", str(out), "--stage", "finetune", "--resume", *tiny]) == 2
    assert "cannot be resumed" in capsys.readouterr().err
    control = tmp_path / "control"
    body = tiny[:-4]  # without the LoRA keys
    assert main(["--out", str(control), "--stage", "pretrain", *body]) == 0
    assert main(["--out", str(control), "--stage", "finetune", *body, "--finetune.body", "random",
                 "--finetune.mode", "readout"]) == 0
    tuned, _ = load_model(control)
    from graphpath.training.run import new_model
    from graphpath.core.config import load_config

    init = new_model(load_config(control / "config.toml"))
    changed = {n for n, t in tuned.state_dict().items() if not torch.equal(t, init.state_dict()[n])}
    assert changed == {"readout.weight", "readout.bias"}  # the untrained body, only the read-out trained


def test_fit_readout_is_the_least_squares_optimum():
    """After fit_readout the MSE's gradient w.r.t. the read-out vanishes on the fitted sample (the
    normal equations), the reported MSE is the model's own, and no other read-out does better."""
    model = fresh(CONFIGS[0], seed=3)
    data = batch(5, size=600)
    readout = model.readout

    def mse_and_grad():
        model.zero_grad()
        loss = torch.nn.functional.mse_loss(model(data), data.label.float())
        loss.backward()
        return loss.item(), torch.cat([readout.weight.grad.view(-1), readout.bias.grad])

    before, grad_before = mse_and_grad()
    fit = partial.fit_readout(model, data)
    after, grad_after = mse_and_grad()
    assert fit["graphs"] == 600 and fit["mse_before"] == pytest.approx(before, rel=1e-5)
    assert fit["mse"] == pytest.approx(after, rel=1e-5) and after < before
    assert grad_after.norm() < 1e-4 * grad_before.norm()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(5):  # any nearby read-out is worse (a convex objective at its minimum)
            weight, bias = readout.weight.clone(), readout.bias.clone()
            readout.weight.add_(1e-2 * torch.randn(weight.shape, generator=generator))
            readout.bias.add_(1e-2 * torch.randn(bias.shape, generator=generator))
            assert torch.nn.functional.mse_loss(model(data), data.label.float()).item() > after
            readout.weight.copy_(weight), readout.bias.copy_(bias)


def test_fit_readout_refuses_an_empty_sample():
    with pytest.raises(ValueError, match="at least one graph"):
        partial.fit_readout(fresh(CONFIGS[0]), batch(0)[:0])


READOUT_RUN = ["--data.n_max", "5", "--data.finetune_n_max", "4", "--data.small_target", "4",
               "--model.d_model", "16", "--model.n_layers", "1", "--train.steps", "4", "--train.batch_size", "32",
               "--train.eval_size", "32", "--finetune.steps", "6", "--finetune.batch_size", "32",
               "--finetune.eval_size", "256", "--finetune.lr", "1e-3", "--finetune.mode", "readout",
               "--finetune.body", "random", "--no-eval", "--no-figures"]


LSTSQ = ["--finetune.readout_init", "lstsq", "--finetune.readout_init_size", "2048"]


def _finetune_metrics(run):
    import json

    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["stage"] == "finetune"]


def test_least_squares_readout_run_starts_at_the_optimum_and_resumes_exactly(tmp_path):
    kept, fitted, resumed = (tmp_path / name for name in ("kept", "fitted", "resumed"))
    assert main(["--out", str(kept), *READOUT_RUN]) == 0
    assert main(["--out", str(fitted), *READOUT_RUN, *LSTSQ]) == 0
    # step 0 is scored after the fit: the fitted read-out beats the untrained one on held-out graphs
    assert _finetune_metrics(fitted)[0]["eval_loss"] < 0.5 * _finetune_metrics(kept)[0]["eval_loss"]
    assert main(["--out", str(resumed), "--stage", "pretrain", *READOUT_RUN, *LSTSQ]) == 0
    assert main(["--out", str(resumed), "--stage", "finetune", *READOUT_RUN, *LSTSQ,
                 "--stop-after", "3"]) == 0
    assert main(["--out", str(resumed), "--stage", "finetune", "--resume", *READOUT_RUN,
                 *LSTSQ]) == 0
    final = "checkpoints/finetune-final.safetensors"
    assert (resumed / final).read_bytes() == (fitted / final).read_bytes()


@pytest.mark.parametrize("override,needle", [
    (["--finetune.readout_init", "ols"], "readout_init must be lstsq or left out"),
    (["--finetune.readout_init_size", "100"], "only used with readout_init"),
    (["--train.readout_init", "lstsq"], "readout_init applies to the fine-tuning stage only"),
    (["--finetune.readout_init", "lstsq", "--finetune.readout_init_size", "0"],
     "readout_init_size must be a positive integer"),
])
def test_bad_readout_init_is_one_line_exit_2(tmp_path, capsys, override, needle):
    assert main(["--out", str(tmp_path / "run"), *override]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and not (tmp_path / "run").exists()
