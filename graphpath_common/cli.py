"""The one error path of every graphpath command line: bad input is one line on stderr naming the
problem, and exit status 2 — never argparse's usage block, never a traceback.

    def main(argv=None) -> int:
        return run_cli("python -m graphpath.thing", _main, argv, ThingError, OtherError)

`ArgumentParser` raises `UsageError` instead of printing usage and exiting, so argparse's own
complaints take the same path as the program's; `--help` still prints help and exits 0. An output
that cannot be written (`files.WriteError`) and a folder another process is writing
(`locks.FolderBusy`) take it too. Ctrl-C (SIGINT) ends any command with one line and exit status
130: every file is written whole or not at all (graphpath_common.files), so what was finished
before the interrupt is kept and nothing half-written is left.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .files import WriteError
from .locks import FolderBusy

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process ended by Ctrl-C


class UsageError(Exception):
    """Bad input on the command line: one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors raise `UsageError` (one line via `run_cli`)."""

    def error(self, message):
        raise UsageError(message)


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def run_cli(prog: str, body: Callable[[list[str] | None], int], argv: list[str] | None,
            *user_errors: type[BaseException]) -> int:
    """Run `body(argv)`; `UsageError`, `WriteError`, `FolderBusy` and each of `user_errors` become
    `prog: message`, exit 2; Ctrl-C becomes `prog: interrupted ...`, exit 130.

    Only the first line of a message is printed: a one-line error stays one line even when it
    wraps text from a library.
    """
    try:
        return body(argv)
    except (UsageError, WriteError, FolderBusy, *user_errors) as error:
        print(f"{prog}: {first_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; files written before it are complete, none is half-written",
              file=sys.stderr)
        return handled_interrupt()


def handled_interrupt() -> int:
    """INTERRUPTED, once a Ctrl-C has been handled. CPython 3.11 notes a KeyboardInterrupt that
    passed through any `eval` of a string (numpy.f2py runs many while numba loads) as unhandled,
    even when it was caught later, and a `python -m` process then kills itself with SIGINT on exit
    instead of exiting with our status; evaluating a string again clears that note."""
    eval("None")
    return INTERRUPTED
