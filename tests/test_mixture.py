"""data_gen.mixture (weights, ranges, datasets, coverage against a plain-Python oracle) and
python -m experiments.mixture (bad input exits 2; a tiny study end to end, slow)."""
import json

import networkx as nx
import numpy as np
import pytest

from data_gen import load_dataset
from data_gen.mixture import (Component, Mixture, MixtureError, build_mixture_dataset, coverage, sample_mixture)
from data_gen.splits import split_rng
from experiments.mixture import main
from tiny_studies import TINY_PRETRAIN, assert_bad_study, two_models

TWO = Mixture((Component("reference", 3, 7, weight=0.3), Component("tree", 4, 8, d_min=2, d_max=4, weight=0.7)), 9)


def test_components_keep_their_ranges_and_weights():
    arrays = sample_mixture(TWO, 4000, np.random.default_rng(0))
    component, n, label = arrays["component"], arrays["num_vertices"], arrays["label"]
    assert abs((component == 1).mean() - 0.7) < 4 * (0.21 / 4000) ** 0.5
    assert n[component == 0].min() >= 3 and n[component == 0].max() <= 7
    assert n[component == 1].min() >= 4 and n[component == 1].max() <= 8
    assert set(label[component == 1].tolist()) <= {2, 3, 4}
    for i in range(200):  # labels against networkx
        g = nx.Graph()
        g.add_nodes_from(range(1, n[i] + 1))
        g.add_edges_from(tuple(e) for e in arrays["edges"][i] if e[0] > 0)
        t = arrays["target"][i]
        expected = nx.shortest_path_length(g, 1, t) if t in g and nx.has_path(g, 1, t) else 9
        assert label[i] == expected
    assert (arrays["edges"][component == 1][..., 0] > 0).sum(axis=1).tolist() == (n[component == 1] - 1).tolist()


def test_same_seed_same_sample_and_dataset_round_trip(tmp_path):
    a = sample_mixture(TWO, 300, np.random.default_rng(5))
    b = sample_mixture(TWO, 300, np.random.default_rng(5))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    folder = build_mixture_dataset(TWO, 300, 5, tmp_path / "ds")
    batch = load_dataset(folder)
    assert np.array_equal(batch.edges.numpy(), a["edges"]) and np.array_equal(batch.label.numpy(), a["label"])
    assert json.loads((folder / "manifest.json").read_text())["mixture"]["components"][1]["family"] == "tree"


def test_coverage_matches_a_plain_python_count():
    train = sample_mixture(TWO, 500, np.random.default_rng(1))
    test = sample_mixture(Mixture((Component("path", 3, 9),), 9), 400, np.random.default_rng(2))

    def key(arrays, i):
        return (int(arrays["num_vertices"][i]), int((arrays["edges"][i][:, 0] > 0).sum()), int(arrays["label"][i]))

    seen = {key(train, i) for i in range(500)}
    expected = sum(key(test, i) in seen for i in range(400)) / 400
    assert coverage(test, train) == pytest.approx(expected)
    assert coverage(train, train) == 1.0 and 0 < expected < 1


@pytest.mark.parametrize("components,needle", [
    ((Component(weight=0.5), Component("tree", weight=0.4)), "weights sum to 0.9"),
    ((Component(weight=1.0), Component("tree", weight=0.0)), "weights must be positive"),
    ((Component(n_min=2),), "3 <= n_min"),
    ((Component(n_max=12),), "n_max <= max_vertices"),
    ((Component(d_min=9, d_max=12),), "no graph with n <="),
    ((Component("grid"),), "unknown family"),
])
def test_bad_mixtures_raise_one_line(components, needle):
    with pytest.raises(MixtureError, match=needle):
        Mixture(components, 9)


TINY = """
name = "mixture-tiny"
seeds = [0, 1]
max_vertices = 6
train_size = 512
test_size = 64
""" + two_models() + TINY_PRETRAIN + """[mixtures.reference]
components = [{family = "reference", n_max = 5, weight = 1.0}]
[mixtures.blend]
components = [{family = "tree", n_max = 5, weight = 0.5}, {family = "erdos_renyi", avg_degree = 3.0, n_max = 5, weight = 0.5}]
[tests.reference]
components = [{family = "reference", n_max = 5}]
[tests.path-larger]
components = [{family = "path", n_min = 6, n_max = 6}]
[tests.long]
components = [{family = "reference", n_max = 5, d_min = 3, d_max = 4}]
"""


@pytest.mark.parametrize("edit,needle", [
    (('weight = 0.5}, {family = "erdos_renyi"', 'weight = 0.6}, {family = "erdos_renyi"'), "not 1"),
    (("train_size = 512", "train_size = 10"), "smallest sensible"),
    (("test_size = 64", "test_size = 64\nbogus = 1"), "unknown mixture study key"),
    (('{family = "path", n_min = 6', '{family = "path", colour = 1, n_min = 6'), "unknown mixture path-larger"),
])
def test_bad_study_is_one_line_exit_2(tmp_path, capsys, edit, needle):
    assert_bad_study(main, TINY.replace(*edit), tmp_path, capsys, needle)


@pytest.mark.slow
def test_mixture_study_end_to_end(tmp_path):
    from data_gen.mixture import Mixture as M, as_batch
    from graphpath.core.checkpoint import load_model
    from graphpath.evaluation.predict import predict

    path = tmp_path / "study.toml"
    path.write_text(TINY)
    out = tmp_path / "out"
    assert main(["--config", str(path), "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "mixture.json").read_text())
    assert len(doc["cells"]) == 2 * 3 * 2 and len(doc["raw"]) == 2 * 2 * 3 * 2
    row = next(r for r in doc["raw"] if (r["mixture"], r["test"], r["model"], r["seed"]) == ("blend", "long", 1, 0))
    import zlib

    test = sample_mixture(M.from_dict("long", {"components": [{"family": "reference", "n_max": 5, "d_min": 3,
                                                               "d_max": 4}]}, 6), 64, split_rng("mixture-tests", key=zlib.crc32(b"long")))
    model, _ = load_model(out / "jobs" / "blend-model1-seed0")
    assert row["mse"] == pytest.approx(float(np.mean((predict(model, as_batch(test, 6)) - test["label"]) ** 2)))
    cell = next(c for c in doc["cells"] if (c["mixture"], c["test"]) == ("reference", "reference"))
    assert cell["families_in_mixture"] and cell["coverage"] > 0.9
    assert set(doc["analysis"]) >= {"spearman_log_mse_vs_coverage", "r2_coverage", "r2_log_N"}
    assert (out / "figures" / "mixture-coverage.html").is_file()


@pytest.mark.parametrize("preset", ["mixture.toml", "mixture-gpu.toml"])
def test_presets_load(preset):
    from pathlib import Path

    from experiments.mixture import load_study

    study = load_study(Path(__file__).resolve().parents[1] / "experiments" / preset)
    assert len(study["models"]) >= 2 and len(study["seeds"]) >= 2
    assert all(abs(sum(c.weight for c in m.components) - 1) < 1e-9 for m in study["_mixtures"].values())
