"""Run configuration: typed tables, typed overrides, model init, precision selection, presets' schedules."""
from pathlib import Path

import pytest
import torch

from graphpath.core.config import ConfigError, DataConfig, StageConfig, apply_overrides, from_dict, load_config
from graphpath.core.model import GraphTransformer, ModelConfig
from graphpath.training.stage import Runtime, choose_precision, lr_factor

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


# ---- typed tables --------------------------------------------------------------------------------

def test_data_table_is_typed_and_rejects_unknown_keys():
    config = from_dict({"data": {"n_max": 6, "finetune_n_max": 4, "small_target": 4}})
    assert isinstance(config.data, DataConfig) and config.data.n_max == 6 and config.model.max_vertices == 6
    assert config.data.preset_kwargs() == {"n_max": 6, "finetune_n_max": 4, "small_target": 4}
    with pytest.raises(ConfigError, match="data.n_vertices"):
        from_dict({"data": {"n_vertices": 6}})
    with pytest.raises(ConfigError, match="n_max must be an integer"):
        DataConfig(n_max=6.5)
    with pytest.raises(ConfigError, match="unknown task"):
        DataConfig(pretrain_task="sorting")
    with pytest.raises(ConfigError, match="^data"):
        DataConfig(n_max=2)  # study_presets refuses it


def test_stage_is_validated_on_construction():
    with pytest.raises(ConfigError, match=r"lr must lie in \(0, 1\]"):
        StageConfig(lr=0)
    for value in (1e38, float("inf"), float("nan"), -1e-3):  # none of these can train
        with pytest.raises(ConfigError, match="^lr must"):
            StageConfig(lr=value)
    with pytest.raises(ConfigError, match="weight_decay must be a finite number"):
        StageConfig(weight_decay=float("inf"))
    with pytest.raises(ConfigError, match=r"lr \* weight_decay must be < 1"):
        StageConfig(lr=0.5, weight_decay=2.0)
    with pytest.raises(ConfigError, match="grad_clip must be a finite number"):
        StageConfig(grad_clip=float("nan"))
    StageConfig(lr=1.0, weight_decay=0.99)  # the bounds themselves are allowed
    with pytest.raises(ConfigError, match="keep_checkpoints must be a positive integer"):
        StageConfig(keep_checkpoints=0)
    with pytest.raises(ConfigError, match="precision must be one of"):
        StageConfig(precision="fp16")
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        StageConfig(optimizer="sgd")
    with pytest.raises(ConfigError, match="^train: lr"):
        from_dict({"train": {"lr": -1.0}})
    with pytest.raises(ConfigError, match="fine-tuning stage only"):
        from_dict({"train": {"optimizer": "continue"}})
    with pytest.raises(ConfigError, match="needs mode"):
        from_dict({"finetune": {"optimizer": "continue", "mode": "readout"}})


def test_overrides_are_parsed_by_the_fields_type():
    raw = apply_overrides({}, [("train.dataset", "none"), ("finetune.mode", "full"), ("train.grad_clip", "0.5"),
                               ("train.compile", "true"), ("train.betas", "[0.9, 0.95]"), ("seed", "3"),
                               ("data.n_max", "6"), ("name", '"quoted"')])
    assert raw["train"] == {"dataset": "none", "grad_clip": 0.5, "compile": True, "betas": [0.9, 0.95]}
    assert raw["data"]["n_max"] == 6 and raw["seed"] == 3 and raw["name"] == "quoted"
    for dotted, text, fragment in [("train.grad_clip", "none", "a number"), ("train.steps", "1.5", "an integer"),
                                   ("train.compile", "yes", "true or false"), ("seed", "x", "an integer"),
                                   ("train.betas", "0.9", "a list"), ("data.pretrain_threshold", "none", "an integer")]:
        with pytest.raises(ConfigError, match=fragment):
            apply_overrides({}, [(dotted, text)])
    with pytest.raises(ConfigError, match="known in"):
        apply_overrides({}, [("data.size", "3")])


# ---- model init --------------------------------------------------------------------------------

def block_parameters(model):
    return [dict(block.named_parameters()) for block in model.blocks]


@pytest.mark.parametrize("norm, bias", [("post", True), ("pre", False)])
def test_study_init_copies_one_layer_and_ours_does_not(norm, bias):
    torch.manual_seed(0)
    study = GraphTransformer(ModelConfig(max_vertices=8, n_layers=4, norm=norm, attn_bias=bias, init="study"))
    first, *rest = block_parameters(study)
    assert rest and all(torch.equal(first[k], other[k]) for other in rest for k in first)
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(study.blocks[0].parameters(), study.blocks[1].parameters()))
    ours = GraphTransformer(ModelConfig(max_vertices=8, n_layers=4, norm=norm, attn_bias=bias))
    first, second = block_parameters(ours)[:2]
    assert not torch.equal(first["attn.W_Q"], second["attn.W_Q"])
    assert not torch.equal(first["mlp.fc_in.weight"], second["mlp.fc_in.weight"])


