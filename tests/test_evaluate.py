"""graphpath.evaluation.suite: the sets, scoring with stand-in models, pooling runs, eval.json, and the CLI."""
from __future__ import annotations

import collections
import json

import networkx as nx
import numpy as np
import pytest
import torch

from data_gen.splits import SPLITS
from graphpath.core.checkpoint import load_model, save_checkpoint
from graphpath.evaluation.predict import pool_runs, predict, score_model
from graphpath.evaluation.sets import (EvalError, define_sets, grid_cells, load_set, resolve_names, sample_grid,
                                 SET_NAMES, SHIFT_NAMES)
from graphpath.evaluation.suite import evaluate_run, main, prepare
from graphpath.core.model import GraphTransformer, ModelConfig
from graphpath.training.phases import NULL_FALSE_POSITIVE_RATE
from handcrafted import build_bfs_transformer
from oracle import label_of

DATA = dict(n_max=6, finetune_n_max=4, small_target=4, pretrain_threshold=3, finetune_threshold=2)
SIZE, GRID_SIZE = 48, 3


class Oracle(torch.nn.Module):
    def forward(self, batch):
        return batch.label.float()


class Constant(torch.nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, batch):
        return torch.full((len(batch),), self.value)


def make_run(directory, data=DATA, seed=0, config_data=None, stages=("pretrain", "finetune")):
    """A run directory with tiny untrained pre-train and fine-tune checkpoints."""
    torch.manual_seed(seed)
    config = ModelConfig(max_vertices=data["n_max"], d_model=8, n_layers=1, n_heads=2)
    for stage in stages:
        info = dict(model_config=config.to_dict(), data=data, step=1, seed=seed, stage=stage)
        save_checkpoint(directory / "checkpoints", f"{stage}-final", GraphTransformer(config), info)
    table = config_data or data
    (directory / "config.toml").write_text("[data]\n" + "".join(f"{k} = {v}\n" for k, v in table.items()))
    phases = {"phase_changes": [{"stage": "pretrain", "label": "1", "step": 40, "examples": 4000,
                                 "loss_before": 1.0, "loss_after": 0.1, "plateau_steps": 20, "fall_steps": 5,
                                 "reference": 1.0, "source": "heldout"}],
              "curves_checked": [{"stage": "pretrain", "label": label, "points": 20, "reference": 1.0}
                                 for label in ("all", "1")],
              "finetune": {"loss_before": 0.6, "loss_after": 0.02}}
    (directory / "phases.json").write_text(json.dumps(phases))
    return directory


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare(DATA, list(SET_NAMES), SIZE, GRID_SIZE, 0, tmp_path_factory.mktemp("cache"), progress=False)


# ---- sets -------------------------------------------------------------------------------------

def test_grid_covers_exactly_the_requested_cells():
    arrays = sample_grid(6, 5, np.random.default_rng(3))
    cells = collections.Counter(zip(arrays["num_vertices"].tolist(), arrays["target"].tolist()))
    assert cells == {cell: 5 for cell in grid_cells(6)}
    assert grid_cells(4) == [(3, 2), (3, 3), (4, 2), (4, 3), (4, 4)]
    for edges, n, t, label in zip(arrays["edges"].tolist(), arrays["num_vertices"], arrays["target"],
                                  arrays["label"]):
        assert label == label_of(int(n), edges, int(t), 6)


def test_set_names_and_groups():
    assert resolve_names(None) == list(SET_NAMES)
    assert resolve_names(["shift", "pretrain"]) == ["pretrain", *SHIFT_NAMES]
    with pytest.raises(EvalError, match="unknown set 'nope'"):
        resolve_names(["nope"])


def test_sets_are_seeded_and_cached(tmp_path):
    evalset = define_sets(DATA)["test-any-large"]
    first, digest = load_set(evalset, 40, 5, tmp_path)
    assert len(list(tmp_path.glob("test-any-large-*.npz"))) == 1
    again, digest_again = load_set(evalset, 40, 5, tmp_path)
    fresh, digest_fresh = load_set(evalset, 40, 5, None)
    assert first.equal(again) and digest == digest_again == digest_fresh
    assert load_set(evalset, 40, 6, None)[1] != digest


def test_shift_sets_have_their_family(prepared):
    tree = prepared["shift-tree"][1]
    assert torch.equal(tree.num_edges, tree.num_vertices - 1)
    path = prepared["shift-path"][1]
    for edges, n in zip(path.edges.tolist(), path.num_vertices.tolist()):
        graph = nx.Graph([e for e in edges if e[0] > 0])
        assert graph.number_of_nodes() == n and max(d for _, d in graph.degree) <= 2


