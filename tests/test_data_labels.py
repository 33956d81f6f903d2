"""Labels, edges and targets of every family x target mode, checked graph by graph with networkx.

Both backends are checked: the compiled kernel (the default) and the vectorized numpy code.
"""
import numpy as np
import pytest

from data_gen import GraphSpec, sample_arrays, study_presets
from data_gen.bfs import adjacency_bitsets, bfs_reference, distances_from
from data_gen.examples import hand_drawn_batch
from oracle import HAND_DRAWN, check_against_networkx, distances

FAMILIES = ("reference", "erdos_renyi", "tree", "path")
TARGETS = ("fixed", "on_path", "any")


CASES = [
    # (family, n_min, n_max, extra spec fields)
    ("reference", 3, 15, {}),
    ("reference", 3, 3, {}),
    ("reference", 64, 64, {}),
    ("erdos_renyi", 3, 20, {"avg_degree": 2.0}),
    ("erdos_renyi", 60, 64, {"avg_degree": 1.5}),
    ("tree", 3, 64, {}),
    ("path", 3, 64, {}),
]


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("family,n_min,n_max,extra", CASES)
def test_labels_match_networkx(family, n_min, n_max, extra, target, backend):
    if n_max == 3 and target == "on_path" and family != "reference":
        pytest.skip("covered by the reference case")
    size = 2000 if n_max <= 20 else 600
    spec = GraphSpec(family=family, n_min=n_min, n_max=n_max, target=target, **extra)
    arrays = sample_arrays(spec, size, np.random.default_rng(11), backend=backend)
    seen = check_against_networkx(spec, arrays)
    assert seen["sizes"] >= {n_min, n_max}, "both ends of the vertex range must appear"
    if family == "reference" and n_max == 15:
        assert seen["repeated"] > 0, "repeated edges must be kept"
        if target != "on_path":
            assert seen["unreachable"] > 0, "disconnected graphs must appear"


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_any_targets_beyond_n_are_unreachable(backend):
    spec = GraphSpec(n_min=3, n_max=15, target="any", t_max=15)
    arrays = sample_arrays(spec, 3000, np.random.default_rng(5), backend=backend)
    beyond = arrays["target"] > arrays["num_vertices"]
    assert beyond.sum() > 500
    assert (arrays["label"][beyond] == spec.max_vertices).all()
    check_against_networkx(spec, arrays)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("sizes", [{}, {"n_max": 8, "finetune_n_max": 5, "small_target": 5}])
def test_every_preset_matches_networkx(sizes, backend):
    for name, spec in study_presets(**sizes).items():
        arrays = sample_arrays(spec, 1500, np.random.default_rng(7), backend=backend)
        check_against_networkx(spec, arrays)


def test_on_path_with_t_max_never_exceeds_it():
    spec = GraphSpec(n_min=3, n_max=15, target="on_path", t_max=4)
    for backend in ("numba", "numpy"):
        arrays = sample_arrays(spec, 2000, np.random.default_rng(3), backend=backend)
        assert arrays["target"].max() <= 4 and (arrays["target"] != 2).any()
        check_against_networkx(spec, arrays)


def test_hand_drawn_table_is_right():
    for row in HAND_DRAWN:
        from_one = distances(row["num_vertices"], row["edges"], 1)
        t = row["target"]
        assert row["label"] == (from_one.get(t) if t <= row["num_vertices"] else None), row
        assert row["path_length"] == from_one.get(2), row
        reference = bfs_reference(row["num_vertices"], row["edges"], 1, unreachable=-1)
        assert reference[2] == (-1 if row["path_length"] is None else row["path_length"])


@pytest.mark.parametrize("max_vertices", [5, 8, 15, 64])
def test_hand_drawn_batch_and_numpy_bfs(max_vertices):
    batch = hand_drawn_batch(max_vertices)
    fits = [r for r in HAND_DRAWN if r["num_vertices"] <= max_vertices and r["target"] <= max_vertices]
    assert len(batch) == len(fits) > 0
    arrays = batch.numpy()
    from_one = distances_from(adjacency_bitsets(arrays["edges"], max_vertices), 1, max_vertices)
    label = from_one[np.arange(len(batch)), arrays["target"]]
    assert (label == arrays["label"]).all() and (from_one[:, 2] == arrays["path_length"]).all()
    assert (arrays["label"] == [max_vertices if r["label"] is None else r["label"] for r in fits]).all()
