"""One writer per output folder: a run directory, a study's or a sweep's folder, a dataset.

    with hold(out, "python -m graphpath.train"):
        ...   # write into out
    with hold(out.parent, "python -m data_gen.build", name=out.name):
        ...   # build out in a temporary folder beside it, then rename it into place

`hold` checks that the folder can be written (graphpath_common.files.ensure_writable), then
takes an exclusive lock on `<folder>/.graphpath.lock` (`.<name>.graphpath.lock` for a `name`d
entry of the folder that does not exist yet) with the `filelock` package (an OS `flock` on POSIX:
the kernel releases it when the holding process ends, even by kill -9, so a crash never leaves a
stale lock to clear by hand; on NFS, Linux maps flock to the server's locks). While held, the same
name plus `.json` names the holder: pid, host, program, its command line and since when (UTC). A second process asking for
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
_held: dict[Path, int] = {}  # lock files this process holds -> nesting depth


class FolderBusy(Exception):
    """Another process is writing the folder; one line naming it and its holder, exit 2."""


def lock_path(folder, name: str | None = None) -> Path:
    """The lock file of `folder` (or of its entry `name`)."""
    return Path(folder) / (LOCK_NAME if name is None else f".{name}{LOCK_NAME}")


def holder(lock: Path) -> dict | None:
    """The holder record beside a lock file as its holder wrote it (None if absent or unreadable)."""
    try:
        record = json.loads(lock.with_name(lock.name + ".json").read_text())
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
def hold(folder, program: str, name: str | None = None):
    """Hold `folder` (created if missing), or its entry `name`, for writing while the block runs;
    FolderBusy if another process holds it, graphpath_common.files.WriteError if the folder cannot
    be written."""
    folder = Path(folder)
    created = [f for f in (folder, *folder.parents) if not f.exists()]  # innermost first
    ensure_writable(folder)
    lock_file = lock_path(folder, name)
    record = lock_file.with_name(lock_file.name + ".json")
    what = folder if name is None else folder / name
    key = lock_file.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield folder
        finally:
            _held[key] -= 1
        return
    lock = FileLock(lock_file, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise FolderBusy(f"{what} is in use by {describe(holder(lock_file))}; wait for it to finish, "
                         "or write elsewhere") from None
    _held[key] = 1
    clean = False
    try:
        write_json(record, {
            "pid": os.getpid(), "host": socket.gethostname(), "program": program, "argv": sys.argv,
            "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
        yield folder
        clean = True
    finally:
        del _held[key]
        record.unlink(missing_ok=True)
        if not clean and created and {p.name for p in folder.iterdir()} <= {lock_file.name}:
            lock_file.unlink(missing_ok=True)  # refused before writing: leave no folder behind
            lock.release()
            for made in created:
                if made.is_dir() and not any(made.iterdir()):
                    made.rmdir()
        else:
            lock.release()
