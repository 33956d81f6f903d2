"""experiments.transfer and per-stage tasks: a stage trains on the task its config names (labels
checked against networkx), the transfer statistics on synthetic losses (known transfer inside its
interval at the nominal rate, clustering finds the similar pair), test sets disjoint from training
graphs, bad input, and a tiny end-to-end study."""
import json

import numpy as np
import pytest
import torch

from data_gen import GraphBatch, study_presets
from experiments import transfer as tr
from graphpath.core.config import from_dict, stage_specs
from graphpath.training.feed import make_feed, stage_seed
from tests.oracle import task_label

TASKS = ["distance-12", "distance-any", "reachable", "degree"]


def test_a_degree_pretraining_trains_on_networkx_degrees_of_the_target():
    config = from_dict({"data": {"n_max": 7, "finetune_n_max": 5, "pretrain_task": "degree",
                                 "finetune_task": "reachable"}})
    specs = stage_specs(config)
    assert (specs["pretrain"].task, specs["finetune"].task) == ("degree", "reachable")
    assert specs["pretrain"].max_vertices == specs["finetune"].max_vertices == 7
    feed = make_feed(specs["pretrain"], 256, stage_seed(config.seed, "pretrain", "train"))
    batch = feed.next()
    labels = batch.label.tolist()
    for i in range(len(batch)):
        edges = batch.edges[i][batch.edges[i, :, 0] > 0].tolist()
        n, t = int(batch.num_vertices[i]), int(batch.target[i])
        assert labels[i] == task_label("degree", n, edges, t, 7)
    assert len(set(labels)) >= 3 and 0 in labels  # degrees, not distances (which are >= 1)
    # the default stays the study's distance tasks, byte for byte
    default = from_dict({"data": {"n_max": 7, "finetune_n_max": 5}})
    assert stage_specs(default) == study_presets(n_max=7, finetune_n_max=5)


def test_an_unknown_stage_task_is_a_config_error():
    from graphpath.core.config import ConfigError

    with pytest.raises(ConfigError, match="unknown task 'colouring'"):
        from_dict({"data": {"pretrain_task": "colouring"}})


def synthetic_rows(tasks, seeds, gain, rng, noise=0.05):
    """Losses with a known transfer gain[a][b] (baseline 1.0 for every B)."""
    rows = []
    for s in seeds:
        for b in tasks:
            rows.append({"seed": s, "source": None, "target": b, "kind": "baseline", "loss": 1.0 + rng.normal(0, noise),
                         "accuracy": 0.5})
            for a in tasks:
                for kind, value in (("transferred", 1.0 - gain[a][b]), ("zero_shot", 2.0)):
                    rows.append({"seed": s, "source": a, "target": b, "kind": kind,
                                 "loss": value + rng.normal(0, noise), "accuracy": 0.5})
    return rows


def test_known_transfer_lies_in_its_95_percent_interval_at_the_nominal_rate():
    rng = np.random.default_rng(0)
    tasks, seeds = ["x", "y"], [0, 1, 2]
    gain = {"x": {"x": 0.5, "y": 0.3}, "y": {"x": -0.2, "y": 0.5}}
    covered, trials = 0, 400
    for _ in range(trials):
        rows = synthetic_rows(tasks, seeds, gain, rng)
        cells = tr.transfer_cells(rows, tasks, seeds, {"x": [2.0] * 3, "y": [0.5] * 3})
        cell = next(c for c in cells if (c["source"], c["target"]) == ("x", "y"))
        low, high = cell["transfer"]["ci95"]
        covered += low <= 0.3 <= high
        # the relative form is the same numbers over B's constant-predictor loss
        assert cell["relative"]["per_seed"] == pytest.approx([g / 0.5 for g in cell["transfer"]["per_seed"]])
    assert 0.92 <= covered / trials <= 0.98
    negative = next(c for c in cells if (c["source"], c["target"]) == ("y", "x"))
    assert negative["transfer"]["mean"] == pytest.approx(-0.2, abs=0.15)
    assert [c["diagonal"] for c in cells] == [True, False, False, True]


def test_clustering_groups_the_two_similar_tasks_and_keeps_the_diagonal_apart():
    tasks = ["a", "b", "c", "d"]
    # a <-> b transfer strongly both ways, c <-> d too, across the pairs nothing
    gain = {s: {t: 0.0 for t in tasks} for s in tasks}
    for s, t in (("a", "b"), ("b", "a")):
        gain[s][t] = 0.6
    for s, t in (("c", "d"), ("d", "c")):
        gain[s][t] = 0.4
    gain["c"]["d"] = 0.7  # asymmetric: c helps d more than d helps c
    for t in tasks:
        gain[t][t] = 5.0  # a huge diagonal must not leak into the similarity
    rows = synthetic_rows(tasks, [0, 1, 2], gain, np.random.default_rng(1), noise=0.01)
    cells = tr.transfer_cells(rows, tasks, [0, 1, 2], {t: [1.0] * 3 for t in tasks})
    matrix = tr.relative_matrix(cells, tasks)
    assert np.isnan(np.diag(matrix)).all()
    sim, asym = tr.similarity(matrix)
    assert np.allclose(sim, sim.T, equal_nan=True) and np.allclose(asym, -asym.T, equal_nan=True)
    assert asym[2, 3] == pytest.approx(0.3, abs=0.05)
    clusters = tr.cluster(sim, tasks)
    from scipy.cluster.hierarchy import fcluster

    labels = fcluster(np.array(clusters["linkage"]), 2, criterion="maxclust")
    assert labels[0] == labels[1] != labels[2] == labels[3]
    first = clusters["linkage"][0][:2]
    assert sorted(first) == [0, 1]  # the strongest pair merges first
    doc = tr.analyse({"tasks": tasks, "seeds": [0, 1, 2]}, rows, {t: [1.0] * 3 for t in tasks},
                     {str(s): {t: {"drawn": 10, "collisions": 1} for t in tasks} for s in (0, 1, 2)})
    assert doc["test_sets"]["collisions_total"] == 12 and doc["matrix"]["relative"][0][0] is None
    assert "strongest is c -> d" in doc["findings"] and "most asymmetric pair is c / d" in doc["findings"]


