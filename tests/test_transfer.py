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
from experiments import transfer_stats as ts
from graphpath.core.config import from_dict, stage_specs
from graphpath.training.feed import make_feed, stage_seed
from tests.oracle import task_label
from tiny_studies import TRANSFER_GRAPHS

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


def synthetic_scores(tasks, seeds, gain, rng, noise=0.05, sizes=(32,), generic=0.0):
    """Test losses with a known transfer gain[a][b] (scratch baseline 1.0 for every B; the
    shuffled-label control helps every B by `generic`)."""
    scores = {}
    for s in seeds:
        for size in sizes:
            for b in tasks:
                scores[("baseline", None, b, size, s)] = 1.0 + rng.normal(0, noise)
                scores[("control", None, b, size, s)] = 1.0 - generic + rng.normal(0, noise)
                for a in tasks:
                    scores[("transferred", a, b, size, s)] = 1.0 - gain[a][b] + rng.normal(0, noise)
        for a in tasks:
            for b in tasks:
                scores[("zero_shot", a, b, None, s)] = 2.0 + rng.normal(0, noise)
    return scores


def test_known_transfer_lies_in_its_95_percent_interval_at_the_nominal_rate():
    """Each seed has its own test sample, so the spread over seeds holds both sources of noise."""
    rng = np.random.default_rng(0)
    tasks, seeds = ["x", "y"], [0, 1, 2, 3]
    gain = {"x": {"x": 0.5, "y": 0.3}, "y": {"x": -0.2, "y": 0.5}}
    covered, trials = 0, 400
    for _ in range(trials):
        scores = synthetic_scores(tasks, seeds, gain, rng, generic=0.1)
        cells = ts.transfer_cells(scores, tasks, [32], seeds, {"x": [2.0] * 4, "y": [0.5] * 4})
        cell = next(c for c in cells if (c["source"], c["target"]) == ("x", "y"))
        low, high = cell["transfer"]["ci95"]
        covered += low <= 0.3 <= high
        assert cell["relative"]["per_seed"] == pytest.approx([g / 0.5 for g in cell["transfer"]["per_seed"]])
    assert 0.92 <= covered / trials <= 0.98
    assert cell["specific"]["mean"] == pytest.approx((0.3 - 0.1) / 0.5, abs=0.15)  # beyond the control's 0.1
    negative = next(c for c in cells if (c["source"], c["target"]) == ("y", "x"))
    assert negative["transfer"]["mean"] == pytest.approx(-0.2, abs=0.15)
    assert [c["diagonal"] for c in cells] == [True, False, False, True]


def test_benjamini_hochberg_keeps_false_findings_at_the_nominal_rate():
    """Under the global null (no cell transfers) a finding anywhere is a false discovery: BH at
    q = 0.05 over 12 cells x 2 sizes must make one in at most about 5% of simulated studies; with
    half the cells truly transferring, the share of false findings among findings stays <= 0.05."""
    rng = np.random.default_rng(1)
    tasks, seeds, sizes = ["a", "b", "c", "d"], [0, 1, 2, 3, 4], (32, 256)
    null = {s: {t: 0.0 for t in tasks} for s in tasks}
    mixed = {s: {t: (0.3 if (tasks.index(s) + tasks.index(t)) % 2 else 0.0) for t in tasks} for s in tasks}
    constant = {t: [1.0] * len(seeds) for t in tasks}
    any_false, proportions, trials = 0, [], 300
    for _ in range(trials):
        cells = ts.transfer_cells(synthetic_scores(tasks, seeds, null, rng, noise=0.1, sizes=sizes), tasks, list(sizes),
                                  seeds, constant)
        counts = ts.correct(cells, 0.05)
        assert counts["relative"]["tests"] == 12 * 2
        any_false += counts["relative"]["positive"] + counts["relative"]["negative"] > 0
        cells = ts.transfer_cells(synthetic_scores(tasks, seeds, mixed, rng, noise=0.1, sizes=sizes), tasks, list(sizes),
                                  seeds, constant)
        ts.correct(cells, 0.05)
        found = [c for c in cells if not c["diagonal"] and c["relative"]["finding"]]
        false = [c for c in found if mixed[c["source"]][c["target"]] == 0.0]
        proportions.append(len(false) / max(len(found), 1))
    assert any_false / trials <= 0.08 and np.mean(proportions) <= 0.06
    uncorrected = [c for c in cells if not c["diagonal"] and c["relative"]["p"] <= 0.05]
    assert len(uncorrected) >= len(found)  # BH never finds more than the uncorrected tests


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
    scores = synthetic_scores(tasks, [0, 1, 2], gain, np.random.default_rng(1), noise=0.01)
    cells = ts.transfer_cells(scores, tasks, [32], [0, 1, 2], {t: [1.0] * 3 for t in tasks})
    matrix = ts.relative_matrix(cells, tasks, 32)
    assert np.isnan(np.diag(matrix)).all()
    sim, asym = ts.similarity(matrix)
    assert np.allclose(sim, sim.T, equal_nan=True) and np.allclose(asym, -asym.T, equal_nan=True)
    assert asym[2, 3] == pytest.approx(0.3, abs=0.05)
    clusters = ts.cluster(sim, tasks)
    from scipy.cluster.hierarchy import fcluster

    labels = fcluster(np.array(clusters["linkage"]), 2, criterion="maxclust")
    assert labels[0] == labels[1] != labels[2] == labels[3]
    assert sorted(clusters["linkage"][0][:2]) == [0, 1]  # the strongest pair merges first
    counts = ts.correct(cells, 0.05)
    text = ts.findings(cells, counts, 3, 0.05)
    assert "the largest is c -> d at D_B = 32" in text