# ---- scoring ----------------------------------------------------------------------------------

def test_oracle_and_constant_models_on_every_set(prepared):
    results, skipped = score_model(Oracle(), prepared, 6, progress=False)
    assert not skipped and set(results) == set(SET_NAMES)
    assert all(block["mse"] == 0.0 and block["accuracy"] == 1.0 for block in results.values())
    results, _ = score_model(Constant(3.0), prepared, 6, progress=False)
    for name, (_, batch, _) in prepared.items():
        assert results[name]["mse"] == pytest.approx(((batch.label.double() - 3.0) ** 2).mean().item())


def test_a_model_with_another_vocabulary_skips_every_set(prepared):
    results, skipped = score_model(Oracle(), prepared, 8, progress=False)
    assert results == {} and set(skipped) == set(SET_NAMES)
    assert "vocabulary is 8" in skipped["pretrain"]


def test_predict_is_chunked_and_keeps_order(prepared):
    batch = prepared["shift-er-deg3"][1]
    calls = []

    def model(part):
        calls.append(len(part))
        return part.target.float() * 100 + part.num_edges.float()

    out = predict(model, batch, chunk=20)
    assert np.array_equal(out, (batch.target * 100 + batch.num_edges).double().numpy())
    assert calls == [20, 20, 8]


def test_pool_runs_means_and_per_run_values():
    blocks = [{"count": 4, "mean_label": 2.0, "label_variance": 1.0, "mse": m, "accuracy": a,
               "per_label": {"1": {"count": 4, "mse": m}}, "confusion": {"labels": [1, 2], "counts": [[1, 0], [0, 3]]},
               "runs": 1, "ci_kind": "graphs"} for m, a in ((1.0, 0.5), (2.0, 0.6), (4.0, 0.7))]
    pooled = pool_runs(blocks)
    assert pooled["mse"] == pytest.approx(7 / 3) and pooled["mse_ci95"] is None  # filled from per-example errors
    assert pooled["accuracy"] == pytest.approx(0.6) and pooled["runs"] == 3 and pooled["ci_kind"] == "seeds+graphs"
    assert pooled["confusion"]["counts"] == [[3, 0], [0, 9]]
    assert pooled["per_run"]["mse"] == [1.0, 2.0, 4.0]
    assert pool_runs(blocks[:1]) is blocks[0]


# ---- eval.json and report.md ------------------------------------------------------------------

TOP_KEYS = {"schema_version", "title", "created_utc", "model", "primary", "max_vertices", "data", "eval", "sets",
            "set_data", "models", "phases", "grid", "reproduction", "findings", "findings_note", "figures",
            "line_probe", "subgroups", "onpath_grid", "overlap", "departures", "provenance", "threshold_provenance"}
BLOCK_KEYS = {"count", "mse", "mse_ci95", "accuracy", "accuracy_ci95", "mean_label", "label_variance", "per_label",
              "confusion", "runs", "ci_kind", "seeds", "raw_histogram"}
MODEL_KEYS = {"kind", "description", "sources", "vocabulary", "runs", "info", "results", "skipped"}
ROW_KEYS = {"key", "set", "model", "quantity", "study_mse", "study_verdict", "mse", "mse_ci95", "ci_kind", "runs",
            "source", "finding", "holds", "status", "per_run", "study_normalized_mse", "normalized_mse",
            "normalized_ci95", "accuracy", "accuracy_ci95", "constant_mse", "basis"}
FINDING_KEYS = {"key", "finding", "model", "set", "subgroup", "criterion", "threshold", "rationale", "estimate",
                "per_seed", "p", "p_against", "p_adjusted", "p_against_adjusted", "status", "holds", "evidence", "seen"}
# what single findings add (graphpath.evaluation.findings): fine-tuning's caveats, the large-target
# finding's counts and reference group, the order finding's settle steps per seed
FINDING_EXTRAS = {"finetune-cheap": {"caveats"}, "onpath-large-partly": {"counts", "reference"},
                  "phase-order": {"settle"}}


