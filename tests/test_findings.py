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


def phases(changes_per_seed, settle=None):
    """phases.json documents: detected changes per seed and, if given, the settle steps per seed."""
    curves = [{"stage": "pretrain", "label": label, "points": 30, "reference": 5.0} for label in ("all", "1", "2", "8")]
    out = [{"phase_changes": [{"stage": "pretrain", "label": label, "step": step} for label, step in changes],
            "curves_checked": curves, "finetune": None} for changes in changes_per_seed]
    for doc, steps in zip(out, settle or []):
        doc["settle"] = {"threshold": 0.1, "stage": "pretrain", "steps": steps, "not_judged": {"3": 0.14, "4": 0.39}}
    return out


def doc_for(prepared, predictions: dict, data=DATA, phase_runs=None, seen=None) -> dict:
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
    breakdown.attach(doc, predictions, subset, data, phase_runs or [None], seen)
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
    phase_runs = phases([[("1", 40), ("2", 90)]] * 3, settle=[{"1": 40, "2": 90, "3": 150}] * 3)
    doc = doc_for(prepared, {"learned": accurate, "learned-pretrain": before}, phase_runs=phase_runs)
    found = {f["key"]: f for f in doc["findings"]}
    assert found["onpath-small-generalizes"]["status"] == "holds"
    assert found["offpath-fails"]["status"] == "does not hold"  # MSE 0.0025, far under 1
    assert found["finetune-cheap"]["status"] == "holds"  # 1.0 / 0.0025
    assert found["pretrain-low-loss"]["status"] == "does not hold"  # the pre-training checkpoint: MSE 1
    assert found["phase-changes"]["status"] == "holds"
    chance = 1 - (1 - NULL_FALSE_POSITIVE_RATE) ** 4
    assert found["phase-changes"]["p"] == pytest.approx(chance ** 3)
    assert found["phase-order"]["p"] == pytest.approx((1 / 6) ** 3)  # every seed in order, chance 1/6 each
    assert found["phase-order"]["per_seed"] == ["40, 90, 150"] * 3
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


def test_the_order_finding_counts_seeds_by_settle_steps_not_detected_changes():
    """No detected change at all (distances 3 and 4 cannot have one), yet the settle steps give an
    order per seed: two in the study's order, one tied, one never settled."""
    from scipy import stats

    from graphpath.evaluation.findings import _phases

    settle = [{"1": 88, "2": 270, "3": 569}, {"1": 88, "2": 250, "3": 750}, {"1": 186, "2": 186, "3": 750},
              {"1": 20, "2": 40, "3": None}]
    occur, order = _phases(phases([[]] * 4, settle=settle))
    assert order["per_seed"] == ["88, 270, 569", "88, 250, 750", "186, 186, 750", "20, 40, never"]
    assert [s["order"] for s in order["settle"]] == ["shortest first", "shortest first", "other order", "never settled"]
    assert order["p"] == pytest.approx(stats.binomtest(2, 4, 1 / 6, alternative="greater").pvalue)
    assert order["finding"] == "shorter distances are learned first" and order["threshold"] == 0.1
    assert "not distances 3, 4" in occur["evidence"] and "excluded by construction" in occur["rationale"]


def test_the_order_finding_without_settle_steps_is_not_measured():
    from graphpath.evaluation.findings import _phases

    _, order = _phases(phases([[("1", 40), ("2", 90)]] * 3))
    assert order["status"] == "not measured" and order["p"] is None


def test_the_binomial_note_counts_the_curves_the_detector_checked():
    from graphpath.evaluation.findings import binomial_note

    runs = phases([[]] * 3)  # 4 curves each
    floor = (1 - (1 - NULL_FALSE_POSITIVE_RATE) ** 4) ** 3
    note = binomial_note(runs)
    assert f"{floor:.2g}" in note and "checked 4, 4, 4 curve(s)" in note and f"{(1 / 6) ** 3:.2g}" in note
    ten = (1 - (1 - NULL_FALSE_POSITIVE_RATE) ** 10) ** 3
    assert f"{ten:.2g}" not in note


