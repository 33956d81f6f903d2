"""The one error path of every graphpath command line: bad input is one line on stderr naming the
problem, and exit status 2 — never argparse's usage block, never a traceback.

    def main(argv=None) -> int:
        return run_cli("python -m graphpath.thing", _main, argv, ThingError, OtherError)

`ArgumentParser` raises `UsageError` instead of printing usage and exiting, so argparse's own
complaints take the same path as the program's; `--help` still prints help and exits 0.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


class UsageError(Exception):
    """Bad input on the command line: one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors raise `UsageError` (one line via `run_cli`)."""

    def error(self, message):
        raise UsageError(message)


def run_cli(prog: str, body: Callable[[list[str] | None], int], argv: list[str] | None,
            *user_errors: type[BaseException]) -> int:
    """Run `body(argv)`; `UsageError` and each of `user_errors` become `prog: message`, exit 2.

    Only the first line of a message is printed: a one-line error stays one line even when it
    wraps text from a library.
    """
    try:
        return body(argv)
    except (UsageError, *user_errors) as error:
        text = str(error).strip().splitlines()
        print(f"{prog}: {text[0] if text else type(error).__name__}", file=sys.stderr)
        return 2
