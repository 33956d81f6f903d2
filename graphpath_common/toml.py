"""TOML reading for every part of graphpath: the standard library's `tomllib` (Python >= 3.11)
or its backport `tomli` (Python 3.10, installed by pyproject's marker). Import it from here:
`from graphpath_common.toml import tomllib`, or read a file with `read_toml`."""
from __future__ import annotations

from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["tomllib", "read_toml"]


def read_toml(path, error: type[Exception], what: str = "") -> dict:
    """The TOML file at `path` as a dict; a missing, unreadable or malformed file raises `error`
    with one line (`what`, e.g. "config ", prefixes the file's name)."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except OSError as failure:
        raise error(f"cannot read {what}{path}: {failure.strerror or failure}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as failure:
        raise error(f"{what}{path} is not valid TOML: {failure}") from None
