"""Writing an analysis tool's JSON through graphpath_common.jsonfile.write_json (strict JSON: NaN and
infinity, an undefined R^2 or a diverged loss, become null; written atomically, so the file appears
complete or not at all), after numpy scalars and arrays are turned into Python numbers and lists."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from graphpath_common import jsonfile


def json_ready(value):
    """`value` with every non-finite float as None and numpy scalars and arrays as Python values."""
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def write_json(path: Path, doc: dict) -> None:
    """`doc` as strict JSON in `path` (graphpath_common.jsonfile.write_json), numpy values converted."""
    jsonfile.write_json(Path(path), json_ready(doc), default=str)