def test_evaluate_run_writes_a_stable_schema(tmp_path):
    run = make_run(tmp_path / "run")
    doc = evaluate_run(run, size=SIZE, grid_size=GRID_SIZE, cache_dir=tmp_path / "cache", progress=False,
                       compare_handcrafted=False, sets=["study", "grid", "shift-tree"])
    stored = json.loads((run / "eval.json").read_text())
    assert stored == json.loads(json.dumps(doc))
    assert set(stored) == TOP_KEYS and stored["schema_version"] == 1
    assert set(stored["models"]) == {"learned", "learned-pretrain"}
    assert set(stored["models"]["learned-pretrain"]["results"]) == {"pretrain", "finetune"}
    for model in stored["models"].values():
        assert set(model) == MODEL_KEYS
    for name, block in stored["sets"].items():
        assert set(block) - {"kind", "description", "cells", "by_distance"} == BLOCK_KEYS, name
    assert set(stored["set_data"]["pretrain"]) == {"kind", "description", "spec", "seed", "draw", "size", "count",
                                                   "data_sha256"}
    for name, block in stored["set_data"].items():  # the split table's seed, the table's own draw
        assert block["seed"] == SPLITS[name].seed and block["draw"] == 0, name
    assert set(stored["grid"]) == {"n", "t", "mse", "accuracy", "count", "train_n_max", "by_distance"}
    assert sum(map(sum, stored["grid"]["count"])) == GRID_SIZE * len(grid_cells(6))
    assert [r["key"] for r in stored["reproduction"]][:3] == ["pretrain", "finetune-before", "finetune-after"]
    assert all(set(r) == ROW_KEYS for r in stored["reproduction"])
    for f in stored["findings"]:
        assert set(f) - FINDING_EXTRAS.get(f["key"], set()) == FINDING_KEYS, f["key"]
    phase = next(f for f in stored["findings"] if f["key"] == "phase-changes")
    assert phase["p"] == pytest.approx(1 - (1 - NULL_FALSE_POSITIVE_RATE) ** 2)  # one seed, two curves checked
    assert set(stored["subgroups"]["models"]) == {"learned", "learned-pretrain"}
    assert stored["overlap"]["stages"][0][0]["verified"] is False  # untrained stand-in checkpoints (step 1)
    assert {r["field"] for r in stored["departures"] if r["differs"]} >= {"data.n_max", "parameters"}
    assert (run / "report.md").read_text().count("| test: on-path small target |") == 1
    for figure in stored["figures"]:
        assert (run / figure).is_file()
    assert "figures/grid-nt-learned.html" in stored["figures"]
    assert "figures/confusion-learned-shift-tree.png" in stored["figures"]


def test_a_run_that_never_fine_tuned(tmp_path):
    run = make_run(tmp_path / "run", stages=("pretrain",))
    doc = evaluate_run(run, size=16, grid_size=1, cache_dir=tmp_path / "cache", progress=False,
                       compare_handcrafted=False, figures=False, sets=["study"])
    assert doc["models"]["learned-pretrain"]["results"]["pretrain"] == doc["models"]["learned"]["results"]["pretrain"]
    rows = {r["key"]: r for r in doc["reproduction"]}
    assert rows["finetune-after"]["mse"] is None and rows["finetune-after"]["source"].startswith("the run has no")
    assert rows["finetune-before"]["mse"] == doc["sets"]["finetune"]["mse"]


def test_handcrafted_model_is_exact(tmp_path):
    prepared = prepare(DATA, list(SET_NAMES), 32, 2, 0, tmp_path, progress=False)
    results, skipped = score_model(build_bfs_transformer(6), prepared, 6, progress=False)
    assert not skipped
    for name, block in results.items():
        assert block["mse"] < 1e-6 and block["accuracy"] == 1.0, name


# ---- command line -----------------------------------------------------------------------------

def run_cli(capsys, *argv):
    code = main([*map(str, argv), "--quiet"])
    err = capsys.readouterr().err.strip()
    return code, err


