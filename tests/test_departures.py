"""graphpath_common.study: every setting in which a run departs from the study appears as a
departure, the study's own presets depart only where they say so, and the study's constants
(default thresholds, label variances) stay in step with data_gen."""
from __future__ import annotations

from pathlib import Path

import pytest

from data_gen.spec import PRESET_NAMES, study_presets
from data_gen.splits import draw_split
from graphpath.core.config import load_config, to_toml
from graphpath_common.study import DEFAULT_THRESHOLDS, OMITTED, STUDY_LABEL_VARIANCE, STUDY_RECIPE, departures, same
from graphpath_common.toml import tomllib

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
STUDY_PARAMETERS = 550_433
STUDY_PERTURB = {"kind": "replace", "scale": "absolute", "sigmas": [1.0], "optimizer": "adam", "lr": 1e-6,
                 "batch_size": 512}


def resolved(name: str) -> dict:
    """A preset as the run directory's config.toml holds it (fully resolved)."""
    return tomllib.loads(to_toml(load_config(EXPERIMENTS / name)))


def test_the_study_preset_departs_only_where_its_header_says():
    """paper.toml: per-layer initialisation (paper-notebook.toml has the study's identical copies),
    TF32 matmuls on CUDA in both stages (the study: float32), and AdamW's decoupled fine-tuning
    decay where the study's Adam adds its 1e-5 as an L2 term."""
    rows = departures(resolved("paper.toml"), parameters=STUDY_PARAMETERS, perturb=STUDY_PERTURB, seeds=1)
    assert [r["field"] for r in rows if r["differs"]] == ["model.init", "optimizer", "train.precision",
                                                          "finetune.precision"]
    notebook = departures(resolved("paper-notebook.toml"), parameters=STUDY_PARAMETERS)
    assert "model.init" not in [r["field"] for r in notebook if r["differs"]]


@pytest.mark.parametrize("setting", [s for s in STUDY_RECIPE], ids=lambda s: s.field)
def test_every_changed_setting_appears_as_a_departure(setting):
    config, parameters, perturb, seeds = study_config(), STUDY_PARAMETERS, dict(STUDY_PERTURB), 1
    section, _, key = setting.field.partition(".")
    changed = {int: lambda v: v + 1, float: lambda v: v * 2 + 1e-3, str: lambda v: v + "-other",
               bool: lambda v: not v, list: lambda v: [x * 2 + 0.5 for x in v], type(None): lambda v: 1.0}
    if setting.field == "parameters":
        parameters += 1
    elif setting.field == "seeds":
        seeds += 1
    elif setting.field == "optimizer":
        pass  # graphpath's AdamW decays decoupled: it departs wherever a decay is nonzero (fine-tuning's 1e-5)
    elif setting.field == "examples":
        config["train"]["batch_size"] += 1
    elif section == "perturb":
        perturb[key] = changed[type(perturb[key])](perturb[key])
    else:
        table = config.setdefault(section, {})
        value = table.get(key, OMITTED.get(setting.field))
        table[key] = changed[type(value)](value)
    rows = departures(config, parameters=parameters, perturb=perturb, seeds=seeds)
    differs = {r["field"] for r in rows if r["differs"]}
    assert setting.field in differs
    # steps x batch follows the batch; the optimizer row stands for the study's coupled decay
    assert differs <= {setting.field, "examples", "train.batch_size", "optimizer"}


# Keys of a resolved config that change how a run is logged, checkpointed or batched in memory,
# not what it learns: they are not departures from the study's recipe. Pre-training's mode, body
# and optimizer are fine-tuning-only settings (graphpath.core.config rejects other values there).
# buckets and pack choose how a batch is laid out (the same model up to float rounding), like compile
BOOKKEEPING = {"name", "seed", "log_every", "eval_every", "eval_size", "checkpoint_every", "keep_checkpoints",
               "buckets", "pack", "compile", "train.mode", "train.body", "train.optimizer", "lora_rank", "lora_alpha"}


def study_config() -> dict:
    """The study's recipe as a resolved config: paper.toml with its stated departures undone."""
    config = resolved("paper.toml")
    config["model"]["init"] = "study"
    config["train"]["precision"] = config["finetune"]["precision"] = "fp32"
    return config


def config_keys(config: dict) -> list[str]:
    """Every dotted key of a resolved config that is not bookkeeping (read from the config itself)."""
    return [f"{section}.{key}" for section, table in config.items() if isinstance(table, dict)
            for key in table if key not in BOOKKEEPING and f"{section}.{key}" not in BOOKKEEPING]


