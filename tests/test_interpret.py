"""`graphpath.analysis.interpret` and `graphpath.analysis.probe_fits`: labels against networkx, probes that can fail,
the hand-built reference measured, bad input exits 2."""
from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest
import torch
from scipy import stats

from data_gen import sample, study_presets
from data_gen.spec import study_sizes_up_to
from graphpath.analysis import interpret as I
from graphpath.analysis import offpath as O
from graphpath.analysis import patching as H
from graphpath.analysis import probe_controls as C
from graphpath.analysis import probe_fits as P


def batch_for(n: int, size: int, seed: int):
    return sample(study_presets(**study_sizes_up_to(n))["test-any-large"], size, seed).trim()


def graph_of(batch, b: int, n: int):
    """(networkx graph of row b, its real edges, BFS distances from vertex 1)."""
    graph = nx.Graph()
    graph.add_nodes_from(range(1, n + 1))
    real = [tuple(e) for e in batch.edges[b].tolist() if e[0] > 0]
    graph.add_edges_from((u, v) for u, v in real if u != v)
    return graph, real, nx.single_source_shortest_path_length(graph, 1)


def test_hop_and_endpoint_labels_match_networkx():
    batch = batch_for(6, 40, 3)
    labels = P.hop_labels(batch, 6)
    ends, mask = P.endpoint_labels(batch)
    row = 0
    for b in range(len(batch)):
        _, real, dist = graph_of(batch, b, 6)
        for v in range(1, 7):
            for k in range(6):
                assert bool(labels[b, v - 1, k]) == (v in dist and dist[v] <= k)
        for u, v in real:
            assert ends[row].nonzero().flatten().add(1).tolist() == sorted({u, v})
            row += 1
    assert row == int(mask.sum())


def test_on_path_targets_match_networkx():
    batch = sample(study_presets(**study_sizes_up_to(7))["test-any-large"], 200, 5)
    on = P.on_path_targets(batch)
    for b in range(len(batch)):
        graph = nx.Graph()
        graph.add_nodes_from(range(1, 8))
        graph.add_edges_from((u, v) for u, v in batch.edges[b].tolist() if u > 0 and u != v)
        t = int(batch.target[b])
        truth = nx.has_path(graph, 1, 2) and any(t in p for p in nx.all_shortest_paths(graph, 1, 2))
        assert bool(on[b]) == truth, b
    assert 0 < int(on.sum()) < len(batch)  # both kinds occur, so the check means something


