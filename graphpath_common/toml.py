"""TOML for every part of graphpath. Reading: the standard library's `tomllib` (Python >= 3.11)
or its backport `tomli` (Python 3.10, installed by pyproject's marker); import it from here
(`from graphpath_common.toml import tomllib`) or read a file with `read_toml`. Writing: the one
writer, `toml_value` (a value) and `dumps` (top-level keys, then one table per dict), for the
flat configs graphpath writes (run configs, sweep overrides); `tomllib.loads(dumps(d)) == d`."""
from __future__ import annotations

from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["tomllib", "read_toml", "toml_value", "dumps"]


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


def toml_value(value) -> str:
    """One value as TOML: bool, int, float (finite), string, or a list of these."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise TypeError(f"cannot write {value!r} as TOML (graphpath configs hold finite numbers)")
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def dumps(values: dict) -> str:
    """Top-level keys first, then `[table]` per dict value (one level deep), in the dict's order."""
    lines = [f"{key} = {toml_value(value)}" for key, value in values.items() if not isinstance(value, dict)]
    for key, table in values.items():
        if isinstance(table, dict):
            lines += ["", f"[{key}]"] + [f"{k} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