def test_large_targets_are_compared_with_small_targets_at_the_same_sizes(prepared):
    """The reference group is 2 < t <= finetune_n_max in graphs beyond the fine-tuning sizes: a model
    wrong only on small graphs (n <= finetune_n_max) leaves the reference untouched."""
    ft = DATA["finetune_n_max"]
    wrong_small = lambda b: np.where(b.num_vertices.numpy() <= ft, 3.0, 0.0)  # noqa: E731
    values = {name: noisy(prepared, name, 0.05, bias=wrong_small) for name in SETS}
    doc = doc_for(prepared, {"learned": values})
    found = {f["key"]: f for f in doc["findings"]}["onpath-large-partly"]
    batch = prepared["test-onpath-large"][1]
    t, n = batch.target.numpy(), batch.num_vertices.numpy()
    assert found["counts"] == {"subgroup": int((t > ft).sum()), "reference": int(((t > 2) & (t <= ft) & (n > ft)).sum())}
    assert found["reference"]["mse"] < 0.01  # no graph of the fine-tuning sizes in it
    assert f"on {found['counts']['reference']:,} graphs (2 < t <= {ft}, n > {ft})" in found["evidence"]
    assert "RMS error under one hop" in found["rationale"]


def test_each_finding_reports_the_share_of_its_subgroup_seen_in_training(prepared):
    values = {name: noisy(prepared, name, 0.1) for name in SETS}
    seen = {name: np.where(np.arange(len(prepared[name][1])) % 4 == 0, "seen-in-training", "unseen").astype(object)
            for name in SETS}
    doc = doc_for(prepared, {"learned": values}, seen=seen)
    found = {f["key"]: f for f in doc["findings"]}
    small = found["onpath-small-generalizes"]
    groups = example_groups(prepared["test-onpath-small"][1], DATA)
    mask = groups["target-size"] == "other-target/beyond-finetune"
    assert small["seen"]["graphs"] == int(mask.sum())
    assert small["seen"]["every-seed"] == pytest.approx((seen["test-onpath-small"][mask] == "seen-in-training").mean())
    text = report.render_markdown(doc)
    assert "seen in training" in text and "the target token and n are ignored" in text
    assert "union of the run's pre-training and fine-tuning streams" in text


def test_the_thresholds_are_said_to_be_written_after_seeds_0_to_2(prepared):
    from graphpath.evaluation.findings import threshold_provenance

    assert threshold_provenance([0, 1, 2])["fresh_seeds"] == []
    assert threshold_provenance([0, 1, 2, 3, 4])["fresh_seeds"] == [3, 4]
    doc = doc_for(prepared, {"learned": {name: noisy(prepared, name, 0.1) for name in SETS}})
    text = report.render_markdown(doc)
    assert "fixed" not in text.split("## Per seed")[0].lower()
    assert "after an earlier run on seeds 0-2 was seen; seeds 3+ are fresh" in text
    assert "This run has no fresh seed" in text


def test_fine_tuning_states_its_normalised_start_and_its_caveats(prepared):
    accurate = {name: noisy(prepared, name, 0.05, seed=i) for i, name in enumerate(SETS)}
    before = {name: noisy(prepared, name, 2.0, seed=10 + i) for i, name in enumerate(("pretrain", "finetune"))}
    seen = {name: np.full(len(prepared[name][1]), "seen-in-training", dtype=object) for name in SETS}
    doc = doc_for(prepared, {"learned": accurate, "learned-pretrain": before}, seen=seen)
    cheap = {f["key"]: f for f in doc["findings"]}["finetune-cheap"]
    label = prepared["finetune"][1].label.numpy()
    expected = ((before["finetune"] - label) ** 2).mean() / label.var()
    assert cheap["caveats"]["normalized_before"] == pytest.approx(expected)
    assert cheap["caveats"]["study_normalized_before"] == pytest.approx(0.5531 / 0.8086)
    assert "worse than a constant predictor" in cheap["evidence"] and "100.0% of the fine-tune set" in cheap["evidence"]
    assert "no model was fine-tuned from scratch" in cheap["evidence"]


def test_off_path_rows_judged_elsewhere_carry_no_verdict(prepared):
    doc = doc_for(prepared, {"learned": {name: noisy(prepared, name, 0.1) for name in SETS}})
    rows = {r["key"]: r for r in doc["reproduction"]}
    assert rows["test-any-small"]["status"] is not None
    for key in ("test-any-large", "test-any-large-smalltarget"):
        assert rows[key]["status"] is None and "judged on test-any-small only" in rows[key]["finding"]
    text = report.render_markdown(doc)
    assert "off-path targets fail: holds |" not in [line for line in text.splitlines() if "any target, large" in line][0]


def test_the_line_probe_counts_each_seed_alone():
    from graphpath.evaluation.markdown import probe_counts

    probe = {"lengths": [1, 2, 3], "label": [1, 2, 3],
             "models": {"learned": {"answers": [1.0, 2.0, 3.4], "per_run": [[1.0, 2.0, 3.0], [1.0, 2.6, 3.8]],
                                    "rounded_exact": 3}}}
    assert probe_counts(probe, "learned") == "3, 1 of 3"  # the mean of seeds would say 3 of 3