def _seeds(count, on=0.1, off=5.0, reach_on=0.95, reach_off=0.94, r2=0.2, spread=0.01, seed=0):
    """Simulated per-seed off-path numbers: squared errors on 200 shared graphs, probe scores."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        rows.append({"sq_on": list(rng.exponential(on, 200)), "sq_reachable": list(rng.exponential(off, 200)),
                     "reach_on": reach_on + rng.normal(0, spread), "reach_reachable": reach_off + rng.normal(0, spread),
                     "distance_r2_off": r2 + rng.normal(0, spread), "transfer_r2": 0.0})
    return rows


SAME_CELLS = [(8, 1 + i % 3) for i in range(200)]  # both samples in the same (n, d) mix: weights all 1


def test_matched_weights_standardise_the_on_path_sample_to_the_off_path_mix():
    on = [(5, 1)] * 30 + [(5, 3)] * 10 + [(6, 2)] * 5  # (6, 2): no off-path graph there
    off = [(5, 1)] * 10 + [(5, 3)] * 30 + [(7, 4)] * 4  # (7, 4): no on-path graph there
    w_on, w_off = O.matched_weights(on, off)
    assert np.mean(w_on) == pytest.approx(1.0) and np.mean(w_off) == pytest.approx(1.0)
    assert (w_on[40:] == 0).all() and (w_off[40:] == 0).all()
    value_on = np.array([1.0] * 30 + [9.0] * 10 + [100.0] * 5)  # a per-graph value that depends on the cell only
    assert np.mean(w_on * value_on) == pytest.approx((10 * 1.0 + 30 * 9.0) / 40)  # the off-path mix
    with pytest.raises(ValueError, match="share no"):
        O.matched_weights([(5, 1)], [(6, 1)])


def test_matching_removes_a_failure_that_is_only_the_distance_mix():
    """On-path targets mostly at distance 1 (easy), reachable off-path ones mostly at distance 3 (hard),
    the same error within every cell: pooled, off / on is far above FAIL_RATIO; matched it is 1."""
    rng = np.random.default_rng(0)
    on_cells = [(8, 1)] * 180 + [(8, 3)] * 20
    off_cells = [(8, 1)] * 20 + [(8, 3)] * 180
    scale = {1: 0.05, 3: 2.0}
    rows = [{"sq_on": [rng.exponential(scale[d]) for _, d in on_cells],
             "sq_reachable": [rng.exponential(scale[d]) for _, d in off_cells],
             "reach_on": 0.9 + rng.normal(0, 0.01), "reach_reachable": 0.9 + rng.normal(0, 0.01),
             "distance_r2_off": 0.3, "transfer_r2": 0.0} for _ in range(5)]
    result = O.verdict(rows, on_cells, off_cells)
    assert result["mse_ratio_unmatched"]["value"] > 3 * O.FAIL_RATIO  # pooling alone would say "fails"
    assert result["mse_ratio"]["value"] == pytest.approx(1.0, rel=0.3) and not result["holds"]["fails"]
    assert result["verdict"] == "no-failure"


def test_off_path_kinds_are_disjoint_and_exhaustive():
    from data_gen import GraphBatch

    graphs = [[(1, 3), (3, 2)], [(1, 3), (3, 2), (2, 4)], [(1, 3), (3, 2)], [(1, 2), (4, 5)], [(1, 2)]]
    batch = GraphBatch.from_edges(graphs, max_vertices=6, target=[3, 4, 2, 4, 6], num_vertices=[4, 4, 4, 5, 3])
    k = O.kinds(batch)
    assert k["on"].tolist() == [True, False, False, False, False]  # t = 2 is left out of "on"
    assert k["reachable"].tolist() == [False, True, False, False, False]
    assert k["unreachable"].tolist() == [False, False, False, True, False]
    assert k["absent"].tolist() == [False, False, False, False, True]
    assert O.cells(batch)[:2] == [(4, 1), (4, 3)]


@pytest.mark.parametrize("kwargs,verdict", [
    (dict(off=0.11), "no-failure"),
    (dict(r2=0.95), "readout"),
    (dict(), "reach-not-distance"),
    (dict(reach_off=0.7), "reach-missing"),
    (dict(reach_off=0.9, spread=0.2), "undetermined"),
])
def test_offpath_verdict_rests_on_corrected_tests(kwargs, verdict):
    result = O.verdict(_seeds(5, **kwargs), SAME_CELLS, SAME_CELLS)
    assert result["verdict"] == verdict, result["p_adjusted"]
    assert result["mse_ratio"]["ci_kind"] == "seeds+graphs" and set(result["holds"]) == {"fails", "readout",
                                                                                        "reach_kept", "reach_lost"}


def test_offpath_mse_intervals_are_on_the_log_scale_and_stay_positive():
    """A t-interval on a small positive MSE can reach below 0; the log-scale one cannot."""
    result = O.verdict(_seeds(5, spread=0.2), SAME_CELLS, SAME_CELLS)
    for cell in [result["mse_on"], result["mse_off"]] + [a["mse"] for a in result["apart"].values()]:
        assert cell["scale"] == "log" and cell["ci95"] is not None and 0 < cell["ci95"][0] <= cell["mean"] <= cell["ci95"][1]


def test_weighted_auroc_reads_only_the_weighted_graphs():
    """The off-path reach AUROCs are scored with the matched weights: weight 0 leaves a graph out of the score."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(800, 4, generator=g)
    y = (x[:, 0] > 0).float()
    y[400:] = (torch.rand(400, generator=g) < 0.5).float()  # the second half's label is noise
    first = (np.arange(800) < 400).astype(float)
    readable = P.binary_probe(x, y[:, None], 0, first)["auroc"][0]
    noise = P.binary_probe(x, y[:, None], 0, 1 - first)["auroc"][0]
    assert readable > 0.9 and abs(noise - 0.5) < 0.1


def test_one_seed_cannot_explain_the_failure():
    result = O.verdict(_seeds(1, r2=0.95), SAME_CELLS, SAME_CELLS)
    assert result["holds"]["fails"] and result["verdict"] == "undetermined" and result["p_values"]["readout"] is None


def test_ridge_equals_scikit_learns_ridgecv():
    from sklearn.linear_model import RidgeCV

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 10))
    x[:, 3] = 0.99 * x[:, 2]
    y = np.stack([x @ rng.normal(size=10) + 3 * rng.normal(size=300), rng.normal(size=300)], axis=1)
    ours, theirs = P.Ridge(x, y), RidgeCV(alphas=P.ALPHAS, alpha_per_target=True).fit(x, y)
    assert ours.alpha.tolist() == list(theirs.alpha_)
    assert np.allclose(ours.predict(x), theirs.predict(x), atol=1e-9)


def test_probe_reads_a_linear_rule_and_not_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(800, 6, generator=g)
    rule = (x[:, 0] - x[:, 1] > 0).float()
    noise = (torch.rand(800, generator=g) < 0.4).float()
    rare = torch.zeros(800)
    rare[:10] = 1  # 1.25%: near-trivial, not probed
    out = P.binary_probe(x, torch.stack([rule, noise, rare], 1))
    assert out["auroc"][0] > 0.97 and abs(out["auroc"][1] - 0.5) < 0.08 and np.isnan(out["auroc"][2])
    assert out["balanced_accuracy"][0] > 0.9


def test_permutation_baseline_keeps_what_the_type_predicts_and_loses_the_rest():
    g = torch.Generator().manual_seed(1)
    types = torch.randint(0, 4, (2000,), generator=g)
    by_type = (types >= 2).float()  # a function of the type alone: its permutation is itself
    graph = (torch.rand(2000, generator=g) < 0.5).float()  # what "the graph" adds
    permuted = C.permuted_labels(types, torch.stack([by_type, graph], 1), seed=3)
    assert torch.equal(permuted[:, 0], by_type)
    for t in range(4):  # the permutation stays within each type: per-type counts are kept
        assert permuted[types == t, 1].sum() == graph[types == t].sum()
    x = torch.cat([torch.nn.functional.one_hot(types, 4).float(), graph[:, None]], 1)  # the type and the graph bit
    task = P.binary_probe(x, graph[:, None])["auroc"][0]
    baseline = P.binary_probe(x, permuted[:, 1:])["auroc"][0]
    assert task > 0.99 and abs(baseline - 0.5) < 0.06


