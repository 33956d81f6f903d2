"""JSON as every graphpath writer writes it: strict JSON, so a diverged number (NaN, infinity)
is written as null instead of the `NaN` tokens Python would emit and other readers reject.

    write_json(path, doc)        atomically (graphpath_common.files), indented, newline-ended
    json_text(doc)               the same text; json_line(doc) one compact line (metrics.jsonl)

`finite(value)` is the conversion itself: every float that is not finite, at any depth of
dicts, lists and tuples, becomes None; other values are left as they are.
"""
from __future__ import annotations

import json
import math

from .files import atomic_write_text


def finite(value):
    """`value` with every non-finite float (NaN, +-inf) replaced by None, at any depth."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def json_text(value, indent: int | None = 1, default=None) -> str:
    """Strict JSON of `value` (non-finite floats as null); `default` as json.dumps takes it."""
    return json.dumps(finite(value), indent=indent, allow_nan=False, default=default)


def json_line(value) -> str:
    """One compact line of strict JSON (no newline)."""
    return json_text(value, indent=None)


def write_json(path, value, indent: int | None = 1, default=None) -> None:
    """`value` as strict JSON in `path`, written atomically."""
    atomic_write_text(path, json_text(value, indent, default) + "\n")
