"""The evaluation sets: which graphs every model is scored on, drawn once and cached on disk.

Three kinds of set, all sharing the run's label convention (`max_vertices` = unreachable):

| kind  | names | what |
|-------|-------|------|
| study | pretrain, finetune, test-* | the study's seven sets, `study_presets(**data)` |
| grid  | grid  | reference graphs with exactly n vertices and target t, every 2 <= t <= n <= max_vertices, `grid_size` graphs per cell (beyond the fine-tuning range in n and t) |
| shift | shift-er-deg{1,2,3,4}, shift-tree, shift-path | other graph families (Erdos-Renyi at several average degrees, uniform trees, paths) with the fine-tuned task: a target on a shortest 1-2 path |

Each set is sampled from its own seed, derived from the base seed and the set's name (adding a
set never changes another), and cached as an .npz keyed by a hash of (spec, seed, size): every
model compared sees the same graphs, and eval.json records each set's data hash to prove it.
"""
from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_gen import GraphBatch, GraphSpec, SpecError, sample_arrays, study_presets
from graphpath_common.files import atomic_path
from data_gen.spec import PRESET_NAMES

CACHE_FORMAT = 1  # bump when the cached arrays' layout or the set definitions change
SHIFT_DEGREES = (1, 2, 3, 4)
SHIFT_NAMES = tuple(f"shift-er-deg{d}" for d in SHIFT_DEGREES) + ("shift-tree", "shift-path")
SET_NAMES = PRESET_NAMES + ("grid",) + SHIFT_NAMES
GROUPS = {"study": PRESET_NAMES, "tests": PRESET_NAMES[2:], "shift": SHIFT_NAMES, "all": SET_NAMES}
ARRAYS = ("edges", "num_vertices", "target", "label", "path_length")


class EvalError(ValueError):
    """Bad input to the evaluator; the message is the one line the CLI prints."""


@dataclass(frozen=True)
class EvalSet:
    name: str
    kind: str  # study | grid | shift
    spec: GraphSpec  # grid: the spec of its largest cell's family (n_max = max_vertices, any target)
    description: str


def default_cache_dir() -> Path:
    return Path(os.environ.get("GRAPHPATH_CACHE", Path.home() / ".cache" / "graphpath" / "eval"))


def define_sets(data: dict) -> dict[str, EvalSet]:
    """Every set at the run's sizes (`data` = keyword arguments of `study_presets`)."""
    try:
        presets = study_presets(**data)
    except (TypeError, SpecError) as error:
        raise EvalError(f"data spec {data}: {error}") from None
    vocabulary = presets["pretrain"].max_vertices
    n_max = presets["pretrain"].n_max
    sets = {name: EvalSet(name, "study", spec, f"the study's {name} set") for name, spec in presets.items()}
    sets["grid"] = EvalSet("grid", "grid", GraphSpec(n_min=3, n_max=vocabulary, max_vertices=vocabulary,
                                                     target="any"),
                           f"reference graphs, every n in 3..{vocabulary} x target t in 2..n")
    base = dict(n_min=3, n_max=n_max, max_vertices=vocabulary, target="on_path", balance="none")
    for degree in SHIFT_DEGREES:
        sets[f"shift-er-deg{degree}"] = EvalSet(
            f"shift-er-deg{degree}", "shift", GraphSpec(family="erdos_renyi", avg_degree=float(degree), **base),
            f"Erdos-Renyi graphs, average degree {degree}, on-path target")
    sets["shift-tree"] = EvalSet("shift-tree", "shift", GraphSpec(family="tree", **base),
                                 "uniform random trees, on-path target")
    sets["shift-path"] = EvalSet("shift-path", "shift", GraphSpec(family="path", **base),
                                 "a path through all n vertices, on-path target")
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