def test_control_task_labels_are_one_per_type_and_follow_the_real_distribution():
    """Hewitt and Liang's control task on a generated sample's edge tokens: every (a, b) pair carries one
    label per draw, and over draws a type's label is 1 as often as the real label is over tokens."""
    batch = batch_for(8, 400, 7)
    y, types = P.edge_reach_labels(batch, 8)
    y = y[:, [1, 8]]  # "first endpoint within 2 hops", "second endpoint within 2 hops": shares far from 0 and 1
    control = C.control_task_labels(types, y, np.random.default_rng(0), draws=300)  # (R, E, 2)
    kinds = types.unique()
    assert len(kinds) > 20 and torch.isfinite(control).all()
    per_type = torch.stack([control[:, types == k, :].amax(1) for k in kinds], 1)  # (R, U, 2)
    assert torch.equal(per_type, torch.stack([control[:, types == k, :].amin(1) for k in kinds], 1))  # one label per type
    for j in range(2):
        share, drawn = float(y[:, j].mean()), per_type[..., j].flatten().numpy()
        assert 0.2 < share < 0.8
        assert stats.binomtest(int(drawn.sum()), len(drawn), share).pvalue > 0.001, (share, drawn.mean())
    one_type = C.control_task_labels(torch.zeros(50, dtype=torch.long), y[:50], np.random.default_rng(0))
    assert torch.isnan(one_type).all()  # one type: nothing to memorise, no control task


def _scores(x, y, types, seed=0):
    rng = np.random.default_rng(seed)
    return C.probe_with_controls(x, y, C.permuted_labels(types, y, seed), C.control_task_labels(types, y, rng), seed)


def test_selectivity_is_zero_when_the_label_is_the_types_and_positive_when_it_is_not():
    g = torch.Generator().manual_seed(2)
    types = torch.randint(0, 300, (6000,), generator=g)
    # the type as a 6-wide random code: a linear probe cannot memorise random labels of 300 types from it
    code = torch.randn(300, 6, generator=g)
    graph = (torch.rand(6000, generator=g) < 0.4).float()
    x = torch.cat([code[types], graph[:, None]], 1)
    reads_graph = _scores(x, graph[:, None], types)
    assert reads_graph["auroc"][0] > 0.99 and reads_graph["selectivity"][0] > 0.3, reads_graph
    # a label that is a function of the type alone, in a representation that holds the type one-hot
    by_type = (torch.rand(300, generator=g) < 0.4).float()[types]
    memorised = _scores(torch.nn.functional.one_hot(types, 300).float(), by_type[:, None], types)
    assert memorised["auroc"][0] > 0.95 and abs(memorised["selectivity"][0]) < 0.03, memorised
    assert memorised["control"][0] > 0.95 and reads_graph["beyond_permuted"][0] > 0.4


def test_ranked_auroc_and_balanced_accuracy_equal_scikit_learn():
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    rng = np.random.default_rng(3)
    truth = rng.random((500, 3)) < [0.1, 0.5, 0.8]
    scores = np.round(truth + rng.normal(0, 1, (500, 3)), 1)  # rounded: many ties
    weight = rng.random(500)
    assert np.allclose(P.auroc_by_ranks(truth, scores), [roc_auc_score(truth[:, j], scores[:, j]) for j in range(3)],
                       atol=1e-12)
    assert np.allclose(P.balanced_accuracy(truth, scores > 0.5, weight),
                       [balanced_accuracy_score(truth[:, j], scores[:, j] > 0.5, sample_weight=weight)
                        for j in range(3)], atol=1e-12)


def test_reach_labels_match_networkx():
    batch = batch_for(6, 40, 4)
    target = P.target_reach_labels(batch, 6)
    edge, types = P.edge_reach_labels(batch, 6)
    row = 0
    for b in range(len(batch)):
        _, real, dist = graph_of(batch, b, 6)
        t = int(batch.target[b])
        assert target[b].tolist() == [float(t in dist and dist[t] <= k) for k in range(1, 6)]
        for u, v in real:
            assert edge[row].tolist() == [float(u in dist and dist[u] <= k) for k in range(1, 6)] + \
                [float(v in dist and dist[v] <= k) for k in range(1, 6)]
            assert int(types[row]) == u * 7 + v
            row += 1


def test_hand_built_reference_is_exact():
    reference = I.handcrafted_reference(batch_for(5, 400, 1), hops=5)
    assert all(a == pytest.approx(1.0) for a in reference["reach_auroc"]) and reference["distance_r2"] > 0.9999


