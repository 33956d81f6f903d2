"""The hand-built BFS transformer is exact: checked against networkx, never against itself."""
from __future__ import annotations

import itertools

import pytest
import torch

from data_gen import GraphBatch, GraphSpec, sample
from data_gen.examples import hand_drawn_batch
from data_gen.spec import FAMILIES, TARGET_MODES
from handcrafted import build_bfs_transformer, model_size
from oracle import batch_labels


def networkx_distances(batch: GraphBatch) -> torch.Tensor:
    """The independent oracle (tests/oracle.py): BFS distance 1 -> target, unreachable = max_vertices."""
    return torch.tensor(batch_labels(batch), dtype=torch.float32)


def make_batch(graphs, max_vertices: int) -> GraphBatch:
    """graphs: list of (num_vertices, [(a, b), ...], target); labels from networkx."""
    width = max(1, max(len(edges) for _, edges, _ in graphs))
    edges = torch.zeros(len(graphs), width, 2, dtype=torch.int64)
    for i, (_, pairs, _) in enumerate(graphs):
        if pairs:
            edges[i, :len(pairs)] = torch.tensor(pairs)
    num_vertices = torch.tensor([g[0] for g in graphs])
    target = torch.tensor([g[2] for g in graphs])
    zeros = torch.zeros(len(graphs), dtype=torch.int64)
    batch = GraphBatch(edges, num_vertices, target, zeros, zeros, max_vertices)
    batch.label = networkx_distances(batch).long()
    return batch


def mse(model, batch) -> float:
    with torch.no_grad():
        return (model(batch) - networkx_distances(batch)).pow(2).mean().item()


@pytest.mark.parametrize("edge_tokens", [False, True])
def test_hand_drawn_table(edge_tokens):
    """The shared hand-drawn table (answers worked out on paper), with the cases a BFS gets wrong
    first: repeated edges, isolated vertex 1, a target beyond n, the longest path n = 8 allows."""
    batch = hand_drawn_batch(8)
    expected = batch.label.float()
    assert torch.equal(networkx_distances(batch), expected)  # the table agrees with networkx
    with torch.no_grad():
        out = build_bfs_transformer(8, edge_tokens=edge_tokens)(batch)
    assert (out - expected).abs().max().item() < 1e-3
    assert (out - expected).pow(2).mean().item() < 1e-6


@pytest.mark.parametrize("n,size,edge_tokens", [(8, 2000, False), (15, 1200, False), (32, 400, False),
                                                (8, 1000, True), (15, 500, True), (32, 150, True)])
def test_exact_on_every_family_and_target_mode(n, size, edge_tokens):
    model = build_bfs_transformer(n, edge_tokens=edge_tokens)
    for index, (family, mode) in enumerate(itertools.product(FAMILIES, TARGET_MODES)):
        spec = GraphSpec(family=family, n_min=3, n_max=n, target=mode)
        batch = sample(spec, size, 1000 * n + index)
        oracle = networkx_distances(batch)
        assert torch.equal(oracle, batch.label.float())  # data_gen agrees with networkx
        with torch.no_grad():
            out = model(batch)
        assert (out - oracle).pow(2).mean().item() < 1e-6, (family, mode)
        assert (out - oracle).abs().max().item() < 1e-3, (family, mode)
    # the sets above must contain the hard cases, or exactness says little
    if n == 8:
        batch = sample(GraphSpec(n_min=3, n_max=n, target="any"), size, 7)
        assert (batch.label == n).any() and (batch.target > batch.num_vertices).any()


@pytest.mark.parametrize("edge_tokens", [False, True])
def test_every_graph_on_five_vertices(edge_tokens):
    """All 2^10 simple graphs on 5 vertices, every target 2..5: 4096 cases."""
    pairs = list(itertools.combinations(range(1, 6), 2))
    graphs = [(5, [p for bit, p in enumerate(pairs) if mask >> bit & 1], t)
              for mask in range(1 << len(pairs)) for t in range(2, 6)]
    batch = make_batch(graphs, max_vertices=5)
    with torch.no_grad():
        out = build_bfs_transformer(5, edge_tokens=edge_tokens)(batch)
    assert torch.equal(out.round(), batch.label.float())
    assert (out - batch.label.float()).abs().max().item() < 1e-4


