"""Graphs written by hand (data_gen.graphs) labelled against networkx, and the one validation
(data_gen.validate.check_graphs) refusing what no model can read, for every model and labeller."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from data_gen import HAND_DRAWN, GraphBatch
from data_gen.bfs import bfs_reference
from data_gen.graphs import label_arrays
from graphpath.core.model import GraphTransformer, ModelConfig
from graphpath.evaluation.predict import predict, predict_graphs
from handcrafted import build_bfs_transformer


def networkx_label(n, edges, target, task, unreachable):
    graph = nx.MultiGraph()
    graph.add_nodes_from(range(1, n + 1))
    graph.add_edges_from(edges)
    reach = nx.single_source_shortest_path_length(graph, 1)
    if task == "distance":
        return reach.get(target, unreachable)
    if task == "reachable":
        return int(target in reach)
    if task == "degree":
        return len(set(graph.neighbors(target))) if target <= n else 0
    if task == "reach_count":
        return len(reach) - 1
    return max(reach.values())  # eccentricity within the component of 1


@pytest.mark.parametrize("task", ["distance", "reachable", "degree", "reach_count", "eccentricity"])
def test_random_edge_lists_are_labelled_as_networkx_labels_them(task):
    rng = np.random.default_rng(7)
    graphs, targets, sizes = [], [], []
    for _ in range(200):
        n = int(rng.integers(3, 10))
        pairs = [tuple(int(v) for v in rng.integers(1, n + 1, 2)) for _ in range(int(rng.integers(0, n + 2)))]
        graphs.append([(a, b) if rng.random() < 0.5 else (b, a) for a, b in pairs if a != b])
        targets.append(int(rng.integers(2, 11)))  # some above n: vertices the graph does not have
        sizes.append(n)
    batch = GraphBatch.from_edges(graphs, max_vertices=10, target=targets, num_vertices=sizes, task=task)
    for row in range(len(graphs)):
        target = 1 if task in ("reach_count", "eccentricity") else targets[row]
        expected = networkx_label(sizes[row], graphs[row], target, task, 10)
        assert int(batch.label[row]) == expected, (row, graphs[row], targets[row])
        assert int(batch.path_length[row]) == networkx_label(sizes[row], graphs[row], 2, "distance", 10)
        real = batch.edges[row][batch.edge_mask[row]]
        assert (real[:, 0] < real[:, 1]).all()  # stored (a, b) with a < b, as the study writes edges
        assert sorted(map(tuple, real.tolist())) == sorted(tuple(sorted(p)) for p in graphs[row])


def test_hand_drawn_rows_and_networkx_graphs_give_the_same_batch():
    rows = [row for row in HAND_DRAWN if row["num_vertices"] <= 8]
    from_rows = GraphBatch.from_edges([r["edges"] for r in rows], 8, [r["target"] for r in rows],
                                      [r["num_vertices"] for r in rows])
    assert from_rows.label.tolist() == [8 if r["label"] is None else r["label"] for r in rows]
    assert from_rows.path_length.tolist() == [8 if r["path_length"] is None else r["path_length"] for r in rows]
    graphs = []
    for row in rows:
        graph = nx.MultiGraph()
        graph.add_nodes_from(range(1, row["num_vertices"] + 1))
        graph.add_edges_from(row["edges"])
        graphs.append(graph)
    from_nx = GraphBatch.from_networkx(graphs, 8, [r["target"] for r in rows])
    assert from_nx.label.tolist() == from_rows.label.tolist()
    assert from_nx.num_vertices.tolist() == [r["num_vertices"] for r in rows]
    one = GraphBatch.from_edges([(3, 1), (2, 3)], max_vertices=5)  # one graph's list alone
    assert len(one) == 1 and one.label.tolist() == [2] and one.num_vertices.tolist() == [3]


@pytest.mark.parametrize("graph, needle", [
    (nx.path_graph(4), "nodes must be the integers 1..4"),  # 0..3
    (nx.relabel_nodes(nx.path_graph(3), {0: "a", 1: "b", 2: "c"}), "found 'a'"),
    (nx.DiGraph([(1, 2)]), "directed"),
])
def test_networkx_graphs_with_other_names_are_refused(graph, needle):
    with pytest.raises(ValueError, match=needle):
        GraphBatch.from_networkx(graph, 8)


@pytest.mark.parametrize("edges, kwargs, needle", [
    ([(1, 1)], {}, "joins vertex 1 to itself"),
    ([(0, 2)], {}, "below 1"),
    ([(1, 9)], {}, "graph 1: num_vertices 9 is outside 1..8"),  # n inferred from the largest id
    ([(1, 3)], {"target": 9}, "target 9 is outside 1..8"),
    ([(1, 3)], {"num_vertices": 2}, "edge \\(1, 3\\) has a vertex id outside 1..2"),
    ([(1, 2, 3)], {}, "not a pair"),
])
def test_bad_edge_lists_are_one_valueerror_naming_the_graph(edges, kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        GraphBatch.from_edges([[(1, 2)], edges], max_vertices=8, **kwargs)


def issue_batch() -> GraphBatch:
    """n = 4, max_vertices 6, target 2, edges (1, 7), (7, 2): id 7 is one above max_vertices."""
    return GraphBatch(edges=torch.tensor([[[1, 3], [2, 3]], [[1, 7], [7, 2]]]), num_vertices=torch.tensor([4, 4]),
                      target=torch.tensor([2, 2]), label=torch.tensor([2, 2]), path_length=torch.tensor([2, 2]),
                      max_vertices=6)


def test_the_issues_graph_is_refused_by_every_model_and_labeller():
    batch = issue_batch()
    message = r"graph 1: edge \(1, 7\) has a vertex id outside 1..4"
    learned = GraphTransformer(ModelConfig(max_vertices=6, d_model=8, n_layers=1, n_heads=2))
    for model in (learned, build_bfs_transformer(6)):
        with pytest.raises(ValueError, match=message):
            model(batch)
        with pytest.raises(ValueError, match=message):
            predict(model, batch)
    with pytest.raises(ValueError, match=message):
        label_arrays(batch.edges.numpy(), batch.num_vertices.numpy(), batch.target.numpy(), 6)
    with pytest.raises(ValueError, match=r"graph 0: edge \(1, 7\) has a vertex id outside 1..4"):
        bfs_reference(4, [(1, 7), (7, 2)], 1, unreachable=6)
    assert learned(batch[:1]).shape == (1,)  # the first graph alone is fine


def test_sizes_and_vocabularies_beyond_the_model_are_refused():
    learned = GraphTransformer(ModelConfig(max_vertices=5, d_model=8, n_layers=1, n_heads=2))
    wide = issue_batch()[:1]  # max_vertices 6 > the model's 5
    with pytest.raises(ValueError, match="max_vertices 6 is above the model's vocabulary 5"):
        learned(wide)
    big = issue_batch()[:1]
    big.num_vertices[0] = 7
    with pytest.raises(ValueError, match="graph 0: num_vertices 7 is outside 1..6"):
        big.check()
    with pytest.raises(ValueError, match="max_vertices == 5"):
        build_bfs_transformer(5)(issue_batch()[:1])


def test_predict_graphs_answers_as_the_hand_built_model_computes():
    hand = build_bfs_transformer(6)
    graphs = [[(1, 3), (3, 2)], [(1, 2)], [(2, 3)], [(1, 4), (4, 5), (5, 6), (2, 6)]]
    result = predict_graphs(hand, graphs, target=[2, 2, 2, 6])
    assert result.label.tolist() == [2, 1, 6, 3] and result.answer.tolist() == result.label.tolist()
    assert result.correct.all() and np.allclose(result.output, result.label, atol=1e-3)
    assert result.rows()[3]["edges"] == [(1, 4), (4, 5), (5, 6), (2, 6)]
    assert "4 graph(s), 4 answered correctly" in repr(result)
    with pytest.raises(ValueError, match="target 7 is outside 1..6"):
        predict_graphs(hand, graphs[:1], target=7)