def _run(directory, n=5):
    from graphpath.core.checkpoint import save_checkpoint
    from graphpath.core.model import ModelConfig, build_model

    config = ModelConfig(max_vertices=n, d_model=16, n_layers=2, n_heads=2)
    torch.manual_seed(0)
    info = {"model_config": config.to_dict(), "data": study_sizes_up_to(n), "step": 0, "seed": 0,
            "stage": "pretrain"}
    save_checkpoint(directory / "checkpoints", "pretrain-final", build_model(config), info)
    return directory


def test_attention_and_patching_on_a_small_model(tmp_path):
    from graphpath.core.model import ModelConfig, build_model

    model = build_model(ModelConfig(max_vertices=5, d_model=16, n_layers=2, n_heads=2)).eval()
    batch = batch_for(5, 64, 2)
    _, cache = model.run_with_cache(batch)
    pattern_name = [n for n in cache if I.PATTERN.match(n)][0]
    stats = P.edge_attention(cache[pattern_name], batch)
    assert all(len(v) == 2 for v in stats.values())  # one value per head
    assert all(0 <= a <= 1 for a in stats["along_edges"].tolist())
    uniform = P.edge_attention(torch.ones_like(cache[pattern_name]) / (1 + batch.num_edges.float())[:, None, None, None]
                               * torch.cat([torch.ones(len(batch), 1, dtype=torch.bool), batch.edge_mask], 1)[:, None, None, :], batch)
    assert torch.allclose(uniform["along_edges"], uniform["uniform"].float(), atol=1e-5)  # uniform attention: ratio 1
    assert all(a + t <= 1 + 1e-5 for a, t in zip(stats["along_edges"].tolist(), stats["on_target"].tolist()))
    patched = H.patching(model, batch, seed=1)
    last = H.stream_points(model)[-1]
    assert patched["layers"][last]["target"] == pytest.approx(1.0)  # the read-out sees only the target token
    assert patched["layers"][last]["edges"] == pytest.approx(0.0, abs=1e-6)
    assert set(patched["heads"]) == {"blocks.0.h0", "blocks.0.h1", "blocks.1.h0", "blocks.1.h1"}
    assert H.retarget(batch, 1).target.ne(batch.target).all()


@pytest.mark.slow
def test_cli_writes_interpret_json(tmp_path, capsys):
    run = _run(tmp_path / "run")
    assert I.main([str(run), "--size", "256"]) == 0, capsys.readouterr().err
    doc = json.loads((run / "interpret.json").read_text())
    g = doc["groups"]["pretrain"]
    assert g["points"] == ["hook_embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"] and g["seeds"] == 1
    assert g["models"][0]["data"]["source"] == "trained" and g["models"][0]["data"]["spec"]["target"] == "fixed"
    assert len(g["target"]["by_k"]["selectivity"][0]) == 4 and "offpath" not in g
    assert g["target"]["control"][0]["mean"] is None and g["target"]["types"] == [1]  # t = 2 only: no control task
    assert g["edges"]["control"][0]["mean"] is not None and len(g["stats_by_k"]) == 4 and len(g["emergence"]) == 4  # pre-training: no off-path verdict
    assert all(0 <= c["mean"] <= 1 for c in g["edges"]["auroc"]) and g["target"]["auroc"][0]["ci95"] is None
    assert all(a is None or a == pytest.approx(1.0) for a in doc["handcrafted"]["reach_auroc"])
    cap = g["capacity"]  # the probe-capacity curve at the last point; at the full width it is the ordinary probe
    assert doc["schema"] == 6 and cap["ranks"] == [1, 2, 4, 8, 16] and cap["point"] == g["points"][-1]
    assert cap["status"] == "exploratory" and "after the full-width" in cap["why"]
    fresh = cap["confirm"]  # the same test on a fresh sample (draw 1): its own curve
    assert fresh["status"] == "confirmatory" and fresh["sample"]["draw"] == 1 and fresh["sample"]["graphs"] == [256]
    assert fresh["edges"]["auroc"][0]["mean"] != cap["edges"]["auroc"][0]["mean"]
    assert set(doc["findings"]["p_values"]) == {"pretrain/beats_stats", "pretrain/beats_permuted",
                                                "pretrain/selective_target", "pretrain/selective_edges",
                                                "pretrain/capacity_target", "pretrain/capacity_edges"}
    assert cap["edges"]["selectivity"][-1] == g["edges"]["selectivity"][-1] and len(cap["edges"]["auroc"]) == 5
    assert cap["findings"]["p_values"]["target"] is None and "one type" in cap["findings"]["untestable"]["target"]
    assert cap["findings"]["p_values"]["edges"] is None  # one seed: no t over seeds
    assert all((run / "figures" / f"interpret_{kind}_pretrain.html").is_file() for kind in ("probes", "patching"))


def test_model_without_hook_points_exits_2(tmp_path, capsys, monkeypatch):
    from graphpath.core.model import GraphTransformer

    run = _run(tmp_path / "run")
    monkeypatch.setattr(GraphTransformer, "hook_names", lambda self: [])
    code = I.main([str(run), "--size", "64", "--no-figures"])
    err = capsys.readouterr().err
    assert code == 2 and "no residual-stream" in err and err.count("\n") == 1, err
    assert not (run / "interpret.json").exists()


@pytest.mark.parametrize("args,needle", [(["nowhere"], "no run directory"), (["EMPTY"], "no checkpoint"),
                                         (["RUN", "--layers", "blocks.9.hook_resid_post"], "unknown layer")])
