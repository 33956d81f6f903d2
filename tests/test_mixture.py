"""data_gen.mixture (weights, ranges, datasets, coverage against a plain-Python oracle) and
python -m experiments.mixture (bad input exits 2; a tiny study end to end, slow)."""
import json

import networkx as nx
import numpy as np
import pytest

from data_gen import load_dataset
from data_gen.mixture import (Component, Mixture, MixtureError, build_mixture_dataset, coverage, input_cells,
                              label_support, relabel_ids, sample_mixture, unseen_ids)
from data_gen.splits import split_rng, split_seed_sequence
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


def test_coverage_is_on_inputs_only_and_matches_a_plain_python_count():
    train = sample_mixture(TWO, 500, np.random.default_rng(1))
    test = sample_mixture(Mixture((Component("path", 3, 9),), 9), 400, np.random.default_rng(2))

    def key(arrays, i):  # vertices touched, distinct edges, degree of 1, degree of the target (networkx)
        graph = nx.Graph([tuple(e) for e in arrays["edges"][i] if e[0] > 0])
        t = int(arrays["target"][i])
        return (graph.number_of_nodes(), graph.number_of_edges(), graph.degree(1) if 1 in graph else 0,
                graph.degree(t) if t in graph else 0)

    seen = {key(train, i) for i in range(500)}
    expected = sum(key(test, i) in seen for i in range(400)) / 400
    assert coverage(test, train) == pytest.approx(expected)
    assert coverage(train, train) == 1.0 and 0 < expected < 1
    relabelled = dict(train, label=np.zeros_like(train["label"]))
    assert coverage(test, relabelled) == coverage(test, train)  # labels play no part
    assert label_support(test, relabelled) < label_support(test, train)  # they are counted apart


