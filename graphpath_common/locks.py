"""One writer per output folder: a run directory, a study's or a sweep's folder, a dataset.

    with hold(out, "python -m graphpath.train"):
        ...   # write into out

`hold` checks that the folder can be written (graphpath_common.files.ensure_writable), then
takes an exclusive lock on `<folder>/.graphpath.lock` with the `filelock` package (an OS `flock`
on POSIX: the kernel releases it when the holding process ends, even by kill -9, so a crash never
leaves a stale lock to clear by hand). While held, `<folder>/.graphpath.lock.json` names the
holder: pid, host, program, its command line and since when (UTC). A second process asking for
the same folder gets `FolderBusy` at once, a one-line error naming the folder and the holder
(exit 2 on every command line).

Holding is re-entrant within a process (training scores its run through graphpath.evaluation,
which holds the same folder): only the outermost `hold` locks and releases. A command that was
refused or failed before writing anything leaves no folder behind that it created itself.
"""
from __future__ import annotations

import datetime
import json
import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from .files import ensure_writable
from .jsonfile import write_json

LOCK_NAME = ".graphpath.lock"
HOLDER_NAME = ".graphpath.lock.json"
_held: dict[Path, int] = {}  # folders this process holds -> nesting depth


class FolderBusy(Exception):
    """Another process is writing the folder; one line naming it and its holder, exit 2."""


def holder(folder) -> dict | None:
    """The holder record of `folder`'s lock as its holder wrote it (None if absent or unreadable)."""
    try:
        record = json.loads((Path(folder) / HOLDER_NAME).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def describe(record: dict | None) -> str:
    if not record:
        return "another process (it has not named itself yet)"
    argv = " ".join(str(a) for a in record.get("argv") or [])
    return (f"{record.get('program', 'a graphpath command')} (pid {record.get('pid')} on {record.get('host')}, "
            f"since {record.get('since')}{', command: ' + argv if argv else ''})")


@contextmanager
def hold(folder, program: str):
    """Hold `folder` (created if missing) for writing while the block runs; FolderBusy if another
    process holds it, graphpath_common.files.WriteError if it cannot be written."""
    folder = Path(folder)
    created = not folder.exists()
    ensure_writable(folder)
    key = folder.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield folder
        finally:
            _held[key] -= 1
        return
    lock = FileLock(folder / LOCK_NAME, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise FolderBusy(f"{folder} is in use by {describe(holder(folder))}; wait for it to finish, "
                         "or write elsewhere") from None
    _held[key] = 1
    clean = False
    try:
        write_json(folder / HOLDER_NAME, {
            "pid": os.getpid(), "host": socket.gethostname(), "program": program, "argv": sys.argv,
            "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
        yield folder
        clean = True
    finally:
        del _held[key]
        (folder / HOLDER_NAME).unlink(missing_ok=True)
        if not clean and created and {p.name for p in folder.iterdir()} <= {LOCK_NAME}:
            (folder / LOCK_NAME).unlink(missing_ok=True)  # refused before writing: leave no folder
            lock.release()
            folder.rmdir()
        else:
            lock.release()


def holds(folder) -> bool:
    """Whether this process holds `folder` (for code that writes into a folder its caller holds)."""
    return Path(folder).resolve() in _held
