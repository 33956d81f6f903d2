"""graphpath.sweeps.search: specs validate in one line, trials become run configs scored on the
validation split at equal fractions of their budget, and a search runs, prunes, writes its study
into the output directory and continues where it stopped."""
import json
import math

import pytest

from graphpath.core.config import load_config
from graphpath.sweeps.search import SearchError, SearchSpec, load_spec, main, validation_curve

SPEC = """
name = "tiny-search"
trials = 3
seed = 0
rungs = 2
pruner = "median"
startup_trials = 1
examples = 640

[space]
"train.lr" = { low = 1e-4, high = 1e-2, log = true }
"train.batch_size" = { choices = [16, 32] }

[base]
name = "tiny-search"
[base.data]
n_max = 5
finetune_n_max = 4
small_target = 4
[base.model]
d_model = 8
n_layers = 1
n_heads = 1
[base.train]
steps = 7
batch_size = 16
eval_every = 3
eval_size = 32
validation_size = 64
log_every = 2
checkpoint_every = 1000
pack = true
"""


def write(tmp_path, text=SPEC):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def test_a_trial_is_a_run_config_with_steps_from_the_budget_and_a_validation_set(tmp_path):
    spec = load_spec(write(tmp_path))
    raw = spec.trial_config({"train.lr": 0.002, "train.batch_size": 32})
    path = tmp_path / "trial.toml"
    from graphpath.core.config import to_toml, from_dict

    path.write_text(to_toml(from_dict(raw)))
    train = load_config(path).train
    assert (train.lr, train.batch_size, train.steps) == (0.002, 32, math.ceil(640 / 32))
    assert train.eval_every == 20 // 4 and train.validation_size == 64
    other = from_dict(spec.trial_config({"train.lr": 0.002, "train.batch_size": 16})).train
    assert other.steps * other.batch_size == train.steps * train.batch_size  # equal examples


def test_curves_are_keyed_by_the_fraction_of_the_budget(tmp_path):
    lines = [{"stage": "pretrain", "step": s, "val_loss": 1.0 / s, "eval_loss": 9.0} for s in (5, 10, 20)]
    lines.append({"stage": "pretrain", "step": 3, "loss": 2.0})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    assert validation_curve(tmp_path, 20) == {250: 0.2, 500: 0.1, 1000: 0.05}  # val_loss, never eval_loss


@pytest.mark.parametrize("change,needle", [
    (('"train.lr" = { low = 1e-4, high = 1e-2, log = true }', '"train.nope" = { low = 1, high = 2 }'), "nope"),
    (('low = 1e-4, high = 1e-2', 'low = 1e-2, high = 1e-4'), "low < high"),
    (("trials = 3", "trials = 0"), "trials"),
    (('pruner = "median"', 'pruner = "magic"'), "pruner"),
    (("seed = 0", "seed = 0\nextra = 1"), "extra"),
    (('{ choices = [16, 32] }', '{ choices = [16, -4] }'), "batch_size"),
])
def test_bad_specs_are_one_line_exit_2(tmp_path, capsys, change, needle):
    path = write(tmp_path, SPEC.replace(*change))
    assert main([str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_spec_dataclass_checks_its_space():
    with pytest.raises(SearchError, match="at least one"):
        SearchSpec(name="x", base={}, space={})
    with pytest.raises(SearchError, match="log needs"):
        SearchSpec(name="x", base={}, space={"train.lr": {"low": 0.0, "high": 1e-3, "log": True}})


@pytest.mark.slow
def test_a_search_runs_prunes_and_continues(tmp_path, capsys):
    path, out = write(tmp_path), tmp_path / "out"
    assert main([str(path), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    doc = json.loads((out / "search.json").read_text())
    states = [t["state"] for t in doc["trials"]]
    assert len(states) == 3 and "COMPLETE" in states and set(states) <= {"COMPLETE", "PRUNED"}
    for trial in doc["trials"]:
        metrics = [json.loads(line) for line in (out / "trials" / str(trial["number"]) / "metrics.jsonl").open()]
        evaluated = [m for m in metrics if "val_loss" in m]
        assert evaluated and all(m["val_loss"] != m["eval_loss"] for m in evaluated)
        if trial["state"] == "COMPLETE":  # the objective is the last validation loss, not the held-out loss
            assert trial["value"] == evaluated[-1]["val_loss"] and evaluated[-1]["step"] == metrics[-1]["step"]
    best = min((t for t in doc["trials"] if t["state"] == "COMPLETE"), key=lambda t: t["value"])
    assert doc["best"]["number"] == best["number"]
    assert load_config(out / "best.toml").train.lr == best["params"]["train.lr"]
    assert (out / "study.log").is_file() and (out / "spec.toml").read_text().startswith(SPEC)

    assert main([str(path), "--out", str(out), "--workers", "1", "--quiet", "--trials", "4"]) == 0
    again = json.loads((out / "search.json").read_text())
    assert [t["params"] for t in again["trials"][:3]] == [t["params"] for t in doc["trials"]]
    assert len(again["trials"]) == 4  # the finished trials kept, one added

    capsys.readouterr()
    assert main([str(write(tmp_path, SPEC.replace("seed = 0", "seed = 1"))), "--out", str(out)]) == 2
    assert "another spec" in capsys.readouterr().err
