"""graphpath_common.rundir: the run directory's names, seed groups, checkpoint order and readers,
against directories built by hand; and graphpath_common.provenance against git itself."""
from __future__ import annotations

import json
import subprocess

import pytest

from graphpath_common import provenance
from graphpath_common.rundir import RunDir, RunDirError, checkpoint_stem, read_json, read_jsonl, run_names


def touch(path, text="{}"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_files_are_named_inside_the_directory(tmp_path):
    run = RunDir(tmp_path / "r")
    names = {"config": "config.toml", "metrics": "metrics.jsonl", "phases": "phases.json", "eval": "eval.json",
             "report": "report.md", "perturb": "perturb.json", "basin": "basin.json", "llc": "llc.json",
             "interpret": "interpret.json", "provenance": "provenance.json"}
    for attribute, name in names.items():
        assert getattr(run, attribute) == tmp_path / "r" / name
    assert run.checkpoint("pretrain") == tmp_path / "r" / "checkpoints" / "pretrain-final.json"
    assert run.checkpoint("finetune", 40) == tmp_path / "r" / "checkpoints" / "finetune-40.json"
    assert run.weights("finetune").name == "finetune-final.safetensors"
    assert run.perturb_variant("handcrafted").name == "perturb-handcrafted.json"
    with pytest.raises(ValueError, match="unknown stage"):
        checkpoint_stem("warmup", 3)
    with pytest.raises(ValueError, match="non-negative integer"):
        checkpoint_stem("pretrain", -1)


def test_checkpoints_in_training_order_and_incomplete_ones_unseen(tmp_path):
    run = RunDir(tmp_path)
    for name in ("finetune-final", "pretrain-100", "pretrain-final", "pretrain-20", "finetune-5"):
        touch(run.checkpoints / f"{name}.json")
    touch(run.checkpoints / "pretrain-300.safetensors")  # tensors without JSON: not complete
    touch(run.checkpoints / "notes.json")
    order = [p.stem for p in run.checkpoint_files()]
    assert order == ["pretrain-20", "pretrain-100", "pretrain-final", "finetune-5", "finetune-final"]
    assert [p.stem for p in run.checkpoint_files("finetune")] == ["finetune-5", "finetune-final"]
    assert run.finished("pretrain") and run.finished("finetune")


def test_seed_groups_are_found_by_seed_and_only_with_a_config(tmp_path):
    group = RunDir(tmp_path / "g")
    for seed in (10, 2, 0):
        touch(group.seed(seed).config, "seed = 1\n")
    (group.path / "seed-7").mkdir()  # no config.toml: not a seed run
    (group.path / "seed-x").mkdir()
    assert [s.path.name for s in group.seeds] == ["seed-0", "seed-2", "seed-10"]
    assert group.is_group and group.first == group.seed(0) and group.runs() == group.seeds
    touch(group.checkpoints / "pretrain-final.json")  # checkpoints of its own: a run, never a group
    assert not group.is_group and group.first == group and group.runs() == (group,)
    assert RunDir(tmp_path / "missing").seeds == ()


def test_perturb_files_studies_and_the_interpret_file_of_an_older_run(tmp_path):
    run = RunDir(tmp_path)
    for name in ("perturb-zeta.json", "perturb-handcrafted.json", "perturb.json"):
        touch(tmp_path / name)
    assert [p.name for p in run.perturb_files()] == ["perturb.json", "perturb-handcrafted.json", "perturb-zeta.json"]
    touch(run.study("b") / "edt.json")
    touch(run.study("a") / "edt.json")
    assert [p.parent.name for p in run.study_files("edt")] == ["a", "b"] and run.study_files("mixture") == []
    assert run.interpret.name == "interpret.json"
    touch(tmp_path / "inspect.json")  # written while the command was graphpath.inspect
    assert run.interpret.name == "inspect.json"
    touch(tmp_path / "interpret.json")
    assert run.interpret.name == "interpret.json"


def test_readers_name_the_file_and_line(tmp_path):
    bad = touch(tmp_path / "m.jsonl", '{"step": 1}\n\n{"step": 2\n')
    with pytest.raises(RunDirError, match=r"m.jsonl line 3 is not valid JSON"):
        read_jsonl(bad)
    assert read_jsonl(touch(tmp_path / "ok.jsonl", '{"a": 1}\n\n{"a": 2}\n')) == [{"a": 1}, {"a": 2}]
    assert read_jsonl(tmp_path / "absent.jsonl") == []
    with pytest.raises(RunDirError, match="must hold a JSON object"):
        read_json(touch(tmp_path / "list.json", "[1]"))
    with pytest.raises(KeyError):  # the caller's error type is used
        read_json(tmp_path / "absent.json", KeyError)


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_git_state_matches_git_and_sees_uncommitted_changes(tmp_path):
    outside = tmp_path / "plain"
    outside.mkdir()
    assert provenance.git_state(outside) is None  # pytest's temporary folders are no checkout
    tmp_path = tmp_path / "repo"
    tmp_path.mkdir()
    git("init", "-q", cwd=tmp_path)
    touch(tmp_path / "a.py", "x = 1\n")
    git("add", "a.py", cwd=tmp_path)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one", cwd=tmp_path)
    state = provenance.git_state(tmp_path)
    assert state == {"commit": git("rev-parse", "HEAD", cwd=tmp_path), "dirty": False}
    touch(tmp_path / "untracked.py")  # untracked files do not make the checkout dirty
    assert provenance.git_state(tmp_path)["dirty"] is False
    touch(tmp_path / "a.py", "x = 2\n")
    assert provenance.git_state(tmp_path)["dirty"] is True


def test_recorded_appends_one_entry_per_invocation_with_its_end(tmp_path):
    with provenance.recorded(tmp_path, ["cmd", "--a"], device="cpu", threads=1):
        during = json.loads((tmp_path / "provenance.json").read_text())["invocations"]
        assert during[-1]["status"] == "running" and during[-1]["ended_utc"] is None
    with pytest.raises(RuntimeError):
        with provenance.recorded(tmp_path, ["cmd", "--b"]):
            raise RuntimeError("the loss exploded\nsecond line")
    with pytest.raises(KeyboardInterrupt):
        with provenance.recorded(tmp_path, ["cmd", "--c"]):
            raise KeyboardInterrupt
    with provenance.recorded(tmp_path, "graphpath.train(...)") as record:
        record["status"] = "stopped"
    rows = provenance.read_invocations(tmp_path)
    assert [r["status"] for r in rows] == ["finished", "failed: the loss exploded", "interrupted", "stopped"]
    assert rows[0]["command"] == ["cmd", "--a"] and rows[0]["device"] == "cpu" and rows[0]["threads"] == 1
    assert all(r["ended_utc"] >= r["started_utc"] for r in rows)
    assert rows[0]["libraries"]["torch"] and rows[0]["package"]["name"] == "graphpath"
    command, details = provenance.describe_invocation(rows[0])
    assert command == "cmd --a" and "cpu, 1 thread(s)" in details and "finished" in details


def test_pooled_runs_are_named_by_their_seeds_and_only_then():
    """The report and the page label a pooled evaluation's per-run rows 'seed S' (the group's own
    seed-<S> directories), not by list position; without distinct seeds, or for another count, 'run i'."""
    doc = {"primary": "learned", "models": {"learned": {"info": [{"seed": 3}, {"seed": 0}, {"seed": 7}]}}}
    assert run_names(doc, 3) == ["seed 3", "seed 0", "seed 7"]
    assert run_names(doc, 2) == ["run 0", "run 1"]
    doc["models"]["learned"]["info"][2]["seed"] = 3
    assert run_names(doc, 3) == ["run 0", "run 1", "run 2"]
    assert run_names({}, 1) == ["run 0"]