def test_bad_input_exits_2(args, needle, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    run = _run(tmp_path / "run")
    args = [{"EMPTY": str(tmp_path / "empty"), "RUN": str(run)}.get(a, a) for a in args]
    code = I.main(args + ["--size", "64", "--no-figures", "--out", str(tmp_path / "i.json")])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "i.json").exists()


def test_auroc_intervals_are_on_the_logit_scale_and_stay_below_one():
    from graphpath.analysis.intervals import over_seeds, over_seeds_logit

    values = [0.99, 0.999, 0.97]
    assert over_seeds(values)["ci95"][1] > 1  # the plain t-interval leaves the AUROC's range
    logit = over_seeds_logit(values)
    assert 0 < logit["ci95"][0] < min(values) and max(values) < logit["ci95"][1] < 1
    assert logit["mean"] == pytest.approx(np.mean(values)) and over_seeds_logit([0.9])["ci95"] is None


def test_graph_statistics_are_the_targets_degree_component_edge_count_and_n():
    from data_gen import GraphBatch

    batch = GraphBatch.from_edges([[(1, 3), (3, 2), (2, 4)], [(1, 2)], [(1, 2), (2, 3)]], max_vertices=6,
                                  target=[3, 5, 6], num_vertices=[4, 6, 5])
    onehot = lambda d: [float(i == d) for i in range(6)]  # noqa: E731
    assert C.graph_statistics(batch).tolist() == [
        onehot(2) + [0.0, 4.0, 3.0, 4.0] + onehot(1) + [4.0],  # degree 2, component {1, 2, 3, 4}; 1 has degree 1
        onehot(0) + [1.0, 1.0, 1.0, 6.0] + onehot(1) + [2.0],  # 5 isolated: its own component; 1's is {1, 2}
        [0.0] * 6 + [0.0, 0.0, 2.0, 5.0] + onehot(1) + [3.0]]  # t = 6 > n: not in the graph; 1's is {1, 2, 3}


def test_graph_statistics_match_networkx_and_recover_any_function_of_degree():
    batch = batch_for(8, 600, 11)
    features = C.graph_statistics(batch)
    degrees = []
    for b in range(len(batch)):
        graph, _, _ = graph_of(batch, b, int(batch.num_vertices[b]))
        t = int(batch.target[b])
        present = t in graph
        degree = graph.degree(t) if present else None
        degrees.append(-1 if degree is None else degree)
        if present:
            assert features[b, degree] == 1 and features[b, :8].sum() == 1
            assert features[b, 9] == len(nx.node_connected_component(graph, t)) and features[b, 8] == (degree == 0)
        assert features[b, 12 + graph.degree(1)] == 1 and features[b, 12:20].sum() == 1  # the source's degree
        assert features[b, 20] == len(nx.node_connected_component(graph, 1))
    label = torch.tensor([float(d in (1, 3)) for d in degrees])  # not monotone in the degree
    assert 0.2 < float(label.mean()) < 0.8
    assert P.binary_probe(features, label[:, None])["auroc"][0] > 0.999  # exact: one-hot degree
    raw_degree = features[:, :8] @ torch.arange(8.0)  # the schema-3 baseline's degree column alone
    assert P.binary_probe(raw_degree[:, None], label[:, None])["auroc"][0] < 0.9  # so the one-hot is what recovers it


def _probe_rows(gain, count=4, seed=0, hops=4, trivial_from=3, selectivity=0.3, edge_selectivity=0.3):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        auroc = np.array([0.9, 0.85] + [np.nan] * (hops - 3))
        stats = auroc - gain + rng.normal(0, 0.005, len(auroc))
        share = np.array([0.3, 0.6] + [0.99] * (hops - 3))
        noise = lambda value: np.array([value, value] + [np.nan] * (hops - 3)) + rng.normal(0, 0.01)  # noqa: E731
        target_sel = np.full(hops - 1, np.nan) if selectivity is None else noise(selectivity)
        rows.append({"target": [{"auroc": auroc, "beyond_stats": auroc - stats, "beyond_permuted": noise(0.3),
                                 "selectivity": target_sel}],
                     "edges": [{"selectivity": noise(edge_selectivity)}], "hop_share": share, "max_n": 5})
    return rows


def test_probe_findings_need_a_gain_over_graph_statistics():
    assert I.probe_findings(_probe_rows(gain=0.2))["holds"] == {"beats_stats": True, "beats_permuted": True,
                                                                "selective_target": True, "selective_edges": True}
    weak = I.probe_findings(_probe_rows(gain=0.0))
    assert not weak["holds"]["beats_stats"] and weak["holds"]["beats_permuted"]


def test_selectivity_finding_fails_below_its_margin_and_says_when_it_cannot_be_tested():
    low = I.probe_findings(_probe_rows(gain=0.2, selectivity=I.SELECTIVITY_MARGIN - 0.05, edge_selectivity=0.0))
    assert not low["holds"]["selective_target"] and not low["holds"]["selective_edges"] and low["holds"]["beats_stats"]
    one_type = I.probe_findings(_probe_rows(gain=0.2, selectivity=None))
    assert one_type["p_values"]["selective_target"] is None and not one_type["holds"]["selective_target"]
    assert "one type" in one_type["untestable"]["selective_target"] and one_type["holds"]["selective_edges"]
    assert set(one_type["p_adjusted"]) == {"beats_stats", "beats_permuted", "selective_target", "selective_edges"}