def test_graph_hash_ignores_edge_order_and_repeats_but_not_the_graph():
    def batch(edges, n):
        width = max(len(e) for e in edges)
        padded = [e + [[0, 0]] * (width - len(e)) for e in edges]
        size = len(edges)
        return GraphBatch(edges=torch.tensor(padded), num_vertices=torch.tensor(n), target=torch.full((size,), 2),
                          label=torch.ones(size, dtype=torch.long), path_length=torch.ones(size, dtype=torch.long),
                          max_vertices=6)

    h = tr.graph_hashes(batch([[[1, 2], [2, 3]], [[2, 3], [1, 2], [1, 2]], [[1, 2], [2, 4]], [[1, 2], [2, 3]]],
                              [4, 4, 4, 5]))
    assert h[0] == h[1]  # order and repeats do not matter
    assert h[0] != h[2] and h[0] != h[3]  # another edge, another vertex count


def test_test_sets_avoid_every_training_graph(tmp_path):
    study = {"data": {"n_max": 5}, "balance_threshold": None, "test_size": 200}
    from data_gen import sample

    training = sample(tr.spec_of(study, "degree"), 400, 5)
    seen = set(tr.graph_hashes(training))
    batch, info = tr.test_set(study, 0, "degree", seen)
    assert len(batch) == 200 and not seen & set(tr.graph_hashes(batch))
    assert info["collisions"] > 0  # n <= 5: small graphs repeat, and were dropped


@pytest.mark.parametrize("edit,needle", [
    (lambda t: t.replace('"degree"]', '"colouring"]'), "unknown task(s) 'colouring'"),
    (lambda t: t.replace("seeds = [0, 1]", "seeds = []"), "seeds"),
    (lambda t: t.replace("finetune_size = 32", "finetune_size = 2"), "finetune_size"),
    (lambda t: t + "\nwhatever = 1\n", "whatever"),
])
def test_bad_study_input_is_one_line_exit_2(tmp_path, capsys, edit, needle):
    path = tmp_path / "t.toml"
    path.write_text(edit(TINY))
    assert tr.main(["--config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unknown_executor_is_exit_2(tmp_path, capsys):
    path = tmp_path / "t.toml"
    path.write_text(TINY)
    assert tr.main(["--config", str(path), "--out", str(tmp_path / "out"), "--executor", "pbs"]) == 2
    assert "unknown executor 'pbs'" in capsys.readouterr().err


def test_presets_load_with_enough_tasks_and_seeds():
    cpu = tr.load_study(tr.DEFAULT_CONFIG)
    gpu = tr.load_study(tr.DEFAULT_CONFIG.with_name("transfer-gpu.toml"))
    assert len(cpu["tasks"]) >= 4 and len(cpu["seeds"]) >= 3
    assert sorted(gpu["tasks"]) == sorted(tr.SUITE) and len(gpu["seeds"]) >= 3


TINY = """
name = "t"
tasks = ["reachable", "degree"]
seeds = [0, 1]
pretrain_size = 256
finetune_size = 32
test_size = 128
[data]
n_max = 6
[model]
d_model = 8
n_layers = 1
n_heads = 1
[pretrain]
steps = 20
batch_size = 32
lr = 3e-3
eval_every = 20
eval_size = 64
log_every = 10
checkpoint_every = 1000
buckets = 1
[finetune]
steps = 5
batch_size = 16
lr = 1e-3
eval_every = 5
eval_size = 64
log_every = 5
checkpoint_every = 1000
buckets = 1
"""


@pytest.mark.slow
def test_tiny_study_end_to_end(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(TINY)
    out = tmp_path / "out"
    assert tr.main(["--config", str(path), "--out", str(out), "--workers", "2", "--quiet"]) == 0
    doc = json.loads((out / "transfer.json").read_text())
    assert doc["tasks"] == ["reachable", "degree"] and len(doc["cells"]) == 4
    assert len(doc["raw"]) == 2 * 2 * (1 + 2 + 2)  # seeds x targets x (baseline, 2 transferred, 2 zero-shot)
    cell = next(c for c in doc["cells"] if (c["source"], c["target"]) == ("reachable", "degree"))
    # the stored numbers are each other's differences, per seed
    assert cell["transfer"]["per_seed"] == pytest.approx(
        [b - t for b, t in zip(cell["baseline_loss"]["per_seed"], cell["transferred_loss"]["per_seed"])])
    # the same fine-tuning data of B for every A within a seed
    configs = [(out / "jobs" / "seed0" / f"{a}-to-degree" / "config.toml").read_text() for a in doc["tasks"]]
    datasets = [line for text in configs for line in text.splitlines() if "finetune-degree" in line]
    assert len(datasets) == 2 and datasets[0] == datasets[1]
    assert all((out / "figures" / f).is_file() for f in ("transfer-matrix.html", "transfer-dendrogram.html",
                                                           "transfer-asymmetry.html"))
