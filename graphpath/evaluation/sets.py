"""The evaluation sets: which graphs every model is scored on, drawn once and cached on disk.

Three kinds of set, all sharing the run's label convention (`max_vertices` = unreachable):

| kind  | names | what |
|-------|-------|------|
| study | pretrain, finetune, test-* | the study's seven sets, `study_presets(**data)` |
| grid  | grid  | reference graphs with exactly n vertices and target t, every 2 <= t <= n <= max_vertices, `grid_size` graphs per cell (beyond the fine-tuning range in n and t) |
| shift | shift-er-deg{1,2,3,4}, shift-tree, shift-path | other graph families (Erdos-Renyi at several average degrees, uniform trees, paths) with the fine-tuned task: a target on a shortest 1-2 path |

Every set is a row of the frozen split table (data_gen.splits: spec rule, default size and an
explicit seed), so adding a set never changes another. A set is cached as an .npz keyed by a hash
of (format, name, spec, size, table seed, draw): every model compared sees the same graphs, and
eval.json records each set's seed and data hash to prove it.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_gen import GraphBatch, GraphSpec, SpecError
from data_gen.spec import PRESET_NAMES
from data_gen.splits import (ARRAYS, EVAL_NAMES, SHIFT_NAMES, get_split, grid_axes, grid_cells,  # noqa: F401
                             draw_split, sample_grid, split_spec)
from graphpath_common.files import atomic_path

CACHE_FORMAT = 2  # bump when the cached arrays' layout or the split table (data_gen.splits) changes
SET_NAMES = EVAL_NAMES
GROUPS = {"study": PRESET_NAMES, "tests": PRESET_NAMES[2:], "shift": SHIFT_NAMES, "all": SET_NAMES}


class EvalError(ValueError):
    """Bad input to the evaluator; the message is the one line the CLI prints."""


@dataclass(frozen=True)
class EvalSet:
    name: str
    kind: str  # study | grid | shift
    spec: GraphSpec  # grid: the spec of its largest cell's family (n_max = max_vertices, any target)
    description: str
    seed: int  # the split table's seed (data_gen.splits)


def default_cache_dir() -> Path:
    return Path(os.environ.get("GRAPHPATH_CACHE", Path.home() / ".cache" / "graphpath" / "eval"))


def define_sets(data: dict) -> dict[str, EvalSet]:
    """Every set at the run's sizes (`data` = keyword arguments of `study_presets`)."""
    descriptions = {"grid": "reference graphs, every n in 3..{V} x target t in 2..n",
                    "shift-er-deg1": "Erdos-Renyi graphs, average degree 1, on-path target",
                    "shift-er-deg2": "Erdos-Renyi graphs, average degree 2, on-path target",
                    "shift-er-deg3": "Erdos-Renyi graphs, average degree 3, on-path target",
                    "shift-er-deg4": "Erdos-Renyi graphs, average degree 4, on-path target",
                    "shift-tree": "uniform random trees, on-path target",
                    "shift-path": "a path through all n vertices, on-path target"}
    sets = {}
    for name in SET_NAMES:
        try:
            spec = split_spec(name, data)
        except (TypeError, SpecError) as error:
            raise EvalError(f"data spec {data}: {error}") from None
        kind = "study" if name in PRESET_NAMES else name.split("-")[0]
        text = descriptions.get(name, f"the study's {name} set").replace("{V}", str(spec.max_vertices))
        sets[name] = EvalSet(name, kind, spec, text, get_split(name).seed)
    return sets


def resolve_names(requested: list[str] | None) -> list[str]:
    """Set names in canonical order; groups (study, tests, shift, all) expand; unknown names fail."""
    if not requested:
        return list(SET_NAMES)
    chosen = set()
    for name in requested:
        if name in GROUPS:
            chosen.update(GROUPS[name])
        elif name in SET_NAMES:
            chosen.add(name)
        else:
            raise EvalError(f"unknown set {name!r} (choose from {', '.join(SET_NAMES)} "
                            f"or the groups {', '.join(GROUPS)})")
    return [name for name in SET_NAMES if name in chosen]


def cache_key(evalset: EvalSet, size: int, draw: int) -> str:
    identity = {"format": CACHE_FORMAT, "name": evalset.name, "kind": evalset.kind,
                "spec": evalset.spec.to_dict(), "size": int(size), "seed": evalset.seed, "draw": int(draw)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def data_hash(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the int64 bytes of every array (padding width included)."""
    digest = hashlib.sha256()
    for name in ARRAYS:
        digest.update(np.ascontiguousarray(arrays[name], dtype=np.int64).tobytes())
    return digest.hexdigest()


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        # vertex ids and distances are <= 64: uint8 is exact
        np.savez(handle, **{name: arrays[name].astype(np.uint8) for name in ARRAYS})


def load_set(evalset: EvalSet, size: int, draw: int, cache_dir: Path | None) -> tuple[GraphBatch, str]:
    """The set's graphs (from the cache when present) and their data hash.

    `size` is graphs per set, or graphs per cell for the grid; `draw` 0 is the split table's set,
    another value an independent redraw from the same row. `cache_dir=None` draws afresh.
    """
    path = None if cache_dir is None else Path(cache_dir) / f"{evalset.name}-{cache_key(evalset, size, draw)}.npz"
    arrays = None
    if path is not None and path.exists():
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: stored[name].astype(np.int64) for name in ARRAYS}
        except (OSError, ValueError, KeyError):
            arrays = None  # a damaged cache file is drawn again and replaced
    if arrays is None:
        arrays = draw_split(evalset.name, evalset.spec, size, draw)
        if path is not None:
            try:
                _write_npz(path, arrays)
            except OSError:
                pass  # an unwritable cache only costs time
    return GraphBatch.from_numpy(arrays, evalset.spec.max_vertices), data_hash(arrays)
