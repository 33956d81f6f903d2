"""The frozen table of every evaluation split: which graphs each held-out or test set holds, how
many, and from which seed. Nothing else in the package picks an evaluation seed.

A row is `Split(name, spec, size, seed, purpose)`:

- `spec` is the rule that makes the row's `GraphSpec` from a run's data sizes (`study_presets`
  keywords, so the table serves every n_max): `preset:NAME` (the study's preset of that name),
  `grid` (reference graphs, n in 3..V, any target, drawn cell by cell), `shift:FAMILY[:DEGREE]`
  (another family, n in 3..n_max, an on-path target, unbalanced), or `caller` (the code that uses
  the split passes the spec: a training stage's own spec, the data a perturbation sweep chose).
- `size` is the default number of graphs (for `grid`: graphs per (n, t) cell, so the set holds
  `size * len(grid_cells(V))` graphs and grows with n_max). A caller may ask for another size; the
  seed stays the row's.
- `seed` is an explicit integer written below, never derived from the name or the run's seed.

Seeds and the training streams. A split's generator is
`SeedSequence([seed, SPLIT_DOMAIN, draw, key])` (`draw` 0 is the table's set; another value
redraws it, e.g. a second evaluation sample; `key` tells apart the sets of one row whose specs are
the caller's, e.g. the mixture study's named tests). Training never uses the word `SPLIT_DOMAIN`
in second place, so no split can share a stream with training, whatever the run's seed:

| stream | numpy seeding |
|---|---|
| training batches (graphpath.training.feed.stage_seed) | `SeedSequence([run_seed, stage (pretrain 0, finetune 1), 0, rank])` |
| model initialisation (a torch seed) | `SeedSequence([run_seed, 0, 2])` |
| pre-built datasets (data_gen.build, experiments.edt) | `SeedSequence(build_seed, spawn_key=(shard,))` |
| mixture training sets (data_gen.mixture) | `default_rng(seed)` = `SeedSequence([seed])` |
| perturbation recovery batches (graphpath.analysis.perturb) | `default_rng(1_000_003 + seed)` |

(`SeedSequence(s)` is the same stream as `SeedSequence([s, 0, 0, 0])`: a split drawn from
`default_rng(20_000)` would be the pre-training stream of a run with seed 20000.)

To add a split, append a row with a new name and a seed no other row has; every other split keeps
its graphs. Changing a row changes its graphs: bump `graphpath.evaluation.sets.CACHE_FORMAT` and the
pinned table hash in tests/test_splits.py.
"""
from __future__ import annotations

import hashlib
import json
import types
from dataclasses import astuple, dataclass

import numpy as np

from .batch import GraphBatch
from .sampler import sample_arrays
from .spec import PRESET_NAMES, GraphSpec, SpecError, study_presets

SPLIT_DOMAIN = 0x53504C54  # "SPLT": the second entropy word of every split's SeedSequence
ARRAYS = ("edges", "num_vertices", "target", "label", "path_length")


@dataclass(frozen=True)
class Split:
    name: str
    spec: str  # preset:NAME | grid | shift:FAMILY[:DEGREE] | caller (see the module docstring)
    size: int  # default graphs (grid: graphs per (n, t) cell)
    seed: int  # explicit; distinct across rows
    purpose: str


