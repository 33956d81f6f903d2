"""Ctrl-C (a real SIGINT to the process) ends every command line with one line, exit 130, and no
half-written file: each command is started, interrupted once it holds its output folder and is
working, and its folder is checked."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from every_command import ROOT, tiny_grid
from test_resume_rule import TINY

pytestmark = pytest.mark.slow

def cases(tmp_path: Path) -> dict:
    """{name: (argv after python -m, the folder it writes, the lock file that says it has begun)}."""
    (tmp_path / "grid.toml").write_text(tiny_grid("stop", [0, 1], 20000, 50))
    run, out = tmp_path / "run", tmp_path / "out"
    return {
        "graphpath.train": (["graphpath.train", "--out", str(run), *TINY, "--train.steps", "20000"], run,
                            run / "metrics.jsonl"),
        "graphpath.evaluate": (["graphpath.evaluate", "--model", "handcrafted", "--n", "12", "--out", str(out),
                                "--no-cache", "--size", "20000"], out, out / ".graphpath.lock.json"),
        "graphpath.perturb": (["graphpath.perturb", "--model", "handcrafted", "--n", "6", "--steps", "20000",
                               "--out", str(out / "perturb.json")], out, out / ".graphpath.lock.json"),
        "graphpath.llc": (["graphpath.llc", "handcrafted", "--n", "6", "--steps", "20000", "--out",
                           str(out / "llc.json")], out, out / ".graphpath.lock.json"),
        "graphpath.sweep": (["graphpath.sweep", str(tmp_path / "grid.toml"), "--out", str(out), "--workers", "2"],
                            out, out / "jobs" / "seed=1" / "checkpoints"),
        "data_gen.build": (["data_gen.build", "--preset", "pretrain", "--size", "3000000", "--seed", "0",
                            "--out", str(out / "ds")], out, out / ".ds.graphpath.lock.json"),
    }


@pytest.mark.parametrize("name", ["graphpath.train", "graphpath.evaluate", "graphpath.perturb", "graphpath.llc",
                                  "graphpath.sweep", "data_gen.build"])
def test_ctrl_c_is_one_line_exit_130_and_nothing_half_written(tmp_path, name):
    argv, folder, begun = cases(tmp_path)[name]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", *argv], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not begun.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # well into the work
    assert process.poll() is None, process.stderr.read()[-2000:]
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    last = err.strip().replace("\r", "\n").splitlines()[-1]
    assert last.startswith(f"python -m {name}: interrupted"), err[-2000:]
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]  # nothing half-written
    for path in folder.rglob("*.json"):
        json.loads(path.read_text())  # every JSON left is whole
    if name == "graphpath.train":
        assert last.endswith(f"continue from the last checkpoint with python -m graphpath.train --out {folder} --resume")
    if name == "data_gen.build":
        assert not (folder / "ds").exists() and not list(folder.glob(".tmp-*"))


def test_ctrl_c_caught_after_passing_through_an_eval_still_exits_130(tmp_path):
    """CPython 3.11 notes a KeyboardInterrupt that passed through `eval` of a string as unhandled,
    and a `python -m` process then ends by SIGINT (-2) whatever status it returns; numpy.f2py's
    evals, run while numba loads, made `graphpath.perturb` end so when Ctrl-C came at that moment."""
    (tmp_path / "evals.py").write_text(
        "import os, sys\n"
        "from graphpath_common.cli import run_cli\n"
        "def body(argv):\n"
        "    return eval('os.kill(os.getpid(), 2) or sum(range(10 ** 8))')\n"
        "sys.exit(run_cli('python -m evals', body, None))\n")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{tmp_path}"}
    done = subprocess.run([sys.executable, "-m", "evals"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 130 and done.stderr.startswith("python -m evals: interrupted"), done.stderr