@pytest.mark.parametrize("preset", ["small.toml", "study-cpu.toml", "paper-notebook.toml"])
def test_every_config_key_that_departs_from_the_study_is_a_row(preset):
    """Derived from the configs, not from STUDY_RECIPE: every key whose value in the preset differs
    from the study's appears as a row marked differs."""
    study, run = study_config(), resolved(preset)
    rows = {r["field"]: r for r in departures(run, parameters=1, seeds=3)}
    differing = [key for key in sorted(set(config_keys(study)) | set(config_keys(run)))
                 if not same(study[key.split(".")[0]].get(key.split(".")[1], OMITTED.get(key)),
                             run.get(key.split(".")[0], {}).get(key.split(".")[1], OMITTED.get(key)))]
    assert differing
    missing = [key for key in differing if key not in rows or rows[key]["differs"] is not True]
    assert not missing, f"{preset}: settings that depart from the study but are not in the table: {missing}"


def test_every_key_of_the_study_config_has_a_row():
    """A new config key shows up here until it is a row of the table (or declared bookkeeping)."""
    fields = {s.field for s in STUDY_RECIPE}
    assert not [key for key in config_keys(study_config()) if key not in fields]


def test_the_departures_a_reviewer_asked_for_are_rows():
    rows = {r["field"]: r for r in departures(resolved("small.toml"), parameters=298_881, seeds=3)}
    assert rows["finetune.grad_clip"]["study"] == "none" and rows["finetune.grad_clip"]["differs"] is True
    assert rows["model.max_vertices"]["study"] == "15" and rows["model.max_vertices"]["run"] == "8"
    assert rows["optimizer"]["differs"] is True and "AdamW" in rows["optimizer"]["run"]
    assert "Adam" in rows["optimizer"]["study"] and "LayerNorm" in rows["optimizer"]["run"]
    assert rows["seeds"]["study"] == "1" and rows["seeds"]["run"] == "3" and rows["seeds"]["differs"] is True
    assert "1e-3" in rows["finetune.lr"]["note"] and "50 steps" in rows["finetune.lr"]["note"]


def test_the_cpu_preset_lists_the_departures_a_reviewer_asks_about():
    rows = {r["field"]: r for r in departures(resolved("small.toml"), parameters=298_881)}
    for field in ("model.n_layers", "model.norm", "parameters", "train.weight_decay", "train.decay",
                  "train.warmup_steps", "train.batch_size", "examples", "data.pretrain_threshold",
                  "data.finetune_threshold", "data.n_max", "finetune.lr"):
        assert rows[field]["differs"] is True, field
    assert rows["parameters"]["run"] == "298,881" and rows["parameters"]["study"] == "550,433"
    assert rows["data.pretrain_threshold"]["run"] == "4" and rows["data.pretrain_threshold"]["study"] == "6"
    assert rows["perturb.lr"]["differs"] is None and rows["perturb.lr"]["run"] == "not run"
    assert rows["data.pretrain_task"]["run"] == "distance-12" and rows["data.pretrain_task"]["differs"] is False
    assert rows["train.grad_clip"]["differs"] is True and rows["train.decay_step"]["run"] == "none"


def test_values_compare_as_settings():
    assert same(1e-4, 0.0001) and same([0.9, 0.999], [0.9, 0.999]) and not same(True, 1) and same(None, None)


def test_omitted_keys_mean_the_config_defaults():
    from graphpath.core.config import STAGE_TASKS, DataConfig, StageConfig

    data, stage = DataConfig(), StageConfig()
    assert OMITTED["data.pretrain_task"] == data.pretrain_task == STAGE_TASKS["pretrain_task"]
    assert OMITTED["data.finetune_task"] == data.finetune_task
    assert OMITTED["train.grad_clip"] is stage.grad_clip is None and OMITTED["train.decay_step"] is stage.decay_step


def test_default_thresholds_are_data_gen_defaults():
    presets = study_presets()
    assert presets["pretrain"].threshold == DEFAULT_THRESHOLDS["data.pretrain_threshold"]
    assert presets["finetune"].threshold == DEFAULT_THRESHOLDS["data.finetune_threshold"]


def test_study_label_variances_match_the_generator():
    presets = study_presets()
    for name in PRESET_NAMES:
        variance = draw_split(name, presets[name], 20_000, 0)["label"].var()
        assert float(f"{variance:.4g}") == STUDY_LABEL_VARIANCE[name], name
