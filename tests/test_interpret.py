"""`graphpath.analysis.interpret` and `graphpath.analysis.probe_fits`: labels against networkx, probes that can fail,
the hand-built reference measured, bad input exits 2."""
from __future__ import annotations

import json

import networkx as nx
import pytest
import torch

from data_gen import sample, study_presets
from data_gen.spec import study_sizes_up_to
from graphpath.analysis import interpret as I
from graphpath.analysis import probe_fits as P


def batch_for(n: int, size: int, seed: int):
    return sample(study_presets(**study_sizes_up_to(n))["test-any-large"], size, seed).trim()


def test_hop_and_endpoint_labels_match_networkx():
    batch = batch_for(6, 40, 3)
    labels = P.hop_labels(batch, 6)
    ends, mask = P.endpoint_labels(batch)
    row = 0
    for b in range(len(batch)):
        graph = nx.Graph()
        graph.add_nodes_from(range(1, 7))
        real = [tuple(e) for e in batch.edges[b].tolist() if e[0] > 0]
        graph.add_edges_from((u, v) for u, v in real if u != v)
        dist = nx.single_source_shortest_path_length(graph, 1)
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


@pytest.mark.parametrize("numbers,verdict", [
    (dict(mse_on=0.1, mse_off=0.15, distance_r2_off=[0.1], hops_on=[0.9], hops_off=[0.5]), "no-failure"),
    (dict(mse_on=0.1, mse_off=5.0, distance_r2_off=[0.2, 0.9], hops_on=[0.9], hops_off=[0.9]), "readout"),
    (dict(mse_on=0.1, mse_off=5.0, distance_r2_off=[0.2], hops_on=[0.9], hops_off=[0.88], hops_off_random=[0.87]),
     "no-reach-signal"),
    (dict(mse_on=0.1, mse_off=5.0, distance_r2_off=[0.2, None], hops_on=[0.9], hops_off=[0.88], hops_off_random=[0.8]),
     "reach-not-distance"),
    (dict(mse_on=0.1, mse_off=5.0, distance_r2_off=[0.2], hops_on=[0.9], hops_off=[0.7], hops_off_random=[0.6]),
     "reach-missing"),
])
def test_offpath_verdict_follows_the_numbers(numbers, verdict):
    assert I.offpath_verdict(numbers) == verdict


def test_ridge_probe_recovers_a_linear_rule_and_fails_on_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(800, 10, generator=g)
    y = torch.stack([x[:, 0] + 0.5 * x[:, 3] > 0.2, torch.rand(800, generator=g) > 0.5], dim=1)
    result = P.binary_probe(x, y)
    assert result["accuracy"][0] > 0.93 and result["accuracy"][1] < 0.62
    assert P.scalar_probe(x, 3 * x[:, 1] - x[:, 2])["r2"] > 0.999
    assert P.restored(torch.zeros(4), torch.ones(4), torch.zeros(4)) == 1.0
    assert P.restored(torch.zeros(4), torch.ones(4), torch.ones(4)) == 0.0


def test_hand_built_reference_is_exact():
    reference = I.handcrafted_reference(batch_for(5, 400, 1), hops=5)
    assert all(a == 1.0 for a in reference["hops"]) and reference["distance_r2"] > 0.9999


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
    patched = I.patching(model, batch, seed=1)
    last = I.stream_points(model)[-1]
    assert patched[last]["target"] == pytest.approx(1.0)  # the read-out sees only the target token
    assert I.retarget(batch, 1).target.ne(batch.target).all()


@pytest.mark.slow
def test_cli_writes_interpret_json(tmp_path, capsys):
    run = _run(tmp_path / "run")
    assert I.main([str(run), "--size", "256"]) == 0, capsys.readouterr().err
    doc = json.loads((run / "interpret.json").read_text())
    assert doc["trained"]["layers"] == ["hook_embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    assert len(doc["trained"]["hops"][0]) == 5 and all(a == 1.0 for a in doc["handcrafted"]["hops"])
    assert doc["trained"]["endpoints"][0] > 0.95  # the embedding holds the edge's own vertices
    assert all((run / "figures" / name).is_file() for name in ("interpret_probes.html", "interpret.png"))
    off = doc["offpath"]
    assert off["verdict"] in {"no-failure", "readout", "no-reach-signal", "reach-not-distance", "reach-missing"}
    assert len(off["hops_off_random"]) == len(off["distance_r2_off_random"]) == 3
    assert off["on_count"] == 256 and 16 <= off["off_count"] <= 256 and len(off["distance_r2_transfer"]) == 3
    assert off["verdict"] == I.offpath_verdict(off)


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