def test_unconverged_cells_are_marked_and_left_out_of_the_tests():
    tasks, seeds = ["a", "b"], [0, 1, 2]
    scores = synthetic_scores(tasks, seeds, {s: {t: 0.5 for t in tasks} for s in tasks}, np.random.default_rng(2))
    converged = {("a", "b", 32): False, ("b", "a", 32): True, ("a", "a", 32): True, ("b", "b", 32): True}
    cells = ts.transfer_cells(scores, tasks, [32], seeds, {t: [1.0] * 3 for t in tasks}, converged)
    counts = ts.correct(cells, 0.05)
    assert counts["relative"]["tests"] == 1
    marked = next(c for c in cells if (c["source"], c["target"]) == ("a", "b"))
    assert marked["relative"]["q"] is None and not marked["relative"]["finding"]
    assert "1 off-diagonal cells did not converge" in ts.findings(cells, counts, 3, 0.05)


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


def test_samples_avoid_every_training_graph():
    study = {"data": {"n_max": 5}, "balance_threshold": None}
    from data_gen import sample

    training = sample(tr.spec_of(study, "degree"), 400, 5)
    seen = set(tr.graph_hashes(training))
    batch, info = tr.fresh_sample(study, "test", 0, "degree", seen, 200)
    assert len(batch) == 200 and not seen & set(tr.graph_hashes(batch))
    assert info["collisions"] > 0  # n <= 5: small graphs repeat, and were dropped
    other, _ = tr.fresh_sample(study, "test", 1, "degree", seen, 200)
    assert tr.graph_hashes(other) != tr.graph_hashes(batch)  # one sample per seed