def test_emergence_is_the_first_point_whose_interval_over_the_baseline_is_above_zero():
    cell = lambda low: {"mean": low + 0.01, "ci95": [low, low + 0.02], "n": 3}  # noqa: E731
    pooled = {"points": ["embed", "b0", "b1"], "stats_by_k": [cell(0.8), cell(0.9)],
              "hops": {"per_k": [{"k": 1, "probed": True}, {"k": 2, "probed": False}]},
              "target": {"by_k": {"beyond_stats": [[cell(-0.1), cell(-0.1)], [cell(-0.01), cell(0.1)],
                                                   [cell(0.02), cell(0.1)]]}}}
    found = I.emergence(pooled)
    assert [(e["k"], e["point"]) for e in found] == [(1, "b1"), (2, None)]  # k = 2 not probed: no point
    assert found[0]["stats_auroc"] == cell(0.8)


def test_hops_that_small_graphs_cannot_probe_are_said_plainly():
    hops = I.hops_probed(_probe_rows(gain=0.1, hops=5))
    assert [p["probed"] for p in hops["per_k"]] == [True, True, False, False]
    assert hops["note"].startswith("k = 3, 4 hops cannot be probed") and "5 vertices" in hops["note"]
    assert I.hops_probed(_probe_rows(gain=0.1, hops=3))["note"] is None


def test_ridge_at_a_rank_equals_pca_then_ridgecv_fitted_on_the_same_rows():
    from sklearn.decomposition import PCA
    from sklearn.linear_model import RidgeCV

    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 12)) * np.linspace(3, 0.2, 12)  # distinct variances: PCA's directions are defined
    y = np.stack([x[:, 0] - x[:, 5] + rng.normal(size=400), rng.normal(size=400)], axis=1)
    held = rng.normal(size=(50, 12))
    for rank in (1, 3, 12):
        pca = PCA(n_components=rank).fit(x)
        theirs = RidgeCV(alphas=P.ALPHAS, alpha_per_target=True).fit(pca.transform(x), y)
        ours = P.Ridge(x, y, rank=rank)
        assert ours.alpha.tolist() == list(theirs.alpha_)
        assert np.allclose(ours.predict(held), theirs.predict(pca.transform(held)), atol=1e-9)
    assert np.allclose(P.Ridge(x, y, rank=12).predict(held), P.Ridge(x, y).predict(held), atol=1e-12)
    with pytest.raises(ValueError, match="rank"):
        P.Ridge(x, y, rank=0)


def _spy_on_ridge(monkeypatch, keep: str) -> list:
    """Replace probe_fits.Ridge by a subclass that records (training rows, its `keep` argument) of
    every probe built; returns that list."""
    seen = []
    real = P.Ridge

    class Spy(real):
        def __init__(self, xs, ys, rank=None, groups=None):
            seen.append((xs.copy(), {"rank": rank, "groups": groups}[keep]))
            super().__init__(xs, ys, rank, groups)

    monkeypatch.setattr(P, "Ridge", Spy)
    return seen


