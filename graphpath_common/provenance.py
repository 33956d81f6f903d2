"""Provenance: how a run directory was made, recorded by every command that writes one.

`provenance.json` holds {"schema": 1, "invocations": [entry, ...]}, one entry per command that
trained into the directory (a resumed run adds one). An entry:

    command       the command line as given (`sys.argv`, or the Python call that stood for it)
    package       {"name": "graphpath", "version": installed version or null}
    git           {"commit": hex, "dirty": bool (tracked files differ from the commit)} of the
                  source tree this code ran from, or null when it is not a git checkout
    python, platform, host
    libraries     {"torch": version, "numpy": version} (installed versions; null if absent)
    device, threads   what the command ran on (as the caller reports it)
    started_utc, ended_utc   ISO 8601 seconds; ended_utc null while running or when killed
    status        "running" | "finished" | "stopped" (ended early, resumable) | "failed: <one line>"
                  | "interrupted"

Tools that write their own JSON (eval.json, perturb.json, ...) carry one such entry under
`provenance` instead of appending here. provenance.json is read, extended and rewritten while the
run directory is held (graphpath_common.locks; re-entrant, so a command that holds it already
keeps holding it), as strict JSON (graphpath_common.jsonfile). Torch-free: versions come from the
installed package metadata, so recording never imports a library.
"""
from __future__ import annotations

import datetime
import platform
import socket
import subprocess
import sys
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from .jsonfile import write_json
from .locks import hold
from .rundir import RunDir

SCHEMA = 1
SOURCE = Path(__file__).resolve().parent.parent  # the checkout (or site-packages) the code runs from


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_state(source: Path = SOURCE) -> dict | None:
    """{"commit", "dirty"} of the git checkout holding `source`, or None outside one."""
    def git(*args) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    changes = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": None if changes is None else bool(changes.strip())}


def command_line(prog: str, argv: list[str] | None) -> list[str]:
    """The command as typed: `prog` and its arguments (`sys.argv[1:]` when `argv` is None)."""
    return [prog, *(sys.argv[1:] if argv is None else argv)]


def entry(command: list[str] | str | None = None, device: str | None = None, threads: int | None = None) -> dict:
    """A provenance entry for a command starting now (status "running")."""
    if command is None:
        command = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else ["python"]
    return {"command": command if isinstance(command, str) else list(map(str, command)),
            "package": {"name": "graphpath", "version": _version("graphpath")},
            "git": git_state(), "python": platform.python_version(), "platform": platform.platform(),
            "host": socket.gethostname(),
            "libraries": {name: _version(name) for name in ("torch", "numpy")},
            "device": None if device is None else str(device), "threads": threads,
            "started_utc": now_utc(), "ended_utc": None, "status": "running"}


def finish(record: dict, status: str) -> dict:
    record.update(ended_utc=now_utc(), status=status)
    return record


def _write(run: RunDir, invocations: list[dict]) -> None:
    write_json(run.provenance, {"schema": SCHEMA, "invocations": invocations})


def read_invocations(run_dir) -> list[dict]:
    """The run directory's recorded invocations, oldest first ([] for an older run)."""
    doc = RunDir(run_dir).read_provenance()
    return list(doc.get("invocations", [])) if doc else []


@contextmanager
def recorded(run_dir, command=None, device: str | None = None, threads: int | None = None):
    """Append an entry to `run_dir`/provenance.json for the duration of the block; its status on
    leaving: "finished", or what the block sets in `entry["status"]` ("stopped"), "interrupted"
    on Ctrl-C, "failed: <first line>" on an exception (which is re-raised). The directory is held
    for the block (graphpath_common.locks): no other process appends between our read and write."""
    run = RunDir(run_dir)
    record = entry(command, device, threads)
    program = record["command"] if isinstance(record["command"], str) else " ".join(record["command"][:1])
    with hold(run.path, program):
        previous = read_invocations(run)
        _write(run, previous + [record])
        try:
            yield record
        except KeyboardInterrupt:
            _write(run, previous + [finish(record, "interrupted")])
            raise
        except BaseException as error:
            text = (str(error).strip().splitlines() or [type(error).__name__])[0]
            _write(run, previous + [finish(record, f"failed: {text}")])
            raise
        _write(run, previous + [finish(record, "finished" if record["status"] == "running" else record["status"])])


def describe_invocation(item: dict) -> tuple[str, str]:
    """(command line, one line of the rest) of an entry, for a report's or page's footer."""
    git = item.get("git") or {}
    commit = (git.get("commit") or "")[:10] or "no git checkout"
    dirty = " (uncommitted changes)" if git.get("dirty") else ""
    command = item.get("command")
    command = " ".join(command) if isinstance(command, list) else str(command)
    libraries = item.get("libraries") or {}
    details = (f"graphpath {(item.get('package') or {}).get('version')} at {commit}{dirty}; "
               f"torch {libraries.get('torch')}, numpy {libraries.get('numpy')}, Python {item.get('python')}; "
               f"{item.get('device')}, {item.get('threads')} thread(s), on {item.get('host')}; "
               f"{item.get('started_utc')} to {item.get('ended_utc') or '(not ended)'}: {item.get('status')}")
    return command, details