def test_study_init_draws_from_pytorchs_own_ranges():
    torch.manual_seed(0)
    ours = GraphTransformer(ModelConfig(max_vertices=15, d_model=64, n_layers=2, n_heads=2, init="study",
                                        attn_bias=True, norm="post")).blocks[0]
    torch.manual_seed(0)
    theirs = torch.nn.TransformerEncoderLayer(64, 2, dim_feedforward=256)
    qkv = torch.cat([ours.attn.W_Q, ours.attn.W_K, ours.attn.W_V], dim=0).detach()
    pairs = [(qkv, theirs.self_attn.in_proj_weight.detach()),
             (ours.attn.W_O.detach(), theirs.self_attn.out_proj.weight.detach()),
             (ours.mlp.fc_in.weight.detach(), theirs.linear1.weight.detach()),
             (ours.mlp.fc_out.weight.detach(), theirs.linear2.weight.detach())]
    for mine, reference in pairs:  # uniform draws: same bound (max |w|) and same spread
        assert float(mine.abs().max()) == pytest.approx(float(reference.abs().max()), rel=0.02)
        assert float(mine.std()) == pytest.approx(float(reference.std()), rel=0.05)
    assert torch.count_nonzero(ours.attn.b_Q) == 0 and torch.count_nonzero(ours.attn.b_O) == 0
    with pytest.raises(ConfigError, match="init must be"):
        ModelConfig(init="xavier")


# ---- precision -----------------------------------------------------------------------------------

@pytest.mark.parametrize("device, precision, dtype, tf32", [
    ("cpu", "fp32", None, False), ("cpu", "tf32", None, False),
    ("cuda", "fp32", None, False), ("cuda", "tf32", None, True), ("cuda", "bf16", torch.bfloat16, False),
])
def test_precision_selection(device, precision, dtype, tf32):
    chosen = choose_precision(device, precision)
    assert (chosen.autocast_dtype, chosen.allow_tf32) == (dtype, tf32)


def test_bf16_on_cpu_is_refused_and_fp32_runs_without_autocast():
    with pytest.raises(ConfigError, match="needs CUDA"):
        choose_precision("cpu", "bf16")
    runtime = Runtime(torch.device("cpu")).with_precision("fp32")
    with runtime.autocast():
        assert not torch.is_autocast_enabled("cpu")
    with Runtime(torch.device("cpu")).autocast():
        assert not torch.is_autocast_enabled("cpu")


# ---- presets -------------------------------------------------------------------------------------

def test_paper_presets_follow_the_posts_schedule():
    for name in ("paper.toml", "paper-notebook.toml"):
        config = load_config(EXPERIMENTS / name)
        train = config.train
        assert train.steps == 9600 and train.batch_size == 2 ** 15
        lrs = {step: train.lr * lr_factor(step, train) for step in (0, 6399, 6400, 9599)}
        assert lrs == pytest.approx({0: 5e-4, 6399: 5e-4, 6400: 1e-4, 9599: 1e-4})
        assert train.precision in ("fp32", "tf32") and config.finetune.precision in ("fp32", "tf32")
        assert (config.model.n_layers, config.model.d_model, config.model.norm) == (11, 64, "post")
    paper, notebook = load_config(EXPERIMENTS / "paper.toml"), load_config(EXPERIMENTS / "paper-notebook.toml")
    assert (paper.finetune.optimizer, paper.finetune.steps, paper.finetune.lr, paper.finetune.weight_decay) \
        == ("fresh", 100, 1e-5, 1e-5)
    assert (notebook.finetune.optimizer, notebook.finetune.steps, notebook.finetune.lr) == ("continue", 50, 1e-3)
    assert lr_factor(49, notebook.finetune) == 1.0
    assert (paper.model.init, notebook.model.init) == ("ours", "study")
    assert paper.data.preset_kwargs() == {"n_max": 15, "finetune_n_max": 7, "small_target": 7}


def test_study_cpu_preset_uses_the_studys_sizes():
    config = load_config(EXPERIMENTS / "study-cpu.toml")
    assert config.data.preset_kwargs() == {"n_max": 15, "finetune_n_max": 7, "small_target": 7}
    assert config.train.precision == "fp32"