def test_capacity_projection_is_fitted_on_the_training_rows_only(monkeypatch):
    """Every fold's probe (its mean, its principal directions, its penalty) is built from that fold's
    training rows: no test row enters it, and every training row does."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(200, 6, generator=g)
    y = (x[:, :1] > 0).float()
    seen = _spy_on_ridge(monkeypatch, "rank")
    P.binary_probe(x, y, seed=3, rank=2)
    rows = {tuple(r): i for i, r in enumerate(x.double().numpy())}
    test_sets = P.folds(len(x), 3)
    assert len(seen) == len(test_sets)
    for (fitted, rank), test in zip(seen, test_sets):
        used = sorted(rows[tuple(r)] for r in fitted)
        assert rank == 2 and not set(used) & set(test.tolist())
        assert used == sorted(set(range(len(x))) - set(test.tolist()))


def _type_stream(seed=6, count=6000, types=24, type_dims=30, width=64):
    """A synthetic stream: one graph feature (variance 9, the top principal direction) that decides the
    label, and `types` token types each with a random code over `type_dims` directions of variance ~1
    (30 in all: most of the stream's variance), plus small noise. With 24 types <= 30 + 1 a full-rank
    linear probe can fit any labelling of the types (Cover 1965)."""
    g = torch.Generator().manual_seed(seed)
    kind = torch.randint(0, types, (count,), generator=g)
    code = torch.randn(types, type_dims, generator=g)
    feature = 3 * torch.randn(count, generator=g)
    x = torch.cat([feature[:, None], code[kind], torch.zeros(count, width - 1 - type_dims)], 1)
    x = x + 0.05 * torch.randn(count, width, generator=g)
    x = x @ torch.linalg.qr(torch.randn(width, width, generator=g))[0]  # rotated: no axis is special
    return x, (feature > 0).float()[:, None], kind


def test_low_capacity_probe_is_selective_where_the_full_rank_one_is_not():
    from graphpath.analysis import probe_capacity as K

    x, y, kind = _type_stream()
    rng = np.random.default_rng(0)
    control = C.control_task_labels(kind, y, rng)
    widths = K.ranks(64)
    assert widths == [1, 2, 4, 8, 16, 64]
    curve = K.capacity_curve(x, y, C.permuted_labels(kind, y, 1), control, 0, widths)
    low, full = curve[0], curve[-1]
    assert low["auroc"][0] > 0.95 and abs(low["control"][0] - 0.5) < 0.1 and low["selectivity"][0] > 0.35, low
    assert full["control"][0] > 0.95 and abs(full["selectivity"][0]) < 0.05, full  # types memorised
    assert curve[3]["control"][0] > low["control"][0]  # capacity buys the control task
    assert np.array_equal(full["selectivity"], C.probe_with_controls(  # the full width is the ordinary probe, exactly
        x, y, C.permuted_labels(kind, y, 1), control, 0)["selectivity"])


def _capacity_records(selectivity_by_rank, seeds=4, seed=0, one_type=False):
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(seeds):
        def curve(values):
            return [{"selectivity": np.array([v, v]) + rng.normal(0, 0.01), "auroc": np.array([0.9, 0.9]),
                     "control": np.array([0.9 - v, 0.9 - v]), "permuted": np.array([0.5, 0.5])} for v in values]
        target = curve([np.nan] * len(selectivity_by_rank)) if one_type else curve(selectivity_by_rank)
        records.append({"ranks": [1, 2, 64][:len(selectivity_by_rank)], "point": "blocks.1.hook_resid_post",
                        "target": target, "edges": curve(selectivity_by_rank)})
    return records


def test_capacity_finding_corrects_for_choosing_a_rank():
    from graphpath.analysis import probe_capacity as K

    found = K.capacity_findings(_capacity_records([0.3, 0.05, 0.0]), I.SELECTIVITY_MARGIN)
    assert found["holds"] == {"target": True, "edges": True}
    low = K.capacity_findings(_capacity_records([0.08, 0.05, 0.0]), I.SELECTIVITY_MARGIN)
    assert low["holds"] == {"target": False, "edges": False}
    # the position's p is Bonferroni over its ranks: 3 x the smallest per-rank p, capped at 1
    p = found["p_by_rank"]["edges"]
    assert found["p_values"]["edges"] == pytest.approx(min(1.0, 3 * min(p)))
    one = K.capacity_findings(_capacity_records([0.3, 0.05, 0.0], one_type=True), I.SELECTIVITY_MARGIN)
    assert one["p_values"]["target"] is None and not one["holds"]["target"] and "one type" in one["untestable"]["target"]
    assert one["holds"]["edges"] and one["thresholds"]["selectivity_margin"] == I.SELECTIVITY_MARGIN
    pooled = K.pool_curve(_capacity_records([0.3, 0.05, 0.0]))
    assert [c["mean"] for c in pooled["edges"]["selectivity"]] == pytest.approx([0.3, 0.05, 0.0], abs=0.03)
    assert pooled["edges"]["auroc"][0]["scale"] == "logit" and "scale" not in pooled["edges"]["selectivity"][0]


def test_grouped_folds_never_put_one_graphs_tokens_on_both_sides():
    rng = np.random.default_rng(8)
    groups = rng.integers(0, 300, size=2000)  # ~7 tokens a graph, in no order
    test_sets = P.folds(len(groups), 3, groups=groups)
    assert len(test_sets) == P.FOLDS
    assert sorted(np.concatenate(test_sets).tolist()) == list(range(len(groups)))  # a partition of the tokens
    for test in test_sets:
        inside = set(groups[test].tolist())
        outside = set(np.delete(groups, test).tolist())
        assert inside and not inside & outside
    # one token a graph: exactly the ungrouped folds (the target token's numbers do not move)
    assert all(np.array_equal(a, b) for a, b in zip(P.folds(500, 3, groups=np.arange(500)), P.folds(500, 3)))
    with pytest.raises(ValueError, match="groups"):
        P.folds(10, 0, groups=np.zeros(10))


def test_grouped_probe_trains_on_no_token_of_a_tested_graph(monkeypatch):
    g = torch.Generator().manual_seed(9)
    groups = np.repeat(np.arange(120), 5)
    x = torch.randn(len(groups), 6, generator=g)
    y = (x[:, :1] > 0).float()
    seen = _spy_on_ridge(monkeypatch, "groups")
    P.binary_probe(x, y, seed=4, groups=groups)
    rows = {tuple(r): i for i, r in enumerate(x.double().numpy())}
    for (fitted, inner), test in zip(seen, P.folds(len(x), 4, groups=groups)):
        used = np.array([rows[tuple(r)] for r in fitted])
        assert not set(groups[used].tolist()) & set(groups[test].tolist())
        assert np.array_equal(inner, groups[used])  # the penalty's CV is by graph too


def test_leave_one_group_out_equals_refitting_without_the_group():
    from sklearn.linear_model import Ridge as SkRidge

    rng = np.random.default_rng(10)
    groups = rng.integers(0, 25, size=120)
    x = rng.normal(size=(120, 5))
    y = x @ rng.normal(size=(5, 2)) + rng.normal(size=(120, 2))
    centred = x - x.mean(0)
    u, sv, _ = np.linalg.svd(centred, full_matrices=False)
    for alpha in (0.1, 10.0):
        shrink = sv ** 2 / (sv ** 2 + alpha)
        fit = u @ (shrink[:, None] * (u.T @ (y - y.mean(0))))
        ours = P._group_loo(u, shrink, y - y.mean(0) - fit, groups)
        theirs = np.zeros_like(y)
        for kind in np.unique(groups):
            out = groups == kind
            theirs[out] = y[out] - SkRidge(alpha=alpha).fit(x[~out], y[~out]).predict(x[out])
        assert np.allclose(ours, theirs, atol=1e-9)


def test_token_folds_inflate_a_label_that_only_names_the_graph_and_grouped_folds_do_not():
    """Tokens of one graph are near-twins with one label: a probe scored across tokens of the same
    graph memorises graphs; scored across graphs it is at chance or below (leaving a graph out moves
    the training mean away from its label: the known anti-learning of leave-out on random labels)."""
    g = torch.Generator().manual_seed(11)
    groups = np.repeat(np.arange(48), 20)  # 48 graphs <= width + 1: any labelling of them is linear (Cover 1965)
    code = torch.randn(48, 64, generator=g)
    x = code[groups] + 0.05 * torch.randn(len(groups), 64, generator=g)
    y = (torch.rand(48, generator=g) < 0.5).float()[groups][:, None]  # a random label per graph
    assert P.binary_probe(x, y)["auroc"][0] > 0.99
    assert P.binary_probe(x, y, groups=groups)["auroc"][0] < 0.6


def test_balanced_accuracy_thresholds_at_the_training_share():
    """A weak signal under a 0.9 share: the ridge output sits near 0.9, so a 0.5 threshold calls
    everything positive (balanced accuracy 0.5); the training share as threshold reads the signal."""
    g = torch.Generator().manual_seed(12)
    x = torch.randn(3000, 3, generator=g)
    y = (x[:, 0] + 2.5 * torch.randn(3000, generator=g) > -3.4).float()[:, None]
    assert 0.85 < float(y.mean()) < 0.93
    assert P.Ridge(x.double().numpy(), y.double().numpy()).predict(x.double().numpy()).min() > 0.5  # 0.5: all positive
    out = P.binary_probe(x, y)
    assert out["balanced_accuracy"][0] > 0.58 and out["auroc"][0] > 0.6


def test_page_findings_correct_every_group_and_confirmatory_test_together():
    groups = {}
    for name, (probe, capacity) in {"a": ([0.01, 0.02, None, 0.5], [0.001, 0.9]),
                                    "b": ([0.03, 0.04, 0.2, 0.3], [0.04, None])}.items():
        groups[name] = {"findings": {"p_values": dict(zip(("beats_stats", "beats_permuted", "selective_target",
                                                           "selective_edges"), probe))},
                        "capacity": {"findings": {"p_values": {"target": 1e-9, "edges": 1e-9}},  # exploratory: left out
                                     "confirm": {"findings": {"p_values": dict(zip(("target", "edges"), capacity))}}}}
    family = I.page_findings(groups)
    raw = family["p_values"]
    assert len(raw) == 12 and raw["a/capacity_target"] == 0.001 and raw["b/selective_target"] == 0.2
    present = [k for k, p in raw.items() if p is not None]
    expected = stats.false_discovery_control([raw[k] for k in present], method="bh")
    assert [family["p_adjusted"][k] for k in present] == pytest.approx(list(expected))
    assert family["p_adjusted"]["a/selective_target"] is None and not family["holds"]["a/selective_target"]
    assert family["holds"]["a/capacity_target"] and not family["holds"]["b/selective_edges"]
    assert family["holds"]["b/beats_stats"] == (family["p_adjusted"]["b/beats_stats"] < 0.05)


def test_every_probe_at_edge_or_vertex_tokens_is_folded_by_graph(tmp_path, monkeypatch):
    """interpret_run end to end on a small model: every probe fitted on more rows than there are graphs
    (edge tokens, the hand-built model's vertex tokens) gets its graphs as groups, and they never
    straddle a fold; probes on one row a graph need none."""
    calls = []
    real = P.binary_probe

    def spy(x, y, seed=0, weight=None, rank=None, groups=None):
        calls.append((len(x), None if groups is None else np.asarray(groups), seed))
        return real(x, y, seed, weight, rank, groups)

    monkeypatch.setattr(P, "binary_probe", spy)
    doc = I.interpret_run(str(_run(tmp_path / "run")), None, None, 64, 40000, None)
    assert doc["groups"]["pretrain"]["capacity"]["confirm"]["status"] == "confirmatory"
    many = [(n, g, s) for n, g, s in calls if n != 64]  # 64 graphs a sample (the hand-built one too: min(64, 512))
    assert many and all(g is not None and len(np.unique(g)) <= 64 for _, g, _ in many)
    for n, g, s in many:
        for test in P.folds(n, s, groups=g):
            assert not set(g[test].tolist()) & set(np.delete(g, test).tolist())
    assert all(g is None for n, g, _ in calls if n == 64)
