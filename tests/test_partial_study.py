"""python -m experiments.partial: bad input exits 2; a tiny study end to end (slow)."""
import json

import pytest

from experiments.partial import main
from tiny_studies import TINY_DATA, TINY_FINETUNE, TINY_PRETRAIN, assert_bad_study

TINY = """
name = "partial-tiny"
seeds = [0, 1]
modes = ["full", "readout", "lora"]
ranks = [2]
sets = ["finetune", "shift-tree"]
eval_size = 64
""" + TINY_DATA + """[model]
d_model = 16
n_layers = 1
n_heads = 2
""" + TINY_PRETRAIN + TINY_FINETUNE


@pytest.mark.parametrize("edit,needle", [
    (('modes = ["full", "readout", "lora"]', 'modes = ["full", "prefix"]'), "unknown mode"),
    (("ranks = [2]", "ranks = [0]"), "ranks must be positive integers"),
    (('sets = ["finetune", "shift-tree"]', 'sets = ["nowhere"]'), "unknown set"),
    (("seeds = [0, 1]", "seeds = [0]\nbodies = [\"warm\"]"), "unknown body"),
    (("eval_size = 64", "eval_size = 8"), "eval_size must be an integer >= 16"),
])
def test_bad_study_is_one_line_exit_2(tmp_path, capsys, edit, needle):
    assert_bad_study(main, TINY.replace(*edit), tmp_path, capsys, needle)


@pytest.mark.slow
def test_partial_study_end_to_end(tmp_path):
    from graphpath.core.checkpoint import load_model

    path = tmp_path / "study.toml"
    path.write_text(TINY)
    out = tmp_path / "out"
    assert main(["--config", str(path), "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "partial.json").read_text())
    names = [v["name"] for v in doc["variants"]]
    assert names == [f"{m}-{b}" for b in ("pretrained", "random") for m in ("full", "readout", "lora-r2")]
    full, readout = doc["variants"][0], doc["variants"][1]
    assert full["trainable"] == doc["total_parameters"] and readout["trainable"] == 16 + 1
    # the readout-only job changed nothing but the read-out
    tuned, _ = load_model(out / "jobs" / "seed0" / "readout-pretrained")
    pre, _ = load_model(out / "jobs" / "seed0" / "pretrain" / "checkpoints" / "pretrain-final.json")
    changed = {n for n, t in tuned.state_dict().items() if not (t == pre.state_dict()[n]).all()}
    assert changed == {"readout.weight", "readout.bias"}
    for row in doc["variants"]:
        assert set(row["sets"]) == {"finetune", "shift-tree"} and row["finetune_loss"]["n"] == 2
    assert (out / "figures" / "partial-finetune.html").is_file()


@pytest.mark.parametrize("preset", ["partial.toml", "partial-gpu.toml"])
def test_presets_load(preset):
    from pathlib import Path

    from experiments.partial import load_study

    study = load_study(Path(__file__).resolve().parents[1] / "experiments" / preset)
    assert set(study["modes"]) == {"full", "norm-embed", "readout", "lora"} and "random" in study["bodies"]
    assert len(study["seeds"]) >= 2 and study["ranks"]