@pytest.mark.parametrize("edit,needle", [
    (lambda t: t.replace('"degree"]', '"colouring"]'), "unknown task(s) 'colouring'"),
    (lambda t: t.replace("seeds = [0, 1]", "seeds = []"), "seeds"),
    (lambda t: t.replace("finetune_sizes = [32]", "finetune_sizes = [2]"), "finetune_sizes"),
    (lambda t: t.replace("lrs = [1e-3, 3e-3]", "lrs = []"), "lrs must be"),
    (lambda t: t.replace("n_layers = 3", "n_layers = 2"), "cannot compute distances up to 4"),
    (lambda t: t.replace("name = \"t\"", "name = \"t\"\nfdr = 1.5"), "fdr must lie"),
    (lambda t: t.replace("validation_size = 64", "validation_size = 64\nwhatever = 1"), "whatever"),
])
def test_bad_study_input_is_one_line_exit_2(tmp_path, capsys, edit, needle):
    path = tmp_path / "t.toml"
    path.write_text(edit(TINY))
    assert tr.main(["--config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_unknown_executor_is_exit_2(tmp_path, capsys):
    path = tmp_path / "t.toml"
    path.write_text(TINY)
    assert tr.main(["--config", str(path), "--out", str(tmp_path / "out"), "--executor", "pbs"]) == 2
    assert "unknown executor 'pbs'" in capsys.readouterr().err


def test_presets_load_with_enough_tasks_seeds_sizes_and_lrs():
    cpu = tr.load_study(tr.DEFAULT_CONFIG)
    gpu = tr.load_study(tr.DEFAULT_CONFIG.with_name("transfer-gpu.toml"))
    assert len(cpu["tasks"]) >= 3 and len(cpu["seeds"]) >= 4 and len(cpu["lrs"]) >= 2
    assert len(cpu["finetune_sizes"]) >= 2 and cpu["answers"]["can"] and cpu["answers"]["cannot"]
    assert sorted(gpu["tasks"]) == sorted(tr.SUITE) and len(gpu["seeds"]) >= 4 and len(gpu["finetune_sizes"]) >= 3


TINY = """
name = "t"
tasks = ["reachable", "degree"]
control = "degree"
seeds = [0, 1]
pretrain_size = 256
finetune_sizes = [32]
lrs = [1e-3, 3e-3]
test_size = 128
validation_size = 64
""" + TRANSFER_GRAPHS + """[pretrain]
steps = 20
batch_size = 32
lr = 3e-3
eval_every = 5
eval_size = 64
log_every = 5
checkpoint_every = 1000
buckets = 1
[finetune]
batch_size = 16
eval_size = 64
buckets = 1
"""


@pytest.mark.slow
def test_tiny_study_end_to_end(tmp_path):
    from experiments.protocol import lr_name

    path = tmp_path / "t.toml"
    path.write_text(TINY)
    out = tmp_path / "out"
    assert tr.main(["--config", str(path), "--out", str(out), "--workers", "2", "--quiet"]) == 0
    doc = json.loads((out / "transfer.json").read_text())
    assert doc["tasks"] == ["reachable", "degree"] and len(doc["cells"]) == 4
    per_seed = 2 + 1 + 2 * 2 * (1 + 2 + 1)  # pre-trainings, control, lrs x B x (baseline, 2 transferred, control)
    assert doc["gate"]["jobs"] == 2 * per_seed == len(doc["gate"]["verdicts"])
    cell = next(c for c in doc["cells"] if (c["source"], c["target"]) == ("reachable", "degree"))
    assert cell["transfer"]["per_seed"] == pytest.approx(
        [b - t for b, t in zip(cell["baseline_loss"]["per_seed"], cell["transferred_loss"]["per_seed"])])
    choice = doc["lr_choices"]["transferred:reachable:degree:32"]
    assert choice["lr"] == min(choice["validation"], key=lambda k: choice["validation"][k]) or True
    assert float(min(choice["validation"], key=choice["validation"].get)) == choice["lr"]
    assert choice["lr_at_edge"]  # two lrs: either choice is an edge of the grid
    # the same fine-tuning data of B for every A and the control, within a seed and lr
    folder = out / "jobs" / "seed0" / "D32" / lr_name(1e-3)
    configs = [(folder / f"{a}-to-degree" / "config.toml").read_text() for a in doc["tasks"]]
    configs.append((folder / "control-to-degree" / "config.toml").read_text())
    datasets = {line for text in configs for line in text.splitlines() if "finetune-degree" in line}
    assert len(datasets) == 1
    shuffled = json.loads((out / "data" / "seed0" / "control" / "manifest.json").read_text())
    original = json.loads((out / "data" / "seed0" / "pretrain-degree" / "manifest.json").read_text())
    assert shuffled["shuffled_labels_of"] == "degree" and shuffled["label_histogram"] == original["label_histogram"]
    assert all((out / "figures" / f).is_file() for f in ("transfer-matrix.html", "transfer-dendrogram.html",
                                                           "transfer-asymmetry.html"))


def test_a_pretrained_arm_may_choose_no_fine_tuning_and_lr_zero_is_no_edge():
    """choose(): the transferred and control arms may take lr 0 (their pre-trained model as it is),
    chosen on validation like any lr and scored on test; 1e-4 chosen over lr 0 is bracketed, not an
    edge; the from-scratch baseline has no lr 0, so its smallest lr is an edge."""
    from experiments.transfer import NO_FINETUNING, choose

    study = {"seeds": [0, 1], "lrs": [1e-4, 1e-3]}
    losses = {}
    validation = {("transferred", "a"): {1e-4: 0.5, 1e-3: 0.9, None: 0.1},  # no fine-tuning is best
                  ("control", None): {1e-4: 0.2, 1e-3: 0.9, None: 0.8},   # 1e-4 beats lr 0 and 1e-3
                  ("baseline", None): {1e-4: 0.3, 1e-3: 0.4}}
    for (kind, a), values in validation.items():
        for lr, value in values.items():
            for seed in study["seeds"]:
                if lr is None:
                    frozen = "zero_shot" if kind == "transferred" else "control_zero_shot"
                    losses[("validation", frozen, a, "b", None, None, seed)] = value
                    losses[("test", frozen, a, "b", None, None, seed)] = value + 10 + seed
                else:
                    losses[("validation", kind, a, "b", 32, lr, seed)] = value
                    losses[("test", kind, a, "b", 32, lr, seed)] = value + 20 + seed
    scores, choices = choose(study, losses)
    transferred, control, baseline = (choices[k] for k in ("transferred:a:b:32", "control::b:32", "baseline::b:32"))
    assert transferred["lr"] == NO_FINETUNING and not transferred["lr_at_edge"]
    assert scores[("transferred", "a", "b", 32, 1)] == pytest.approx(10.1 + 1)  # the zero-shot test loss
    assert control["lr"] == 1e-4 and not control["lr_at_edge"]
    assert baseline["lr"] == 1e-4 and baseline["lr_at_edge"]
    assert scores[("zero_shot", "a", "b", None, 0)] == pytest.approx(10.1)  # test, never the validation value
