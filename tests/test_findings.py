"""Subgroups (kinds against networkx, sums back to the set), the findings' tests and verdicts, and
report.md built from them, on small real sets with stand-in predictions."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from graphpath.evaluation import breakdown, report
from graphpath.evaluation.findings import FAIL_MSE, GOOD_MSE, Evidence, findings
from graphpath.evaluation.predict import pool_runs, score_set
from graphpath.evaluation.statistics import adjust
from graphpath.evaluation.subgroups import example_groups, subgroup_table
from graphpath.evaluation.suite import prepare
from graphpath.training.phases import NULL_FALSE_POSITIVE_RATE

DATA = dict(n_max=7, finetune_n_max=4, small_target=4, pretrain_threshold=3, finetune_threshold=2)
SETS = ["pretrain", "finetune", "test-onpath-small", "test-onpath-large", "test-any-small",
        "test-any-large-smalltarget", "test-any-large"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare(DATA, SETS, 600, 1, 0, tmp_path_factory.mktemp("cache"), progress=False)


def noisy(prepared, name, sd, seeds=3, seed=0, bias=None):
    """(S, B) predictions: the label plus Gaussian noise of `sd` (per seed), plus bias(batch) if given."""
    batch = prepared[name][1]
    rng = np.random.default_rng(seed)
    label = batch.label.numpy().astype(float)
    extra = 0.0 if bias is None else bias(batch)
    return label[None, :] + extra + rng.normal(0, sd, (seeds, len(batch)))


def phases(changes_per_seed):
    curves = [{"stage": "pretrain", "label": label, "points": 30, "reference": 5.0} for label in ("all", "1", "2", "8")]
    return [{"phase_changes": [{"stage": "pretrain", "label": label, "step": step} for label, step in changes],
             "curves_checked": curves, "finetune": None} for changes in changes_per_seed]


def doc_for(prepared, predictions: dict, data=DATA, phase_runs=None) -> dict:
    """An eval.json document built as the suite builds it, from stand-in predictions."""
    models = {}
    for model, sets in predictions.items():
        results = {}
        for name, values in sets.items():
            evalset, batch, _ = prepared[name]
            results[name] = pool_runs([score_set(evalset, batch, row) for row in values])
        seeds = next(iter(sets.values())).shape[0]
        models[model] = {"results": results, "info": [{"seed": s} for s in range(seeds)], "runs": seeds,
                         "kind": "learned", "description": model, "vocabulary": data["n_max"], "skipped": {}}
    doc = {"title": "t", "primary": "learned", "models": models, "set_data": {n: {} for n in predictions["learned"]},
           "eval": {}, "data": data, "sets": {n: dict(b) for n, b in models["learned"]["results"].items()}}
    doc["reproduction"] = report.study_rows(doc)
    subset = {name: prepared[name] for name in SETS}
    breakdown.attach(doc, predictions, subset, data, phase_runs or [None], None)
    report.attach_findings(doc)
    return doc


def test_target_kinds_agree_with_networkx(prepared):
    batch = prepared["test-any-large"][1]
    kinds = example_groups(batch, DATA)["kind"]
    arrays = batch.numpy()
    for i in range(len(batch)):
        n, t = int(arrays["num_vertices"][i]), int(arrays["target"][i])
        graph = nx.MultiGraph()
        graph.add_nodes_from(range(1, n + 1))
        graph.add_edges_from((int(a), int(b)) for a, b in arrays["edges"][i] if a > 0)
        if t > n:
            expected = "not-in-graph"
        elif not nx.has_path(graph, 1, t):
            expected = "unreachable"
        elif nx.has_path(graph, 1, 2) and any(t in p for p in nx.all_shortest_paths(graph, 1, 2)):
            expected = "on-path"
        else:
            expected = "off-path"
        assert kinds[i] == expected, (i, n, t)


def test_every_dimension_sums_back_to_the_set(prepared):
    name = "test-any-large"
    batch = prepared[name][1]
    values = noisy(prepared, name, 1.0, bias=lambda b: (b.target.numpy() > 3) * 2.0)
    groups = example_groups(batch, DATA, seen=None)
    groups["seen"] = np.where(np.arange(len(batch)) % 3 == 0, "unseen", "seen-in-training").astype(object)
    table = subgroup_table(values, batch, groups)
    label = batch.label.numpy()
    pooled_mse = ((values - label) ** 2).mean()
    pooled_acc = (np.floor(values + 0.5) == label).mean()
    per_seed = ((values - label) ** 2).mean(axis=1)
    assert set(table) == {"target", "size", "target-size", "kind", "distance", "seen"}
    for dimension, rows in table.items():
        counts = np.array([r["count"] for r in rows.values()])
        assert counts.sum() == len(batch), dimension
        assert sum(r["count"] * r["mse"]["value"] for r in rows.values()) / len(batch) == pytest.approx(pooled_mse)
        assert sum(r["count"] * r["accuracy"]["value"] for r in rows.values()) / len(batch) == pytest.approx(pooled_acc)
        seed_sums = sum(r["count"] * np.array(r["per_seed"]["mse"]) for r in rows.values()) / len(batch)
        assert np.allclose(seed_sums, per_seed), dimension
    assert table["target-size"]["other-target/beyond-finetune"]["count"] == int(
        ((batch.target.numpy() != 2) & (batch.num_vertices.numpy() > 4)).sum())


def test_findings_on_an_accurate_model(prepared):
    accurate = {name: noisy(prepared, name, 0.05, seed=i) for i, name in enumerate(SETS)}
    before = {name: noisy(prepared, name, 1.0, seed=10 + i) for i, name in enumerate(("pretrain", "finetune"))}
    phase_runs = phases([[("1", 40), ("2", 90)]] * 3)
    doc = doc_for(prepared, {"learned": accurate, "learned-pretrain": before}, phase_runs=phase_runs)
    found = {f["key"]: f for f in doc["findings"]}
    assert found["onpath-small-generalizes"]["status"] == "holds"
    assert found["offpath-fails"]["status"] == "does not hold"  # MSE 0.0025, far under 1
    assert found["finetune-cheap"]["status"] == "holds"  # 1.0 / 0.0025
    assert found["pretrain-low-loss"]["status"] == "does not hold"  # the pre-training checkpoint: MSE 1
    assert found["phase-changes"]["status"] == "holds"
    chance = 1 - (1 - NULL_FALSE_POSITIVE_RATE) ** 4
    assert found["phase-changes"]["p"] == pytest.approx(chance ** 3)
    assert found["phase-order"]["p"] == pytest.approx(0.5 ** 3)  # two distances in order, 3 seeds: not significant
    assert found["phase-order"]["status"] == "inconclusive"
    assert [f["p_adjusted"] for f in doc["findings"]] == adjust([f["p"] for f in doc["findings"]])
    small = found["onpath-small-generalizes"]
    assert small["estimate"]["seeds"] == 3 and small["estimate"]["ci_kind"] == "seeds+graphs"
    assert small["estimate"]["graphs"] == int(doc["subgroups"]["models"]["learned"]["test-onpath-small"][
        "target-size"]["other-target/beyond-finetune"]["count"])


def test_findings_are_judged_on_their_subgroup_not_the_mixed_set(prepared):
    """A model right on t = 2 and off by 1.5 hops elsewhere: the mixed on-path set's MSE can pass the
    'good' bar while the subgroup the finding is about fails it."""
    off = lambda b: np.where(b.target.numpy() == 2, 0.0, 1.5)  # noqa: E731
    values = {name: noisy(prepared, name, 0.05, bias=off) for name in SETS}
    doc = doc_for(prepared, {"learned": values})
    found = {f["key"]: f for f in doc["findings"]}
    assert found["onpath-small-generalizes"]["status"] == "does not hold"
    assert found["onpath-small-generalizes"]["estimate"]["value"] > GOOD_MSE
    assert found["offpath-fails"]["status"] == "holds" and found["offpath-fails"]["estimate"]["value"] > FAIL_MSE
    assert found["finetune-cheap"]["status"] == "not measured"  # no pre-training checkpoint scored


def test_without_sizes_beyond_fine_tuning_the_size_findings_do_not_apply(prepared):
    data = {**DATA, "finetune_n_max": DATA["n_max"]}
    values = {name: noisy(prepared, name, 0.1) for name in SETS}
    batches = {name: prepared[name][1] for name in SETS}
    groups = {name: example_groups(batches[name], data) for name in SETS}
    found = {f["key"]: f for f in findings(Evidence({"learned": values}, batches, groups, data), [None])}
    assert found["onpath-large-partly"]["status"] == "not applicable"
    assert found["onpath-large-partly"]["holds"] is None
    assert found["onpath-small-generalizes"]["status"] == "not applicable"


def test_one_seed_has_graph_only_intervals_and_the_report_says_so(prepared):
    values = {name: noisy(prepared, name, 0.1, seeds=1) for name in SETS}
    doc = doc_for(prepared, {"learned": values})
    assert doc["sets"]["test-onpath-small"]["ci_kind"] == "graphs"
    text = report.render_markdown(doc)
    assert "test graphs only (one seed" in text and "## Per seed" not in text
    assert "1 seed, " in text


def test_report_leads_with_the_findings_and_labels_the_study_table(prepared):
    values = {name: noisy(prepared, name, 0.1) for name in SETS}
    doc = doc_for(prepared, {"learned": values})
    text = report.render_markdown(doc)
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[:3] == ["## The study's findings, each on the subgroup it is about", "## Per seed",
                            "## Every set by subgroup"]
    assert headings.index("## The study's numbers on its own (mixed) sets") > headings.index("## Every set by subgroup")
    assert "3 seeds x " in text and "| target | pretrain-target |" in text
    row = next(r for r in doc["reproduction"] if r["key"] == "test-any-large")
    assert row["normalized_mse"] == pytest.approx(row["mse"] / prepared["test-any-large"][1].label.numpy().var())
    assert row["study_normalized_mse"] == pytest.approx(72.87 / 36.82)
    assert row["basis"].startswith("pooled: 3 seeds")