def test_cli_pools_runs_across_seeds(tmp_path, capsys):
    runs = [make_run(tmp_path / f"seed{i}", seed=i) for i in range(3)]
    code, err = run_cli(capsys, "--runs", *runs, "--out", tmp_path / "pooled", "--sets", "tests",
                        "--size", SIZE, "--cache", tmp_path / "cache", "--no-handcrafted", "--no-figures")
    assert code == 0, err
    doc = json.loads((tmp_path / "pooled" / "eval.json").read_text())
    block = doc["sets"]["test-any-large"]
    assert block["runs"] == 3 and block["ci_kind"] == "seeds+graphs" and len(block["per_run"]["mse"]) == 3
    assert block["mse"] == pytest.approx(np.mean(block["per_run"]["mse"]))
    assert 0 < block["mse_ci95"][0] < block["mse"] < block["mse_ci95"][1]
    findings = {f["key"]: f for f in doc["findings"]}
    assert findings["phase-changes"]["per_seed"] == [True, True, True] and findings["phase-changes"]["holds"] is True
    rows = {r["key"]: r for r in doc["reproduction"]}
    assert rows["test-any-large"]["per_run"] == block["per_run"]["mse"]
    assert rows["test-any-large"]["basis"] == f"pooled: 3 seeds x {SIZE} graphs"
    report = (tmp_path / "pooled" / "report.md").read_text()
    assert "## Per seed" in report and "| phase changes occur | holds | True | True | True |" in report
    assert [len(m["per_run"]) for m in doc["line_probe"]["models"].values()] == [3]


def test_without_a_pretrain_checkpoint_finetune_numbers_come_from_phases(tmp_path):
    run = make_run(tmp_path / "run")
    for path in (run / "checkpoints").glob("pretrain-final.*"):
        path.unlink()
    doc = evaluate_run(run, size=16, grid_size=1, cache_dir=tmp_path / "cache", progress=False,
                       compare_handcrafted=False, figures=False, sets=["study"])
    rows = {r["key"]: r for r in doc["reproduction"]}
    assert rows["finetune-before"]["mse"] == 0.6 and rows["finetune-after"]["mse"] == 0.02
    assert rows["finetune-after"]["source"].startswith("phases.json")
    assert rows["pretrain"]["source"].startswith("final (fine-tuned) model")
    cheap = next(f for f in doc["findings"] if f["key"] == "finetune-cheap")
    assert cheap["status"] == "not measured"  # the trainer's two numbers carry no per-example errors to test
    assert rows["finetune-before"]["status"] == "not measured"


@pytest.mark.parametrize("case", ["missing dir", "no checkpoint", "unknown set", "config mismatch",
                                  "runs disagree", "handcrafted without n", "n too small", "vocabulary",
                                  "bad size", "argparse error"])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case):
    cache = ["--cache", tmp_path / "cache", "--size", 16, "--grid-size", 1, "--no-figures", "--no-handcrafted"]
    if case == "missing dir":
        argv = [tmp_path / "nowhere"]
    elif case == "no checkpoint":
        (tmp_path / "empty").mkdir()
        argv = [tmp_path / "empty"]
    elif case == "unknown set":
        argv = [make_run(tmp_path / "run"), "--sets", "nonsense"]
    elif case == "config mismatch":
        argv = [make_run(tmp_path / "run", config_data={**DATA, "small_target": 3})]
    elif case == "runs disagree":
        other = {**DATA, "finetune_n_max": 5}
        argv = ["--runs", make_run(tmp_path / "a"), make_run(tmp_path / "b", data=other), "--out", tmp_path / "o"]
    elif case == "handcrafted without n":
        argv = ["--model", "handcrafted"]
    elif case == "n too small":
        argv = ["--model", "handcrafted", "--n", 2]
    elif case == "vocabulary":
        argv = ["--model", "handcrafted", "--n", 5, "--data-from", make_run(tmp_path / "run"), "--out", tmp_path / "o"]
    elif case == "argparse error":  # argparse's own complaint takes the same one-line path
        argv = [make_run(tmp_path / "run"), "--size", "many"]
    else:
        argv = [make_run(tmp_path / "run"), "--size", 0]
    code, err = run_cli(capsys, *cache, *argv)
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("python -m graphpath.evaluate: ") and "Traceback" not in err


