"""python -m experiments.partial: bad input exits 2; a tiny study end to end (slow): the lr chosen
on validation, the final model reported on test, a cross-task pair, the gate per job."""
import json

import pytest

from experiments.partial import main
from tiny_studies import TINY_DATA, TINY_FINETUNE, TINY_PRETRAIN, assert_bad_study

TINY = """
name = "partial-tiny"
seeds = [0, 1]
pairs = [["distance-12", "distance-onpath"], ["degree", "distance-onpath"]]
modes = ["full", "readout", "lora"]
ranks = [2]
lrs = [1e-3, 3e-3]
sets = ["shift-tree"]
eval_size = 64
test_size = 128
validation_size = 64
""" + TINY_DATA + """[model]
d_model = 16
n_layers = 3
n_heads = 2
""" + TINY_PRETRAIN + TINY_FINETUNE


@pytest.mark.parametrize("edit,needle", [
    (('modes = ["full", "readout", "lora"]', 'modes = ["full", "prefix"]'), "unknown mode"),
    (("ranks = [2]", "ranks = [0]"), "ranks must be positive integers"),
    (('sets = ["shift-tree"]', 'sets = ["nowhere"]'), "unknown set"),
    (("seeds = [0, 1]", "seeds = [0]\nbodies = [\"warm\"]"), "unknown body"),
    (("eval_size = 64", "eval_size = 8"), "eval_size must be an integer >= 16"),
    (('["degree", "distance-onpath"]]', '["colouring", "distance-onpath"]]'), "unknown task"),
    (("lrs = [1e-3, 3e-3]", "lrs = [1e-3, 1e-3]"), "lrs must be"),
    (("n_layers = 3", "n_layers = 2"), "cannot compute distances"),
    (("lrs = [1e-3, 3e-3]", "lrs = {full = [1e-3], readout = [1e-2]}"), "lrs names no grid for mode(s) lora"),
    (("lrs = [1e-3, 3e-3]", "lrs = {full = [1e-3], readout = [1e-2], lora = [1e-2], prefix = [1e-2]}"),
     "unknown lrs key(s) prefix"),
    (("lrs = [1e-3, 3e-3]", "lrs = {full = [1e-3], readout = [], lora = [1e-2]}"), "lrs.readout must be"),
    (("lrs = [1e-3, 3e-3]", "lrs = [1e-3, 3e-3]\nfinetune_by_mode = {prefix = {steps = 20}}"),
     "unknown finetune_by_mode key(s) prefix"),
    (("lrs = [1e-3, 3e-3]", "lrs = [1e-3, 3e-3]\nfinetune_by_mode = {readout = {steps = 20, eval_every = 10}}"),
     "[finetune] (readout): a point every 10 steps"),
])
def test_bad_study_is_one_line_exit_2(tmp_path, capsys, edit, needle):
    assert_bad_study(main, TINY.replace(*edit), tmp_path, capsys, needle)


def test_lrs_are_one_grid_or_one_per_mode():
    from experiments.partial import check_mode_lrs
    from experiments.protocol import at_edge

    assert at_edge(1e-3, [1e-3, 3e-3, 1e-2]) and at_edge(1e-2, [1e-3, 3e-3, 1e-2])
    assert not at_edge(3e-3, [1e-3, 3e-3, 1e-2]) and not at_edge(3e-3, [3e-3])

    assert check_mode_lrs([1e-3, 3e-3], ["full", "readout"]) == {"full": [1e-3, 3e-3], "readout": [1e-3, 3e-3]}
    assert check_mode_lrs({"full": [1e-3], "readout": [0.1, 0.3]}, ["full", "readout"]) == {"full": [1e-3],
                                                                                          "readout": [0.1, 0.3]}


