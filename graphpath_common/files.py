"""Atomic file writes for every part of graphpath: nothing half-written is ever mistaken for a
complete file. A writer gets a temporary name beside the target (ending in `.tmp`, so nothing
that looks for the real suffix sees it), and the target appears only by an atomic rename once
the write succeeded; on failure the temporary file is removed.

A write the system refuses (a full disk, no permission, a folder that is a file) is a
`WriteError` naming the path: one line, exit 2 on every command line (graphpath_common.cli).
`ensure_writable(folder)` is the same check made before any work starts.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path


class WriteError(Exception):
    """A file or folder the system would not let us write; one line, exit 2."""


def cannot_write(path, error: OSError) -> WriteError:
    return WriteError(f"cannot write {path}: {error.strerror or error}")


def ensure_writable(folder) -> Path:
    """`folder`, created if missing, after a probe file was written and removed in it; else a
    WriteError naming it (before any work is done for it)."""
    folder = make_folder(folder)
    probe = folder / f".write-probe.{os.getpid()}.tmp"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise cannot_write(folder, error) from None
    return folder


def make_folder(folder) -> Path:
    """`folder` and its parents, created where missing; a WriteError naming the folder (or the
    file standing where a folder should be) otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise WriteError(f"cannot write {folder}: {blocker} is a file, not a folder") from None
        raise cannot_write(folder, error) from None
    return folder


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it to `path` when the block succeeds. An
    OSError while writing becomes a WriteError naming `path`."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    make_folder(path.parent)
    try:
        yield temporary
        os.replace(temporary, path)
    except OSError as error:
        _discard(temporary)
        raise cannot_write(path, error) from None
    except BaseException:
        _discard(temporary)
        raise


def _discard(temporary: Path) -> None:
    try:
        temporary.unlink(missing_ok=True)
    except OSError:  # its folder cannot be written either: nothing was left there
        pass


def atomic_write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def append_line(path, line: str) -> None:
    """Append one line to a log file (metrics.jsonl): written whole or not at all; a failed write
    is cut back off the file and raised as a WriteError."""
    path = Path(path)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    try:
        with path.open("ab") as handle:
            size = handle.tell()
            try:
                handle.write(data)
                handle.flush()
            except BaseException:
                handle.truncate(size)
                raise
    except OSError as error:
        raise cannot_write(path, error) from None