def set_rng(seed: int, name: str) -> np.random.Generator:
    """The set's own generator: base seed and a stable hash of the name (crc32, not Python's hash)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]))


def grid_axes(vocabulary: int) -> tuple[list[int], list[int]]:
    """(n values, t values) of the grid: n in 3..vocabulary, t in 2..vocabulary (cells need t <= n)."""
    return list(range(3, vocabulary + 1)), list(range(2, vocabulary + 1))


def grid_cells(vocabulary: int) -> list[tuple[int, int]]:
    n_values, _ = grid_axes(vocabulary)
    return [(n, t) for n in n_values for t in range(2, n + 1)]


def sample_grid(vocabulary: int, cell_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Exactly `cell_size` reference graphs for every cell (n, t) of `grid_cells(vocabulary)`.

    Per n, graphs with a uniform target in 2..n are drawn (data_gen labels them) and the first
    `cell_size` of each target are kept; a short draw is topped up from the same generator.
    """
    parts = []
    for n in grid_axes(vocabulary)[0]:
        spec = GraphSpec(n_min=n, n_max=n, max_vertices=vocabulary, target="any", t_max=n)
        need = {t: cell_size for t in range(2, n + 1)}
        while any(need.values()):
            draw = sample_arrays(spec, int(1.3 * sum(need.values())) + 64, rng)
            keep = np.zeros(len(draw["target"]), dtype=bool)
            for t, missing in need.items():  # loop over targets, not graphs
                index = np.flatnonzero(draw["target"] == t)[:missing]
                keep[index] = True
                need[t] = missing - len(index)
            parts.append({name: value[keep] for name, value in draw.items()})
    width = max(p["edges"].shape[1] for p in parts)
    merged = {name: np.concatenate([np.pad(p[name], ((0, 0), (0, width - p[name].shape[1]), (0, 0)))
                                    if name == "edges" else p[name] for p in parts]) for name in ARRAYS}
    order = np.lexsort((merged["target"], merged["num_vertices"]))  # cell by cell, n then t
    return {name: value[order] for name, value in merged.items()}


def cache_key(evalset: EvalSet, size: int, seed: int) -> str:
    identity = {"format": CACHE_FORMAT, "name": evalset.name, "kind": evalset.kind,
                "spec": evalset.spec.to_dict(), "size": int(size), "seed": int(seed)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def data_hash(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the int64 bytes of every array (padding width included)."""
    digest = hashlib.sha256()
    for name in ARRAYS:
        digest.update(np.ascontiguousarray(arrays[name], dtype=np.int64).tobytes())
    return digest.hexdigest()


def _draw(evalset: EvalSet, size: int, seed: int) -> dict[str, np.ndarray]:
    rng = set_rng(seed, evalset.name)
    if evalset.kind == "grid":
        return sample_grid(evalset.spec.max_vertices, size, rng)
    return sample_arrays(evalset.spec, size, rng)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        # vertex ids and distances are <= 64: uint8 is exact
        np.savez(handle, **{name: arrays[name].astype(np.uint8) for name in ARRAYS})


def load_set(evalset: EvalSet, size: int, seed: int, cache_dir: Path | None) -> tuple[GraphBatch, str]:
    """The set's graphs (from the cache when present) and their data hash.

    `size` is graphs per set, or graphs per cell for the grid. `cache_dir=None` draws afresh.
    """
    path = None if cache_dir is None else Path(cache_dir) / f"{evalset.name}-{cache_key(evalset, size, seed)}.npz"
    arrays = None
    if path is not None and path.exists():
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: stored[name].astype(np.int64) for name in ARRAYS}
        except (OSError, ValueError, KeyError):
            arrays = None  # a damaged cache file is drawn again and replaced
    if arrays is None:
        arrays = _draw(evalset, size, seed)
        if path is not None:
            try:
                _write_npz(path, arrays)
            except OSError:
                pass  # an unwritable cache only costs time
    return GraphBatch.from_numpy(arrays, evalset.spec.max_vertices), data_hash(arrays)
