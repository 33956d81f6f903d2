"""The seven study sets follow the study's own generator: package vs a per-graph re-implementation
of the notebook's `mkbatch` rules (tests/oracle.py), on the label and the vertex-count histograms."""
import numpy as np
import pytest

from data_gen import GraphSpec, SpecError, sample_arrays, study_presets
from oracle import study_batch, total_variation

TV_LIMIT = 0.02
SIZES = {
    "study": ({}, {}),
    "cpu": (dict(n_max=8, finetune_n_max=5, small_target=5, pretrain_threshold=4, finetune_threshold=3),
            dict(n_max=8, finetune_n_max=5, small_target=5, pretrain_threshold=4, tune_threshold=3)),
}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("sizes", ["study", "cpu"])
def test_presets_match_the_study_generator(sizes, backend):
    preset_sizes, oracle_sizes = SIZES[sizes]
    count = 40_000
    for seed, (name, spec) in enumerate(study_presets(**preset_sizes).items()):
        expected = np.array(study_batch(name, count, seed, **oracle_sizes))
        got = sample_arrays(spec, count, 1000 + seed, backend=backend)
        for column, field in ((2, "label"), (0, "num_vertices"), (1, "target")):
            tv = total_variation(got[field], expected[:, column], spec.max_vertices)
            assert tv <= TV_LIMIT, f"{name} {field}: TV {tv:.4f} against the study's generator"


def test_the_oracle_tells_the_old_rules_apart():
    """The comparison above can fail: the previous rules (n per raw graph, balanced on-path test
    sets, capped small targets) sit well beyond the limit at 10k graphs."""
    spec = study_presets()["test-onpath-small"]
    old = spec.replace(balance="study", n_draw="graph", t_max_rule="cap")
    expected = np.array(study_batch("test-onpath-small", 10_000, 0))
    got = sample_arrays(old, 10_000, 1)
    assert total_variation(got["label"], expected[:, 2], spec.max_vertices) > 0.1
    assert total_variation(got["num_vertices"], expected[:, 0], spec.max_vertices) > 0.05


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_n_is_uniform_however_often_graphs_are_rejected(backend):
    spec = study_presets()["pretrain"]  # rejects most short-distance graphs, more often at small n
    got = sample_arrays(spec, 20_000, 3, backend=backend)["num_vertices"]
    counts = np.bincount(got, minlength=16)[3:]
    expected = len(got) / 13
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)  # per-graph n would skew ~2x
    per_graph = sample_arrays(spec.replace(n_draw="graph"), 20_000, 3, backend=backend)["num_vertices"]
    assert np.bincount(per_graph, minlength=16)[15] > 1.5 * np.bincount(per_graph, minlength=16)[3]


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_small_on_path_target_redraws_the_graph(backend):
    """Redraw picks a position k ~ k over the whole path and drops the graph when its vertex is
    large, which favours short 1-2 paths (vertex 2 is position d, chosen with chance 2/(d+1));
    cap keeps every graph with a 1-2 path and picks among the small vertices only."""
    spec = GraphSpec(n_min=12, n_max=15, target="on_path", t_max=3)
    redraw = sample_arrays(spec, 6000, 5, backend=backend)
    cap = sample_arrays(spec.replace(t_max_rule="cap"), 6000, 5, backend=backend)
    assert redraw["target"].max() <= 3 and cap["target"].max() <= 3
    assert cap["path_length"].mean() > redraw["path_length"].mean() + 0.2  # std of a mean ~0.015


def test_spec_draw_options_are_validated():
    assert GraphSpec().n_draw == "example" and GraphSpec(balance="uniform").n_draw == "graph"
    assert GraphSpec().replace(balance="uniform").n_draw == "graph"
    with pytest.raises(SpecError, match="n_draw"):
        GraphSpec(n_draw="sometimes")
    with pytest.raises(SpecError, match="uniform"):
        GraphSpec(balance="uniform", n_draw="example")
    with pytest.raises(SpecError, match="t_max_rule"):
        GraphSpec(target="on_path", t_max=4, t_max_rule="clip")
    assert {s.balance for n, s in study_presets().items() if n.startswith("test-onpath")} == {"none"}