def test_a_mode_may_override_finetune_keys(tmp_path):
    from experiments.partial import load_study, make_jobs

    def steps(text):
        path = tmp_path / "study.toml"
        path.write_text(text)
        jobs = make_jobs(load_study(path))
        return {key.rsplit("/", 1)[1]: job.config["finetune"]["steps"] for key, (job, _) in jobs.items()
                if key.startswith("seed0/distance-12") and "/lr1e-3/" in key}

    plain = steps(TINY)
    assert set(plain.values()) == {10}
    longer = steps(TINY.replace("lrs = [1e-3, 3e-3]", "lrs = [1e-3, 3e-3]\nfinetune_by_mode = {readout = {steps = 40}}"))
    assert longer == {**plain, "readout-pretrained": 40, "readout-random": 40}


@pytest.mark.slow
def test_partial_study_end_to_end(tmp_path):
    from data_gen.tasks import task_spec
    from experiments.protocol import lr_name, score, study_sample
    from graphpath.core.checkpoint import load_model

    path = tmp_path / "study.toml"
    path.write_text(TINY)
    out = tmp_path / "out"
    assert main(["--config", str(path), "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "partial.json").read_text())
    names = [v["name"] for v in doc["variants"]]
    assert names == 2 * [f"{m}-{b}" for b in ("pretrained", "random") for m in ("full", "readout", "lora-r2")]
    assert [v["cross_task"] for v in doc["variants"]] == [False] * 6 + [True] * 6
    full, readout = doc["variants"][0], doc["variants"][1]
    assert full["trainable"] == doc["total_parameters"] and readout["trainable"] == 16 + 1
    assert doc["gate"]["jobs"] == 2 * 2 * (1 + 2 * 6) == len(doc["gate"]["verdicts"])
    assert len(doc["gate"]["lr_at_edge"]) == 12
    for row in doc["variants"]:
        assert row["lr"] == float(min(row["validation"], key=row["validation"].get))  # chosen on validation
        assert row["lr_at_edge"]  # a grid of two lrs has no inside: every choice is marked
        assert set(row["sets"]) == {"shift-tree"} and row["test"]["loss"]["n"] == 2
    # the reported test loss is the chosen lr's final model on the seed's test sample
    row = doc["variants"][2]
    assert row["pair"] == "distance-12--distance-onpath"
    job = out / "jobs" / "seed1" / row["pair"] / lr_name(row["lr"]) / row["name"]
    spec = task_spec("distance-onpath", n_max=4, max_vertices=5)
    from graphpath.core.config import from_dict, stage_specs

    spec = stage_specs(from_dict({"data": {"n_max": 5, "finetune_n_max": 4, "small_target": 4}}))["finetune"]
    sample, _ = study_sample("test", "partial", "distance-onpath", spec, 128, 1)
    assert row["per_seed"][1]["test"]["loss"] == pytest.approx(score(job, "finetune", sample)["loss"])
    # the readout-only job changed nothing but the read-out
    tuned, _ = load_model(out / "jobs" / "seed0" / row["pair"] / lr_name(1e-3) / "readout-pretrained")
    pre, _ = load_model(out / "jobs" / "seed0" / row["pair"] / "pretrain" / "checkpoints" / "pretrain-final.json")
    changed = {n for n, t in tuned.state_dict().items() if not (t == pre.state_dict()[n]).all()}
    assert changed == {"readout.weight", "readout.bias"}
    assert len(doc["body_tests"]) == 2 * 3 and all("log_ratio" in t for t in doc["body_tests"])
    assert (out / "figures" / "partial-finetune.html").is_file()
    assert doc["seconds"] > 0  # the page states the run's wall time


@pytest.mark.parametrize("preset", ["partial.toml", "partial-gpu.toml"])
def test_presets_load(preset):
    from pathlib import Path

    from experiments.partial import load_study

    study = load_study(Path(__file__).resolve().parents[1] / "experiments" / preset)
    assert set(study["modes"]) == {"full", "norm-embed", "readout", "lora"} and "random" in study["bodies"]
    assert len(study["seeds"]) >= 3 and study["ranks"] and len(study["lrs"]) >= 2
    assert any(a != "distance-12" for a, _ in study["pairs"])  # a cross-task pair
    assert study["answers"]["can"] and study["answers"]["cannot"]
