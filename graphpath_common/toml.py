"""TOML reading for every part of graphpath: the standard library's `tomllib` (Python >= 3.11)
or its backport `tomli` (Python 3.10, installed by pyproject's marker). Import it from here:
`from graphpath_common.toml import tomllib`."""
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["tomllib"]
