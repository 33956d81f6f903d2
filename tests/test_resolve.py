"""What a model was trained on (graphpath.core.contract) and the one resolver (graphpath.core.resolve):
recorded by training, rebuilt for older checkpoints, checked against config.toml, and every
analysis tool on a run trained on other tasks than the study's."""
from __future__ import annotations

import json

import pytest

from data_gen import GraphSpec
from graphpath.core.checkpoint import CheckpointError
from graphpath.core.config import load_config, stage_specs
from graphpath.core.resolve import load, load_runs
from graphpath.training.run import main as train_main

TINY = ["--data.n_max", "5", "--data.finetune_n_max", "4", "--data.small_target", "4",
        "--data.pretrain_threshold", "3", "--data.finetune_threshold", "2",
        "--model.d_model", "16", "--model.n_layers", "1", "--train.steps", "3", "--finetune.steps", "2",
        "--train.batch_size", "32", "--finetune.batch_size", "32", "--train.eval_size", "64",
        "--finetune.eval_size", "64", "--no-eval", "--no-figures", "--threads", "1"]
OTHER_TASKS = ["--data.pretrain_task", "degree", "--data.finetune_task", "reachable"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    assert train_main(["--out", str(root / "study"), *TINY]) == 0
    assert train_main(["--out", str(root / "other"), *TINY, *OTHER_TASKS]) == 0
    assert train_main(["--out", str(root / "group"), "--seeds", "3,1", *TINY]) == 0
    return root


def stages_of(run, name):
    return json.loads((run / "checkpoints" / f"{name}.json").read_text())["stages"]


def test_checkpoints_record_every_trained_stage_task_and_spec(runs):
    config = load_config(runs / "other" / "config.toml")
    specs = stage_specs(config)
    pre, tuned = stages_of(runs / "other", "pretrain-final"), stages_of(runs / "other", "finetune-final")
    assert list(pre) == ["pretrain"] and list(tuned) == ["pretrain", "finetune"]
    assert tuned["pretrain"]["task"] == "degree" and tuned["finetune"]["task"] == "reachable"
    for stage in ("pretrain", "finetune"):
        assert GraphSpec.from_dict(tuned[stage]["spec"]) == specs[stage] and tuned[stage]["dataset"] is None
    study = stages_of(runs / "study", "finetune-final")
    assert [study[s]["task"] for s in study] == ["distance-12", "distance-onpath"]


def test_the_resolver_reads_runs_groups_checkpoints_and_stems(runs):
    model = load(runs / "other")
    assert model.stage == "finetune" and model.answers == "reachable" and not model.is_study
    assert model.spec() == model.spec("finetune")  # degree is not what it answers now
    assert load(runs / "other", "pretrain").answers == "degree"
    assert load(runs / "study").spec() == load(runs / "study").spec("pretrain")
    for path in (runs / "study" / "checkpoints" / "finetune-final.json",
                 runs / "study" / "checkpoints" / "finetune-final.safetensors",
                 runs / "study" / "checkpoints" / "finetune-final", runs / "study" / "checkpoints"):
        found = load(path)
        assert found.checkpoint.name == "finetune-final.json" and found.run.path == runs / "study"
    first = load(runs / "group")
    assert first.run.path == runs / "group" / "seed-1" and first.group.path == runs / "group"
    assert [m.run.path.name for m in load_runs(runs / "group")] == ["seed-1", "seed-3"]
    assert "first of 2 seeds" in first.describe() and first.description()["trained_on"]["finetune"]["task"] == \
        "distance-onpath"


def test_bad_paths_are_one_checkpoint_error(runs, tmp_path):
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("x")
    for path, needle in ((tmp_path / "missing", "no run directory or checkpoint"),
                         (tmp_path / "foreign", "is not a run directory")):
        with pytest.raises(CheckpointError, match=needle) as caught:
            load(path)
        assert "\n" not in str(caught.value)


def test_a_checkpoint_from_before_contracts_loads_as_its_config_says(runs, tmp_path):
    import shutil

    for name in ("study", "other"):
        copy = tmp_path / name
        shutil.copytree(runs / name, copy)
        for json_path in (copy / "checkpoints").glob("*.json"):
            info = json.loads(json_path.read_text())
            del info["stages"]  # as written before checkpoints recorded their data contract
            json_path.write_text(json.dumps(info))
    assert load(tmp_path / "study").legacy and load(tmp_path / "study").is_study
    assert load(tmp_path / "other").answers == "reachable"  # config.toml, not the study's default
    loose = tmp_path / "loose"
    loose.mkdir()
    for path in (tmp_path / "other" / "checkpoints").glob("finetune-final*"):
        shutil.copy(path, loose / path.name)
    assert load(loose).answers == "distance"  # no config beside it: the study's tasks, as then


def test_a_config_that_disagrees_with_the_checkpoint_is_refused(runs, tmp_path):
    import shutil

    shutil.copytree(runs / "other", tmp_path / "run")
    config = tmp_path / "run" / "config.toml"
    config.write_text(config.read_text().replace('pretrain_task = "degree"', 'pretrain_task = "distance-any"'))
    with pytest.raises(CheckpointError, match="records pretrain task 'degree', its run's config.toml says"):
        load(tmp_path / "run")


def one_line_exit_2(capsys, code, needle):
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and needle in err, err


def test_every_tool_on_a_run_trained_on_other_tasks(runs, capsys, tmp_path):
    """Evaluate and interpret measure the study's distance sets: refused. Perturb, basin and llc
    analyse the model on the data it was trained on, refuse study sets it does not answer and the
    hand-built model beside it (which answers distances)."""
    from graphpath.analysis import basin, interpret, llc, perturb
    from graphpath.evaluation import suite

    run = str(runs / "other")
    one_line_exit_2(capsys, suite.main([run, "--quiet", "--out", str(tmp_path / "e")]), "trained on pretrain degree")
    one_line_exit_2(capsys, interpret.main([run, "--size", "64", "--no-figures", "--out", str(tmp_path / "i.json")]),
                    "measures the study's distance tasks only")
    quick = ["--sigmas", "0.1", "--seeds", "0", "--steps", "2", "--eval-every", "1", "--eval-size", "32",
             "--batch-size", "16", "--no-figures", "--quiet"]
    one_line_exit_2(capsys, perturb.main(["--model", run, *quick, "--data", "test-any-large",
                                          "--out", str(tmp_path / "p.json")]), "trained to answer 'reachable'")
    one_line_exit_2(capsys, perturb.main(["--model", run, *quick, "--with-handcrafted",
                                          "--out", str(tmp_path / "p.json")]), "hand-built model answers distances")
    assert not (tmp_path / "p.json").exists()
    assert perturb.main(["--model", run, *quick, "--out", str(tmp_path / "p.json")]) == 0
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["data"]["task"] == "reachable" and doc["target"]["trained_on"]["finetune"]["task"] == "reachable"
    assert doc["provenance"]["command"][:3] == ["python -m graphpath.perturb", "--model", run]
    assert doc["provenance"]["status"] == "finished" and doc["provenance"]["ended_utc"]
    capsys.readouterr()
    assert basin.main([run, "--budget", "2", "--steps", "2", "--seeds", "0", "--quiet",
                       "--out", str(tmp_path / "b.json")]) == 0
    assert "no hand-built models beside" in capsys.readouterr().err
    basin_doc = json.loads((tmp_path / "b.json").read_text())
    assert set(basin_doc["models"]) == {"learned"} and basin_doc["provenance"]["command"][1] == run
    one_line_exit_2(capsys, llc.main([run, "--chains", "1", "--steps", "2", "--burn-in", "1", "--data-size", "8",
                                      "--quiet", "--out", str(tmp_path / "l.json")]), "trained to answer 'reachable'")
    assert not (tmp_path / "l.json").exists()