TABLE: tuple[Split, ...] = (
    # the study's seven sets, scored by graphpath.evaluation.suite
    Split("pretrain", "preset:pretrain", 4096, 1001, "the pre-training distribution, scored after training"),
    Split("finetune", "preset:finetune", 4096, 1002, "the fine-tuning distribution, scored before and after"),
    Split("test-onpath-small", "preset:test-onpath-small", 4096, 1003, "test: on-path target <= small_target"),
    Split("test-onpath-large", "preset:test-onpath-large", 4096, 1004, "test: any on-path target"),
    Split("test-any-small", "preset:test-any-small", 4096, 1005, "test: any target, fine-tuning-sized graphs"),
    Split("test-any-large-smalltarget", "preset:test-any-large-smalltarget", 4096, 1006,
          "test: any small target, large graphs"),
    Split("test-any-large", "preset:test-any-large", 4096, 1007, "test: any target, large graphs"),
    # every (n, t) cell, beyond the fine-tuning range in n and t
    Split("grid", "grid", 256, 1100, "the (n, t) grid: exactly n vertices and target t, 2 <= t <= n <= V"),
    # other graph families with the fine-tuned task (an on-path target)
    Split("shift-er-deg1", "shift:erdos_renyi:1", 4096, 1201, "shift: Erdos-Renyi, average degree 1"),
    Split("shift-er-deg2", "shift:erdos_renyi:2", 4096, 1202, "shift: Erdos-Renyi, average degree 2"),
    Split("shift-er-deg3", "shift:erdos_renyi:3", 4096, 1203, "shift: Erdos-Renyi, average degree 3"),
    Split("shift-er-deg4", "shift:erdos_renyi:4", 4096, 1204, "shift: Erdos-Renyi, average degree 4"),
    Split("shift-tree", "shift:tree", 4096, 1205, "shift: uniform random trees"),
    Split("shift-path", "shift:path", 4096, 1206, "shift: a path through all n vertices"),
    # held-out sets of the tools (size: their config's default, which may override it)
    Split("heldout-pretrain", "caller", 4096, 10001,
          "graphpath.training.stage: pre-training held-out loss (the stage's spec, [train] eval_size)"),
    Split("heldout-finetune", "caller", 4096, 10002,
          "graphpath.training.stage: fine-tuning held-out loss, before and during (the stage's spec, [finetune] eval_size)"),
    Split("validation-pretrain", "caller", 4096, 10003,
          "graphpath.training.stage: pre-training validation loss, the objective of recipe searches "
          "(graphpath.search); never reported (the stage's spec, [train] validation_size)"),
    Split("validation-finetune", "caller", 4096, 10004,
          "graphpath.training.stage: fine-tuning validation loss, the objective of recipe searches "
          "(graphpath.search); never reported (the stage's spec, [finetune] validation_size)"),
    Split("heldout-perturb", "caller", 512, 20000,
          "graphpath.analysis.perturb / graphpath.analysis.basin: recovery curves (the sweep's data set, eval_size)"),
    Split("sample-llc", "caller", 2048, 30000, "graphpath.analysis.llc: the loss the SGLD chains sample (data_size)"),
    Split("sample-inspect", "caller", 2048, 40000,
          "graphpath.analysis.interpret: probes, attention and patching (key 0, --size); on-path and any-target "
          "graphs of the off-path analysis (keys 1 and 2)"),
    Split("mixture-tests", "caller", 1024, 50000,
          "experiments.mixture: the study's named test mixtures (key = crc32 of the test's name, test_size)"),
    # the studies beyond the paper: one reported test sample and one selection sample per seed
    Split("study-test", "caller", 2048, 60000,
          "experiments.*: the reported test sample of a study's task (key = crc32 of 'study:task', draw = the "
          "job seed + 1, so intervals over seeds include the sampling of test graphs)"),
    Split("study-validation", "caller", 1024, 60001,
          "experiments.*: what a study selects on (the fine-tuning lr of every arm), never reported (key and "
          "draw as study-test)"),
)
SPLITS = types.MappingProxyType({split.name: split for split in TABLE})
EVAL_NAMES = tuple(s.name for s in TABLE if s.spec != "caller")  # what graphpath.evaluation.suite scores
SHIFT_NAMES = tuple(s.name for s in TABLE if s.spec.startswith("shift:"))


def table_digest() -> str:
    """sha256 of what fixes every split's graphs: the seed domain and each row's (name, spec, size,
    seed), in table order (the purpose text is left out)."""
    rows = [astuple(s)[:4] for s in TABLE]
    return hashlib.sha256(json.dumps([SPLIT_DOMAIN, rows]).encode()).hexdigest()


def get_split(name: str) -> Split:
    if name not in SPLITS:
        raise SpecError(f"unknown split {name!r} (choose from {', '.join(SPLITS)})")
    return SPLITS[name]


