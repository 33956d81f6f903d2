"""One writer per output folder (graphpath_common.locks): a second writer exits 2 naming the folder
and the holder, before any work; a holder killed with SIGKILL leaves no lock behind."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graphpath_common.locks import FolderBusy, hold, lock_path

from every_command import NAMES, ROOT, commands
HOLDER = """
import sys, time
from graphpath_common.locks import hold
with hold(sys.argv[1], "a test holder", name=sys.argv[2] or None):
    print("held", flush=True)
    time.sleep(120)
"""


def start_holder(folder: Path, name: str = "") -> subprocess.Popen:
    """Another process holding `folder` (or its entry `name`) until killed."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), name], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout.readline().strip() == "held"
    return process


@pytest.fixture
def held(tmp_path):
    """(folder, holder process): tmp_path/held, held by another process for the test."""
    folder = tmp_path / "held"
    process = start_holder(folder)
    yield folder, process
    process.kill()
    process.wait()


def test_a_second_writer_is_refused_naming_the_folder_and_the_holder(held):
    folder, process = held
    with pytest.raises(FolderBusy) as refused:
        with hold(folder, "me"):
            pytest.fail("entered a folder another process holds")
    message = str(refused.value)
    assert str(folder) in message and f"pid {process.pid}" in message and "a test holder" in message


def test_a_lock_does_not_survive_kill_9_and_holding_nests(tmp_path):
    folder = tmp_path / "held"
    process = start_holder(folder)
    process.send_signal(signal.SIGKILL)
    process.wait()
    with hold(folder, "after the kill") as inside:  # no stale lock to clear by hand
        record = json.loads((folder / ".graphpath.lock.json").read_text())
        assert record["pid"] == os.getpid() and record["program"] == "after the kill"
        with hold(inside, "nested"):  # the same process: re-entrant
            pass
        assert (folder / ".graphpath.lock.json").exists()  # still held by the outer block
    assert not (folder / ".graphpath.lock.json").exists()


def test_a_refused_command_leaves_no_folder_it_created(tmp_path):
    with pytest.raises(ValueError):
        with hold(tmp_path / "new" / "deeper", "me"):
            raise ValueError("refused before writing")
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_two_trainings_into_one_directory(tmp_path, capsys):
    """The issue's case: a second `train --out R` while the first runs is refused; the first run's
    record is its own (each step once, its seed)."""
    from graphpath.training.run import main

    from test_resume_rule import TINY

    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen([sys.executable, "-m", "graphpath.train", "--out", str(run), *TINY, "--seed", "0",
                              "--stage", "pretrain", "--train.steps", "400", "--train.checkpoint_every", "100"],
                             env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / ".graphpath.lock.json").exists() and time.time() < deadline:
        time.sleep(0.1)
    assert main(["--out", str(run), *TINY, "--seed", "1", "--stage", "pretrain", "--train.steps", "400"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{run} is in use by python -m graphpath.train (pid {first.pid}" in err
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == len(set(steps)) == 80
    assert "seed = 0" in (run / "config.toml").read_text()


@pytest.mark.parametrize("name", [n for n in NAMES if n != "data_gen.build"])  # a dataset: the test below
def test_every_command_refuses_a_folder_in_use_before_any_work(held, capsys, name):
    folder, process = held
    started = time.perf_counter()
    assert commands(folder)[name]() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{folder} is in use by a test holder (pid {process.pid}" in err[0]
    assert time.perf_counter() - started < 20  # refused up front, not after the work
    assert sorted(p.name for p in folder.iterdir()) == [".graphpath.lock", ".graphpath.lock.json"]


def test_a_dataset_being_built_is_refused_to_a_second_builder(tmp_path, capsys):
    from data_gen.build import main as build

    process = start_holder(tmp_path, "ds")
    try:
        assert build(["--preset", "pretrain", "--size", "64", "--seed", "0",
                      "--out", str(tmp_path / "ds")]) == 2
    finally:
        process.kill()
        process.wait()
    err = capsys.readouterr().err
    assert f"{tmp_path / 'ds'} is in use by a test holder" in err and not (tmp_path / "ds").exists()
    assert lock_path(tmp_path, "ds").name == ".ds.graphpath.lock"
