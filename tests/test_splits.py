"""data_gen.splits: the frozen table of evaluation splits — pinned, buildable, labelled right,
seeded apart from every training stream, and disjoint from the pre-training held-out set."""
from __future__ import annotations

import collections
import hashlib
import itertools

import numpy as np
import pytest

from data_gen import GraphSpec, SpecError, study_presets
from data_gen.dataset import shard_key
from data_gen.splits import (EVAL_NAMES, SPLITS, TABLE, draw_split, grid_cells, split_arrays, split_batch,
                             split_rng, split_seed_sequence, split_spec, table_digest)
from graphpath.core.config import StageConfig
from graphpath.evaluation.sets import CACHE_FORMAT
from graphpath.training.feed import stage_seed
from graphpath.analysis.perturb import PerturbConfig
from oracle import check_against_networkx

# Changing a row (or the seed domain) changes its graphs. When that is on purpose: bump
# graphpath.evaluation.sets.CACHE_FORMAT and pin the new digest and format here.
PINNED_DIGEST = "ef408ed40c8dda509b7e9dcb950aa797eeb56c01325b3f31d703a8415db985c8"
PINNED_CACHE_FORMAT = 2
SMALL = dict(n_max=6, finetune_n_max=4, small_target=4, pretrain_threshold=3, finetune_threshold=2)


def caller_spec(name: str, data: dict | None = None) -> GraphSpec | None:
    """The spec each `caller` row's user passes by default (the run's pretrain preset)."""
    return study_presets(**(data or {}))["pretrain"] if SPLITS[name].spec == "caller" else None


def test_the_table_is_frozen():
    assert table_digest() == PINNED_DIGEST and CACHE_FORMAT == PINNED_CACHE_FORMAT, (
        "the split table (data_gen/splits.py) changed: every changed row draws other graphs. If that is "
        "intended, bump graphpath.evaluation.sets.CACHE_FORMAT and pin the new digest and format in tests/test_splits.py")
    with pytest.raises(TypeError):
        SPLITS["pretrain"] = SPLITS["grid"]  # the mapping is read-only
    with pytest.raises(AttributeError):
        SPLITS["pretrain"].seed = 1  # rows are frozen


def test_names_and_seeds_are_distinct_explicit_integers():
    names = [s.name for s in TABLE]
    seeds = [s.seed for s in TABLE]
    assert len(set(names)) == len(names) and len(set(seeds)) == len(seeds)
    assert all(type(s) is int and s >= 0 for s in seeds)
    states = {tuple(split_seed_sequence(s.name).generate_state(4)) for s in TABLE}
    assert len(states) == len(TABLE)  # distinct streams, not only distinct integers


def training_states(run_seeds) -> dict[tuple, str]:
    """generate_state(4) of every numpy stream training uses (data_gen.splits' docstring table)."""
    out = {}
    for seed in run_seeds:
        for stage, purpose, rank in itertools.product(("pretrain", "finetune"), ("train", "init"), range(8)):
            out[tuple(stage_seed(seed, stage, purpose, rank).generate_state(4))] = f"stage_seed({seed}, {stage}, {purpose}, {rank})"
        out[tuple(np.random.SeedSequence(seed).generate_state(4))] = f"default_rng({seed}) (mixture dataset)"
        out[tuple(np.random.SeedSequence(1_000_003 + seed).generate_state(4))] = f"perturb recovery, seed {seed}"
        for shard in range(4):
            out[tuple(np.random.SeedSequence(seed, spawn_key=(shard,)).generate_state(4))] = f"build {seed} shard {shard}"
    return out


def test_no_split_shares_a_stream_with_training():
    """Run seeds 0..299 and every split seed used as a run seed (SeedSequence(s) is the stream of
    SeedSequence([s, 0, 0, 0]): a split drawn from default_rng(its seed) would fail here)."""
    training = training_states(list(range(300)) + [s.seed for s in TABLE])
    for split in TABLE:
        for draw, key in ((0, 0), (1, 0), (0, 1), (0, 2)):
            state = tuple(split_seed_sequence(split.name, draw, key).generate_state(4))
            assert state not in training, f"{split.name} (draw {draw}, key {key}) is {training[state]}"
    naive = tuple(np.random.SeedSequence(SPLITS["heldout-perturb"].seed).generate_state(4))
    assert naive in training  # the check can fail: the old perturb seeding shared a training stream


@pytest.mark.parametrize("data", [None, SMALL], ids=["study", "small"])
def test_every_split_builds_at_its_size(data):
    vocabulary = (data or {}).get("n_max", 15)
    for split in TABLE:
        spec = caller_spec(split.name, data)
        size = 3 if split.spec == "grid" else 64
        batch = split_batch(split.name, data, spec=spec, size=size)
        expected = size * len(grid_cells(vocabulary)) if split.spec == "grid" else size
        assert len(batch) == expected and batch.max_vertices == vocabulary, split.name
        assert int(batch.label.max()) <= vocabulary


def test_default_sizes_match_the_tools_defaults():
    assert StageConfig().eval_size == SPLITS["heldout-pretrain"].size == SPLITS["heldout-finetune"].size
    assert PerturbConfig.eval_size == SPLITS["heldout-perturb"].size
    assert PerturbConfig.eval_seed == SPLITS["heldout-perturb"].seed