# ---- specs ------------------------------------------------------------------------------------

def split_spec(name: str, data: dict | None = None) -> GraphSpec:
    """The row's GraphSpec at a run's sizes (`data` = `study_presets` keywords; None = the study's)."""
    rule = get_split(name).spec
    presets = study_presets(**(data or {}))
    vocabulary, n_max = presets["pretrain"].max_vertices, presets["pretrain"].n_max
    kind, _, rest = rule.partition(":")
    if kind == "preset":
        return presets[rest]
    if kind == "grid":
        return GraphSpec(n_min=3, n_max=vocabulary, max_vertices=vocabulary, target="any")
    if kind == "shift":
        family, _, degree = rest.partition(":")
        extra = {"avg_degree": float(degree)} if degree else {}
        return GraphSpec(family=family, n_min=3, n_max=n_max, max_vertices=vocabulary, target="on_path",
                         balance="none", **extra)
    raise SpecError(f"split {name!r} takes its spec from the caller: pass spec=")


# ---- generators and graphs --------------------------------------------------------------------

def split_seed_sequence(name: str, draw: int = 0, key: int = 0, seed: int | None = None) -> np.random.SeedSequence:
    """The row's stream; `seed` replaces the table's (a tool's --seed), still in the split domain."""
    base = get_split(name).seed if seed is None else seed
    for what, value in (("seed", base), ("draw", draw), ("key", key)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise SpecError(f"split {name!r}: {what} must be an integer >= 0, got {value!r}")
    return np.random.SeedSequence([int(base), SPLIT_DOMAIN, int(draw), int(key)])


def split_rng(name: str, draw: int = 0, key: int = 0, seed: int | None = None) -> np.random.Generator:
    return np.random.default_rng(split_seed_sequence(name, draw, key, seed))


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


def split_arrays(name: str, data: dict | None = None, *, spec: GraphSpec | None = None, size: int | None = None,
                 draw: int = 0, key: int = 0, seed: int | None = None) -> dict[str, np.ndarray]:
    """The split's graphs as numpy arrays (`sample_arrays`' layout).

    `spec` is required for `caller` rows and must not be given for the others (their spec is the
    table's); `size` defaults to the row's.
    """
    row = get_split(name)
    if row.spec == "caller" and spec is None:
        raise SpecError(f"split {name!r} takes its spec from the caller: pass spec=")
    if row.spec != "caller" and spec is not None:
        raise SpecError(f"split {name!r} has the table's spec ({row.spec}); give data sizes, not spec=")
    spec = spec if spec is not None else split_spec(name, data)
    return draw_split(name, spec, row.size if size is None else size, draw, key, seed)


def draw_split(name: str, spec: GraphSpec, size: int, draw: int = 0, key: int = 0,
               seed: int | None = None) -> dict[str, np.ndarray]:
    """Draw the row's graphs for a spec already resolved (`split_spec`, or the caller's)."""
    if int(size) <= 0:
        raise SpecError(f"split {name!r}: size must be positive, got {size}")
    rng = split_rng(name, draw, key, seed)
    if get_split(name).spec == "grid":
        return sample_grid(spec.max_vertices, int(size), rng)
    return sample_arrays(spec, int(size), rng)


def split_batch(name: str, data: dict | None = None, *, spec: GraphSpec | None = None, size: int | None = None,
                draw: int = 0, key: int = 0, seed: int | None = None) -> GraphBatch:
    """The split's graphs as a GraphBatch (see `split_arrays`)."""
    spec_used = spec if spec is not None else split_spec(name, data)
    return GraphBatch.from_numpy(split_arrays(name, data, spec=spec, size=size, draw=draw, key=key, seed=seed),
                                 spec_used.max_vertices)


__all__ = ["Split", "TABLE", "SPLITS", "EVAL_NAMES", "SHIFT_NAMES", "SPLIT_DOMAIN", "PRESET_NAMES", "get_split",
           "split_spec", "split_seed_sequence", "split_rng", "split_arrays", "draw_split", "split_batch", "grid_axes",
           "grid_cells", "sample_grid", "table_digest"]
