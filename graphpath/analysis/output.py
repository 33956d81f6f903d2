"""Writing an analysis tool's JSON: NaN and infinity (an undefined R^2, a diverged loss) become null,
numpy numbers become Python numbers, and the file appears complete or not at all."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from graphpath_common.files import atomic_write_text


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
    atomic_write_text(Path(path), json.dumps(json_ready(doc), indent=1, allow_nan=False))