@pytest.mark.parametrize("name", [s.name for s in TABLE])
def test_labels_agree_with_networkx(name):
    spec = caller_spec(name, SMALL) or split_spec(name, SMALL)
    size = 2 if SPLITS[name].spec == "grid" else 96
    arrays = split_arrays(name, SMALL, spec=caller_spec(name, SMALL), size=size)
    check_against_networkx(spec, arrays)


def test_same_row_same_graphs_and_draws_differ():
    spec = study_presets(**SMALL)["test-any-large"]
    first = draw_split("test-any-large", spec, 50)
    again = split_arrays("test-any-large", SMALL, size=50)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    np.random.seed(0)  # the global generator plays no part
    other = draw_split("test-any-large", spec, 50, draw=1)
    assert not np.array_equal(first["edges"], other["edges"])
    assert split_rng("mixture-tests", key=1).integers(2**62) != split_rng("mixture-tests", key=2).integers(2**62)


def test_specs_and_bad_requests():
    assert split_spec("test-any-small", SMALL) == study_presets(**SMALL)["test-any-small"]
    tree = split_spec("shift-tree", SMALL)
    assert (tree.family, tree.target, tree.n_max, tree.max_vertices) == ("tree", "on_path", 6, 6)
    assert split_spec("shift-er-deg3").avg_degree == 3.0
    assert EVAL_NAMES == tuple(s.name for s in TABLE if s.spec != "caller")
    with pytest.raises(SpecError, match="unknown split 'nope'"):
        split_spec("nope")
    with pytest.raises(SpecError, match="pass spec="):
        split_batch("heldout-pretrain", SMALL)
    with pytest.raises(SpecError, match="table's spec"):
        split_batch("pretrain", spec=study_presets()["pretrain"])
    with pytest.raises(SpecError, match="size must be positive"):
        split_batch("pretrain", size=0)


def edge_set_hash(edges: np.ndarray, n: int) -> str:
    """Canonical: the vertex count and the sorted multiset of edges (token order carries no meaning)."""
    rows = sorted(map(tuple, edges[edges[:, 0] > 0].tolist()))
    return hashlib.sha1(repr((n, rows)).encode()).hexdigest()[:16]


def graphs_by_hash(arrays: dict) -> dict[str, int]:
    return {edge_set_hash(e, int(n)): int(n) for e, n in zip(arrays["edges"], arrays["num_vertices"])}


@pytest.mark.parametrize("data", [None, dict(n_max=10, finetune_n_max=5, small_target=5)], ids=["study", "n10"])
def test_test_sets_are_disjoint_from_the_pretrain_heldout_set(data):
    """Reference-family sets share graphs with the trainer's pre-training held-out set only by
    chance, on small graphs; from n >= 8 on, where chance collisions are vanishingly rare, none."""
    heldout = graphs_by_hash(split_arrays("heldout-pretrain", data, spec=study_presets(**(data or {}))["pretrain"]))
    report = {}
    for name in EVAL_NAMES:
        spec = split_spec(name, data)
        if spec.family != "reference" or spec.n_max < 8:
            continue  # no overlap in family or in the sizes checked
        size = 16 if name == "grid" else None
        shared = collections.Counter(n for h, n in graphs_by_hash(split_arrays(name, data, size=size)).items()
                                     if h in heldout)
        report[name] = dict(sorted(shared.items()))
    large = {name: {n: c for n, c in counts.items() if n >= 8} for name, counts in report.items()}
    assert report and not any(large.values()), f"graphs shared with heldout-pretrain, per n: {report}"


def test_the_validation_set_is_apart_from_what_is_reported():
    """A recipe search selects on `validation-pretrain`; the reported held-out and test sets are
    other graphs (at the study's sizes no graph of n >= 8 is shared, as between the test sets)."""
    spec = study_presets()["pretrain"]
    validation = split_arrays("validation-pretrain", spec=spec, size=2048)
    heldout = split_arrays("heldout-pretrain", spec=spec, size=2048)
    assert not np.array_equal(validation["edges"], heldout["edges"])
    seen = graphs_by_hash(validation)
    reported = dict(graphs_by_hash(heldout))
    for name in ("pretrain", "test-onpath-large", "test-any-large"):
        reported.update(graphs_by_hash(split_arrays(name, size=2048)))
    shared = collections.Counter(n for h, n in seen.items() if h in reported)
    assert sum(shared.values()) > 0 and not any(n >= 8 for n in shared), shared  # only small graphs, by chance


def test_contracts_lists_every_row():
    """docs/contracts.md's Splits table says what the code does: every row, spec, size and seed."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "contracts.md").read_text()
    documented = {}
    for line in text.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] in SPLITS:
            documented[cells[0]] = (cells[1], int(cells[2].split()[0]), int(cells[3]))
    assert documented == {s.name: (s.spec, s.size, s.seed) for s in TABLE}


def test_negative_or_non_integer_seeds_are_one_line_errors():
    from graphpath.analysis.perturb import PerturbError

    for options, needle in ((dict(seed=-1), "seed must be"), (dict(draw=-2), "draw must be"),
                            (dict(key=1.5), "key must be"), (dict(seed=True), "seed must be")):
        with pytest.raises(SpecError, match=needle):
            split_rng("pretrain", **options)
    with pytest.raises(PerturbError, match="eval_seed must be an integer >= 0"):
        PerturbConfig(model="handcrafted", n=5, eval_seed=-1)
