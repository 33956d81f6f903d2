"""The Python API and provenance.json keep the command lines' writing rules: `graphpath.train` and
`graphpath.evaluate` hold their folder (another writer: FolderBusy; an unwritable one: WriteError,
before any work), a resume from Python follows the resume rule, provenance.json is read and
rewritten under the folder's lock as strict JSON, and a checkpoint records both what it was
trained on and its held-out loss."""
from __future__ import annotations

import json
import math
import shutil

import pytest

import graphpath
from graphpath_common import provenance
from graphpath_common.cli import UsageError
from graphpath_common.files import WriteError
from graphpath_common.locks import FolderBusy, hold

from every_command import FIXTURE
from test_front_door import TINY
from test_locks import start_holder

QUIET = {"evaluate": False, "figures": False, "threads": 1, "progress": False}


@pytest.fixture
def stopped(tmp_path):
    """A run stopped after 2 of its 4 pre-training steps (a checkpoint at step 2)."""
    return graphpath.train(None, tmp_path / "run", overrides={**TINY, "train.checkpoint_every": 1}, stop_after=2,
                           **QUIET)


def test_train_and_evaluate_from_python_refuse_a_folder_another_process_writes(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    before = sorted(p.name for p in run.iterdir())
    holder = start_holder(run)
    try:
        with pytest.raises(FolderBusy, match=f"{run} is in use by a test holder \\(pid {holder.pid}"):
            graphpath.train(None, run, overrides=TINY, **QUIET)
        with pytest.raises(FolderBusy, match=f"{run} is in use by a test holder"):
            graphpath.evaluate(run, sets=["pretrain"], size=32, cache_dir=None, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".graphpath.lock")) == before


def test_train_and_evaluate_from_python_find_an_unwritable_folder_first(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(WriteError, match=f"{blocker} is a file, not a folder"):
        graphpath.train(None, blocker / "run", overrides=TINY, **QUIET)
    with pytest.raises(WriteError, match=f"{blocker} is a file, not a folder"):
        graphpath.evaluate(blocker / "run", sets=["pretrain"], size=32, cache_dir=None, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_a_resume_from_python_follows_the_resume_rule(stopped):
    config = stopped.config.read_bytes()
    with pytest.raises(UsageError, match="model.d_model \\(16 -> 32\\)"):
        graphpath.train(None, stopped.path, resume=True, overrides={"model.d_model": 32}, **QUIET)
    assert stopped.config.read_bytes() == config and not stopped.resumes.exists()
    graphpath.train(None, stopped.path, resume=True, overrides={"train.lr": 2e-3}, **QUIET)
    (record,) = json.loads(stopped.resumes.read_text())
    assert record["stage"] == "pretrain" and record["step"] == 2 and record["changed"] == {"train.lr": [0.001, 0.002]}
    assert stopped.finished("finetune")
    statuses = [item["status"] for item in json.loads(stopped.provenance.read_text())["invocations"]]
    assert statuses == ["stopped", "finished"]


def test_a_checkpoint_records_its_contract_and_its_heldout_loss(stopped):
    for path in stopped.checkpoint_files("pretrain"):
        info = json.loads(path.read_text())
        assert list(info["stages"]) == ["pretrain"] and info["stages"]["pretrain"]["task"] == "distance-12"
        assert math.isfinite(info["heldout_loss"])
    trained = graphpath.load(stopped.path, "pretrain")
    assert trained.step == 2 and trained.info["heldout_loss"] == json.loads(
        stopped.checkpoint("pretrain", 2).read_text())["heldout_loss"]


def test_provenance_is_written_under_the_folder_lock_as_strict_json(tmp_path):
    run = tmp_path / "run"
    with provenance.recorded(run, ["a command"], threads=1) as entry:
        entry["threads"] = float("nan")  # nothing a reader could not parse, whatever an entry holds
    (item,) = json.loads(run.joinpath("provenance.json").read_text())["invocations"]
    assert item["threads"] is None and item["status"] == "finished"
    with hold(run, "the command that writes the run"):  # re-entrant: its own lock does not stop it
        with provenance.recorded(run, ["a second command"]):
            pass
    holder = start_holder(run)
    try:
        with pytest.raises(FolderBusy, match="in use by a test holder"):
            with provenance.recorded(run, ["a third command"]):
                pytest.fail("appended to provenance.json while another process held the folder")
    finally:
        holder.kill()
        holder.wait()
    commands = [item["command"] for item in json.loads(run.joinpath("provenance.json").read_text())["invocations"]]
    assert commands == [["a command"], ["a second command"]]


def test_ctrl_c_from_python_names_the_command_that_resumes(tmp_path, monkeypatch):
    from graphpath.training import run as training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(training, "train_stage", interrupted)
    with pytest.raises(KeyboardInterrupt) as caught:
        graphpath.train(None, tmp_path / "run", overrides=TINY, **QUIET)
    assert caught.value.continue_with == f"python -m graphpath.train --out {tmp_path / 'run'} --resume"
    (item,) = json.loads((tmp_path / "run" / "provenance.json").read_text())["invocations"]
    assert item["status"] == "interrupted" and not (tmp_path / "run" / ".graphpath.lock.json").exists()