def test_relabelled_graphs_keep_their_distances_and_use_every_id():
    from data_gen.bfs import adjacency_bitsets, distances_from
    from data_gen.validate import check_graphs

    small = Mixture((Component("reference", 3, 6),), 8)
    arrays = sample_mixture(small, 2000, np.random.default_rng(0))
    renamed = relabel_ids(arrays, 8, np.random.default_rng(1))
    check_graphs(renamed["edges"], renamed["num_vertices"], renamed["target"], 8)
    far = distances_from(adjacency_bitsets(renamed["edges"], 8), 1, 8)[np.arange(2000), renamed["target"]]
    assert np.array_equal(np.minimum(far, 8), arrays["label"])  # the same distances under new names
    assert np.array_equal(input_cells(renamed), input_cells(arrays))  # coverage is blind to names
    larger = sample_mixture(Mixture((Component("reference", 7, 8),), 8), 500, np.random.default_rng(2))
    assert unseen_ids(larger, arrays) > 0.9 and unseen_ids(larger, renamed) == 0.0  # ids 7-8 trained


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
max_vertices = 5
train_size = 512
validation_size = 64
test_size = 64
""" + two_models() + TINY_PRETRAIN + """[convergence.pretrain]
method = "halving"
tolerance = 10.0
max_ratio = 100.0
[mixtures.reference]
components = [{family = "reference", n_max = 4, weight = 1.0}]
[mixtures.blend]
components = [{family = "tree", n_max = 4, weight = 0.5}, {family = "erdos_renyi", avg_degree = 3.0, n_max = 4, weight = 0.5}]
[tests.reference]
components = [{family = "reference", n_max = 4}]
[tests.path-larger]
components = [{family = "path", n_min = 5, n_max = 5}]
[tests.long]
components = [{family = "reference", n_max = 4, d_min = 2, d_max = 3}]
"""


@pytest.mark.parametrize("edit,needle", [
    (('weight = 0.5}, {family = "erdos_renyi"', 'weight = 0.6}, {family = "erdos_renyi"'), "not 1"),
    (("train_size = 512", "train_size = 10"), "smallest sensible"),
    (("validation_size = 64", "validation_size = 8"), "validation_size must be"),
    (('method = "halving"', 'method = "windows"\nwindow = 0.2'), "eval_every"),  # windows of 4 steps, evals every 5
    (("test_size = 64", "test_size = 64\nbogus = 1"), "unknown mixture study key"),
    (('{family = "path", n_min = 5', '{family = "path", colour = 1, n_min = 5'), "unknown mixture path-larger"),
    (("test_size = 64", "test_size = 64\nrelabel = 1"), "relabel must be"),
    (("max_vertices = 5", "max_vertices = 9"), "cannot compute distances up to 8"),
])
def test_bad_study_is_one_line_exit_2(tmp_path, capsys, edit, needle):
    assert_bad_study(main, TINY.replace(*edit), tmp_path, capsys, needle)


@pytest.mark.slow
def test_mixture_study_end_to_end(tmp_path):
    import zlib

    from data_gen.mixture import Mixture as M, as_batch
    from graphpath.core.checkpoint import load_model
    from graphpath.evaluation.predict import predict

    path = tmp_path / "study.toml"
    path.write_text(TINY)
    out = tmp_path / "out"
    assert main(["--config", str(path), "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "mixture.json").read_text())
    assert len(doc["cells"]) == 2 * 3 * 2 and len(doc["raw"]) == 2 * 2 * 3 * 2
    row = next(r for r in doc["raw"] if (r["mixture"], r["test"], r["model"], r["seed"]) == ("blend", "long", 1, 1))
    test = sample_mixture(M.from_dict("long", {"components": [{"family": "reference", "n_max": 4, "d_min": 2,
                                                               "d_max": 3}]}, 5), 64,
                          split_rng("mixture-tests", draw=2, key=zlib.crc32(b"long")))  # seed 1's own sample
    model, _ = load_model(out / "jobs" / "blend-model1-seed1")
    assert row["mse"] == pytest.approx(float(np.mean((predict(model, as_batch(test, 5)) - test["label"]) ** 2)))
    manifest = json.loads((out / "data" / "blend-seed1" / "train" / "manifest.json").read_text())
    assert manifest["relabelled"] and all(r["unseen_ids"] == 0.0 for r in doc["raw"])
    # the gate's validation sample: the same mixture from its own split stream, relabelled alike
    validation = json.loads((out / "data" / "blend-seed1" / "validation" / "manifest.json").read_text())
    stream = split_seed_sequence("study-validation", draw=2, key=zlib.crc32(b"mixture:blend"))
    assert validation["seed"] == list(stream.entropy) and validation["relabelled"]
    assert validation["mixture"] == manifest["mixture"]
    held = load_dataset(out / "data" / "blend-seed1" / "validation")
    verdict = doc["gate"]["verdicts"]["blend-model1-seed1"]
    assert doc["gate"]["criteria"]["pretrain"]["series"] == "val_loss" and verdict["points"] == [1, 1]
    half = [json.loads(line) for line in (out / "jobs" / "blend-model1-seed1-half" / "metrics.jsonl").open()]
    assert verdict["half_steps"] == 10 and verdict["previous"] == [m["val_loss"] for m in half if m["step"] == 10][-1]
    assert verdict["ratio"] == pytest.approx(verdict["last"] / float(held.label.double().var(unbiased=False)))
    cell = next(c for c in doc["cells"] if (c["mixture"], c["test"]) == ("reference", "reference"))
    assert cell["families_in_mixture"] and cell["coverage"] > 0.9 and cell["label_support"] == 1.0
    assert doc["gate"]["jobs"] == 2 * 2 * 2 == len(doc["gate"]["verdicts"]) == doc["gate"]["converged"]  # lenient gate
    assert not doc["analysis"]["size_law"] and "2 model sizes" in doc["analysis"]["size_law_reason"]
    assert (out / "figures" / "mixture-coverage.html").is_file()
    assert doc["seconds"] > 0  # the page states the run's wall time


def simulate_cells(rng, seeds, slope=-3.0, size_slope=-0.2, sizes=(12e3, 30e3, 80e3, 200e3)):
    """log MSE of 3 mixtures x 8 tests x 4 sizes with known slopes, a random effect per seed shared
    by its cells, and coverage that moves a little from seed to seed (each its own training set)."""
    base = rng.uniform(0, 1, (3, 8))
    cells = [(m, t, n) for m in range(3) for t in range(8) for n in sizes]
    log_mse, cov = np.zeros((seeds, len(cells))), np.zeros((seeds, len(cells)))
    for s in range(seeds):
        shared, moved = rng.normal(0, 0.3), np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1)
        for i, (m, t, n) in enumerate(cells):
            cov[s, i] = moved[m, t]
            log_mse[s, i] = 1.0 + slope * moved[m, t] + size_slope * np.log(n) + shared + rng.normal(0, 0.3)
    return log_mse, cov, np.log([n for _, _, n in cells])


def test_coverage_regression_intervals_cover_the_truth_at_the_nominal_rate():
    """Per-seed fits and a t-interval over 3 seeds at the Bonferroni level 97.5%: the known slopes
    lie inside about 97.5% of the time (300 simulated studies; a bootstrap over 3 seeds reached 71%)."""
    from experiments.coverage_fit import regression

    rng = np.random.default_rng(5)
    hits = {"coverage": 0, "log_N": 0}
    for _ in range(300):
        fit = regression(*simulate_cells(rng, 3))["fit"]
        for term, truth in (("coverage", -3.0), ("log_N", -0.2)):
            low, high = fit[term]["ci"]
            hits[term] += low <= truth <= high
    for term, hit in hits.items():
        assert 0.94 <= hit / 300 <= 1.0, (term, hit / 300)
    few = regression(*simulate_cells(rng, 3, sizes=(12e3, 200e3)))
    assert few["terms"] == ["coverage"] and "2 model sizes" in few["size_law_reason"]


@pytest.mark.parametrize("preset", ["mixture.toml", "mixture-gpu.toml"])
def test_presets_load(preset):
    from pathlib import Path

    from experiments.mixture import load_study
    from experiments.scaling_fit import size_law_allowed
    from graphpath.sweeps.runner import non_embedding_parameters

    study = load_study(Path(__file__).resolve().parents[1] / "experiments" / preset)
    assert len(study["seeds"]) >= 3 and study["relabel"]
    sizes = [non_embedding_parameters(m, study["max_vertices"]) for m in study["models"]]
    assert size_law_allowed(sizes)[0], sizes
    assert all(abs(sum(c.weight for c in m.components) - 1) < 1e-9 for m in study["_mixtures"].values())
    assert study["answers"]["can"] and study["answers"]["cannot"]


@pytest.mark.parametrize("args,needle", [(["--mixture", "nope"], "no [mixtures.nope]"),
                                         (["--mixture", "blend", "--model", "5"], "--model must lie"),
                                         (["--mixture", "blend", "--set", "steps"], "key=value"),
                                         (["--mixture", "blend", "--set", "stepz=3"], "stepz")])
def test_probe_bad_input_is_one_line_exit_2(tmp_path, capsys, args, needle):
    from experiments.mixture_probe import main as probe

    (tmp_path / "study.toml").write_text(TINY)
    assert probe(["--config", str(tmp_path / "study.toml"), "--out", str(tmp_path / "out")] + args) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_probe_prints_the_arm_and_its_half_and_the_verdict(tmp_path, capsys):
    from experiments.mixture_probe import main as probe

    (tmp_path / "study.toml").write_text(TINY)
    out = tmp_path / "out"
    assert probe(["--config", str(tmp_path / "study.toml"), "--out", str(out), "--mixture", "blend", "--model", "1",
                  "--set", "steps=16", "--half"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    full = [json.loads(line) for line in (out / "jobs" / "blend-model1-seed0-steps16" / "metrics.jsonl").open()]
    half = [json.loads(line) for line in (out / "jobs" / "blend-model1-seed0-steps16-half" / "metrics.jsonl").open()]
    assert max(m["step"] for m in full) == 16 and max(m["step"] for m in half) == 8
    verdict = json.loads(lines[-1])
    assert verdict["last"] == [m["val_loss"] for m in full if m["step"] == 16][-1]
    assert verdict["previous"] == [m["val_loss"] for m in half if m["step"] == 8][-1]