def test_python_dash_m_entry_point(tmp_path):
    """`python -m graphpath.evaluate` end to end in a fresh process: output files, the timing line,
    and a bad input that exits 2 with one line on stderr."""
    import subprocess
    import sys

    run = make_run(tmp_path / "run")
    command = [sys.executable, "-m", "graphpath.evaluate", "--quiet", "--cache", str(tmp_path / "cache"),
               "--size", "16", "--grid-size", "1", "--no-handcrafted", "--threads", "1", "--no-figures"]
    done = subprocess.run([*command, str(run)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("evaluated 14 set(s) x 2 model(s) in ")
    assert (run / "eval.json").is_file() and (run / "report.md").is_file()
    bad = subprocess.run([*command, str(run), "--sets", "grid", "nope"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


# ---- raw-output histograms, the line-graph probe, the pre-training checkpoint ----------------

def test_raw_histogram_is_normalised_per_label_and_matches_numpy():
    from graphpath.evaluation.raw_outputs import histogram_bins, raw_histogram

    rng = np.random.default_rng(0)
    label = rng.integers(1, 7, size=500)
    label[label == 4] = 5  # a label with no graphs: a row of zeros
    prediction = label + rng.normal(0, 1.5, size=500)
    hist = raw_histogram(prediction, label, 6)
    fraction = np.array(hist["fraction"])
    assert fraction.shape == (6, len(histogram_bins(6)) - 1)
    assert hist["count"] == [int((label == k).sum()) for k in range(1, 7)]
    for k, row in zip(range(1, 7), fraction):
        expected = 0.0 if k == 4 else 1.0
        assert row.sum() == pytest.approx(expected, abs=1e-5)
        if k != 4:  # numpy's own histogram of this label's outputs, clipped into the outer bins
            edges = np.array(hist["bins"]["edges"])
            clipped = np.clip(prediction[label == k], edges[0] + 1e-9, edges[-1] - 1e-9)
            counts, _ = np.histogram(clipped, bins=edges)
            assert row == pytest.approx(counts / counts.sum(), abs=1e-6)


def test_a_model_that_outputs_the_labels_puts_all_mass_on_the_diagonal(prepared):
    from graphpath.evaluation.markdown import diagonal_share

    results, _ = score_model(Oracle(), prepared, 6, progress=False)
    for name, block in results.items():
        hist = block["raw_histogram"]
        centres = hist["bins"]["centres"]
        for label, count, row in zip(hist["labels"], hist["count"], hist["fraction"]):
            if count:
                assert row[centres.index(float(label))] == 1.0, (name, label)
        assert diagonal_share(hist) == pytest.approx(1.0)
    off, _ = score_model(Constant(2.5), prepared, 6, progress=False)  # between two bins' centres of integers
    assert diagonal_share(off["finetune"]["raw_histogram"]) == 0.0


def test_pooled_histograms_are_the_mean_of_the_runs():
    from graphpath.evaluation.raw_outputs import raw_histogram

    label = np.array([1, 1, 2, 2])
    runs = [raw_histogram(np.array(p, dtype=float), label, 3) for p in ([1, 1, 2, 2], [1, 2, 2, 3])]
    base = {"count": 4, "mean_label": 1.5, "label_variance": 0.25, "per_label": {}, "confusion":
            {"labels": [1, 2, 3], "counts": [[0] * 3] * 3}, "runs": 1, "ci_kind": "graphs"}
    pooled = pool_runs([{**base, "mse": 0.0, "accuracy": 1.0, "raw_histogram": runs[0]},
                        {**base, "mse": 0.5, "accuracy": 0.5, "raw_histogram": runs[1]}])
    fraction = np.array(pooled["raw_histogram"]["fraction"])
    centres = pooled["raw_histogram"]["bins"]["centres"]
    assert fraction[0][centres.index(1.0)] == 0.75 and fraction[0][centres.index(2.0)] == 0.25
    assert fraction[1][centres.index(2.0)] == 0.75 and fraction[1][centres.index(3.0)] == 0.25


@pytest.mark.parametrize("max_vertices", [4, 8, 15])
def test_path_graph_labels_are_networkx_lengths(max_vertices):
    from graphpath.evaluation.raw_outputs import path_graphs

    batch = path_graphs(max_vertices)
    assert batch.label.tolist() == list(range(1, max_vertices))
    for edges, n, t, label in zip(batch.edges.tolist(), batch.num_vertices.tolist(), batch.target.tolist(),
                                  batch.label.tolist()):
        real = [e for e in edges if e[0] > 0]
        assert all(a < b for a, b in real)
        graph = nx.Graph(real)
        assert sorted(graph.nodes) == list(range(1, n + 1)) and nx.is_isomorphic(graph, nx.path_graph(n))
        assert graph.degree[1] == 1 and graph.degree[2] == 1  # vertex 1 and 2 are the two ends
        assert label == label_of(n, real, t, max_vertices) == n - 1


def test_handcrafted_model_answers_every_path_length_exactly():
    from graphpath.evaluation.raw_outputs import line_probe
    from handcrafted import build_bfs_transformer

    for n in (6, 15):
        probe = line_probe({"handcrafted": [build_bfs_transformer(n)]}, n)
        entry = probe["models"]["handcrafted"]
        assert probe["lengths"] == list(range(1, n))
        assert np.abs(np.array(entry["answers"]) - np.array(probe["lengths"])).max() < 1e-4
        assert entry["rounded_exact"] == n - 1


def test_evaluate_probes_the_final_pretrain_and_handcrafted_models(tmp_path):
    from graphpath.evaluation.raw_outputs import path_graphs

    run = make_run(tmp_path / "run")
    doc = evaluate_run(run, size=16, grid_size=1, cache_dir=tmp_path / "cache", progress=False,
                       figures=False, sets=["pretrain"])
    probe = doc["line_probe"]
    assert set(probe["models"]) == {"learned", "learned-pretrain", "handcrafted"}
    batch = path_graphs(DATA["n_max"])
    for label, stage in (("learned", "finetune"), ("learned-pretrain", "pretrain")):
        model = load_model(run / "checkpoints" / f"{stage}-final.json")[0]
        assert probe["models"][label]["answers"] == pytest.approx(predict(model, batch).tolist())
    assert probe["models"]["learned"]["answers"] != pytest.approx(probe["models"]["learned-pretrain"]["answers"])
    assert "## Line-graph probe" in (run / "report.md").read_text()


@pytest.mark.parametrize("names", [("pretrain-final", "finetune-final"), ("pretrain-5", "pretrain-10", "finetune-final")])
def test_the_pretrain_row_scores_the_last_pretrain_checkpoint(tmp_path, names):
    (tmp_path / "run").mkdir()
    run = make_run(tmp_path / "run", stages=())
    torch.manual_seed(0)
    config = ModelConfig(max_vertices=DATA["n_max"], d_model=8, n_layers=1, n_heads=2)
    for name in names:
        stage, step = name.split("-")
        info = dict(model_config=config.to_dict(), data=DATA, step=1 if step == "final" else int(step), seed=0,
                    stage=stage)
        save_checkpoint(run / "checkpoints", name, GraphTransformer(config), info)
    doc = evaluate_run(run, size=64, grid_size=1, cache_dir=tmp_path / "cache", progress=False,
                       compare_handcrafted=False, figures=False, sets=["pretrain"])
    last = run / "checkpoints" / f"{names[-2]}.json"
    assert doc["models"]["learned-pretrain"]["sources"] == [str(last)]
    batch = load_set(define_sets(DATA)["pretrain"], 64, 0, tmp_path / "cache")[0]
    expected = float(np.mean((predict(load_model(last)[0], batch) - batch.label.numpy()) ** 2))
    row = next(r for r in doc["reproduction"] if r["key"] == "pretrain")
    assert row["mse"] == pytest.approx(expected) and row["source"] == "learned-pretrain model on set pretrain"
    assert row["mse"] != pytest.approx(doc["models"]["learned"]["results"]["pretrain"]["mse"])
    assert "pre-training checkpoint (before fine-tuning) on the pre-train set" in (run / "report.md").read_text()


def test_run_data_read_through_config_and_other_tasks_refused(tmp_path):
    """config.toml's [data] may name the default tasks or leave them out; a run trained on another
    task of the suite is refused in one line (the study's sets score distances only)."""
    from graphpath.evaluation.suite import read_run

    run = make_run(tmp_path / "run")
    tasks = 'pretrain_task = "distance-12"\nfinetune_task = "distance-onpath"\n'
    (run / "config.toml").write_text(
        "[data]\n" + "".join(f"{k} = {v}\n" for k, v in DATA.items()) + tasks)
    assert read_run(run, "cpu")["data"] == DATA
    (run / "config.toml").write_text(
        "[data]\n" + "".join(f"{k} = {v}\n" for k, v in DATA.items()) + 'pretrain_task = "degree"\n')
    with pytest.raises(EvalError, match="trained on .*degree.*experiments.transfer"):
        read_run(run, "cpu")
    assert main([str(run), "--quiet"]) == 2
    assert not (run / "eval.json").exists()


def test_handcrafted_beside_a_run_is_skipped_only_where_it_cannot_exist(capsys):
    from graphpath.evaluation.suite import score_handcrafted
    from handcrafted.bfs_transformer import MAX_SUPPORTED_VERTICES

    too_big = MAX_SUPPORTED_VERTICES + 1
    assert score_handcrafted(too_big, {}, "cpu", False, beside=True) is None
    assert f"n_max is {too_big}" in capsys.readouterr().err
    with pytest.raises(EvalError, match="cannot build the hand-built model"):
        score_handcrafted(too_big, {}, "cpu", False, beside=False)
