"""Outputs that cannot be written: every command finds out before its work (one line naming the
path, exit 2, nothing written); a write that fails mid-run (a full disk) is the same one line, and
what was complete before it is kept.

Tests run as root, where permissions do not stop a write: an output under a regular file stands in
for an unwritable folder, and a monkeypatched writer raising ENOSPC for a full disk."""
import errno
import json
import time
from pathlib import Path

import pytest

from graphpath.core.checkpoint import verify_checkpoint

from every_command import NAMES, commands
from test_resume_rule import TINY


@pytest.mark.parametrize("name", NAMES)
def test_an_unwritable_output_is_one_line_before_any_work(tmp_path, capsys, name):
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where a folder should be")
    started = time.perf_counter()
    assert commands(blocker / "out")[name]() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write" in err[0] and f"{blocker} is a file, not a folder" in err[0]
    assert time.perf_counter() - started < 20  # found out up front, not after the work
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def full_disk_at(monkeypatch, fragment: str):
    """Path.write_bytes raises ENOSPC for a temporary file whose name holds `fragment`."""
    real = Path.write_bytes

    def write_bytes(self, data):
        if fragment in self.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)
    monkeypatch.setattr(Path, "write_bytes", write_bytes)


def test_a_full_disk_mid_training_is_one_line_and_keeps_the_checkpoints_written(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    full_disk_at(monkeypatch, "pretrain-30.safetensors")
    from graphpath.training.run import main

    assert main(["--out", str(run), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"python -m graphpath.train: cannot write {run / 'checkpoints' / 'pretrain-30.safetensors'}: "
                   "No space left on device")
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == [f"pretrain-{s}.{x}" for s in (10, 20) for x in ("json", "safetensors", "state.safetensors")]
    for step in (10, 20):
        verify_checkpoint(run / "checkpoints" / f"pretrain-{step}.json")
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [5, 10, 15, 20, 25, 30]
    monkeypatch.undo()
    assert main(["--out", str(run), "--resume", "--no-eval", "--no-figures"]) == 0  # space again: it continues


def test_a_full_disk_for_the_evaluation_keeps_what_was_written(tmp_path, monkeypatch, capsys):
    from graphpath.evaluation.suite import main as evaluate

    out = tmp_path / "out"
    full_disk_at(monkeypatch, "report.md")
    assert evaluate(["--model", "handcrafted", "--n", "4", "--out", str(out), "--size", "64", "--grid-size", "4",
                     "--sets", "pretrain", "grid", "--quiet", "--no-cache"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"python -m graphpath.evaluate: cannot write {out / 'report.md'}: No space left on device"
    assert json.loads((out / "eval.json").read_text())["sets"]  # written whole before the disk filled
    assert list((out / "figures").glob("*.html")) and not list(out.rglob("*.tmp"))
    assert not (out / "report.md").exists()


def test_a_metrics_line_is_appended_whole_or_not_at_all(tmp_path):
    from graphpath_common.files import WriteError, append_line

    with pytest.raises(WriteError, match="cannot write /dev/full: No space left on device"):
        append_line("/dev/full", json.dumps({"step": 1}))
    log = tmp_path / "metrics.jsonl"
    append_line(log, '{"step": 1}')
    append_line(log, '{"step": 2}\n')
    assert log.read_text() == '{"step": 1}\n{"step": 2}\n'