@pytest.mark.parametrize("edge_tokens", [False, True])
def test_mixed_sizes_padding_repeats_and_edge_order(edge_tokens):
    spec = GraphSpec(family="reference", n_min=3, n_max=10, target="any")  # repeats and isolated vertices
    batch = sample(spec, 600, 11)
    wide = GraphBatch(torch.nn.functional.pad(batch.edges, (0, 0, 0, 5)), batch.num_vertices,
                      batch.target, batch.label, batch.path_length, batch.max_vertices)
    generator = torch.Generator().manual_seed(3)
    order = torch.stack([torch.randperm(wide.edges.shape[1], generator=generator) for _ in range(len(wide))])
    shuffled = GraphBatch(torch.gather(wide.edges, 1, order[..., None].expand(-1, -1, 2)), batch.num_vertices,
                          batch.target, batch.label, batch.path_length, batch.max_vertices)
    model = build_bfs_transformer(10, edge_tokens=edge_tokens)
    with torch.no_grad():
        out, out_wide, out_shuffled = model(batch), model(wide), model(shuffled)
    assert len(set(batch.num_vertices.tolist())) > 5
    assert (out - networkx_distances(batch)).pow(2).mean().item() < 1e-6
    assert torch.allclose(out, out_wide, atol=1e-5) and torch.allclose(out, out_shuffled, atol=1e-5)
    # also each graph alone gives the same answer as inside the mixed batch
    with torch.no_grad():
        alone = torch.cat([model(batch[i]) for i in range(20)])
    assert torch.allclose(alone, out[:20], atol=1e-5)


def test_wrong_max_vertices_is_refused():
    batch = sample(GraphSpec(n_min=3, n_max=6), 4, 0)
    with pytest.raises(ValueError, match="max_vertices"):
        build_bfs_transformer(8)(batch)
    for bad in (1, 65, 8.0, True):
        with pytest.raises(ValueError, match="n must be an integer"):
            build_bfs_transformer(bad)


@pytest.mark.parametrize("edge_tokens", [False, True])
def test_size_table_and_named_parameters(edge_tokens):
    for n in (2, 5, 8, 15, 32):
        model, size = build_bfs_transformer(n, edge_tokens=edge_tokens), model_size(n, edge_tokens)
        assert model.num_parameters() == size["parameters"]
        assert len(model.blocks) == size["layers"] == n + 1 + edge_tokens
        assert model.basis.width == size["width"] == (5 if edge_tokens else 3) * n + 5
        names = [name for name, _ in model.named_parameters()]
        front = "front.edge_a" if edge_tokens else "front.neighbour"
        assert "blocks.0.attn.W_Q" in names and front in names and "readout.weight" in names
        assert all(isinstance(p, torch.nn.Parameter) for p in model.parameters())


def test_stream_reads_back_as_bfs():
    """After block l the count section holds min(dist, l) on every vertex token."""
    batch = sample(GraphSpec(n_min=3, n_max=7, target="any"), 200, 5)
    model = build_bfs_transformer(7)
    from data_gen.bfs import adjacency_bitsets, distances_from
    dist = torch.as_tensor(distances_from(adjacency_bitsets(batch.edges.numpy(), 7), 1, 7)[:, 1:])
    for layer in (0, 2, 7):
        with torch.no_grad():
            sections = model.basis.read(model.stream(batch, upto=layer)[:, :7])
        assert torch.allclose(sections["count"], dist.clamp(max=layer).float(), atol=1e-4)
        assert torch.allclose(sections["reach"], ((dist <= layer) & (dist < 7)).float(), atol=1e-4)
        assert sections["scratch"].abs().max() < 1e-6


def test_perturbed_weights_break_and_reset_restores():
    model = build_bfs_transformer(6)
    batch = sample(GraphSpec(n_min=3, n_max=6, target="any"), 300, 9)
    with torch.no_grad():
        model.blocks[2].attn.W_Q.zero_()
    assert mse(model, batch) > 1e-2  # the test can fail: the weights matter
    model.reset_weights()
    assert mse(model, batch) < 1e-6


def test_edge_tokens_gather_block_writes_the_neighbour_sets():
    """Block 0 of the edge-token model leaves exactly the lookup front end's neighbour bits."""
    batch = sample(GraphSpec(family="reference", n_min=3, n_max=9, target="any"), 300, 4)
    lookup, edge = build_bfs_transformer(9), build_bfs_transformer(9, edge_tokens=True)
    with torch.no_grad():
        want = lookup.basis.read(lookup.stream(batch, upto=0)[:, :9])["neighbours"]
        got = edge.basis.read(edge.stream(batch, upto=1)[:, :9])
    assert torch.allclose(got["neighbours"], want, atol=1e-4) and want.sum() > 0
    assert got["gather"].abs().max() < 1e-6
