"""The learned transformer: masks, invariances, the per-head block layout, hooks, dtypes, config."""
import math

import pytest
import torch
import torch.nn.functional as F

from data_gen import GraphBatch, sample, study_presets
from graphpath.core.model import ConfigError, GraphTransformer, ModelConfig, TransformerBlock, build_model, hooks

SPECS = study_presets(8, 5, 5, 4, 3)


def tiny_model(seed=0, **changes) -> GraphTransformer:
    torch.manual_seed(seed)
    values = dict(max_vertices=8, d_model=32, n_layers=2, n_heads=2)
    values.update(changes)
    return build_model(ModelConfig(**values)).eval()


def batch(size=64, seed=0, name="test-any-large") -> GraphBatch:
    return sample(SPECS[name], size, seed)


@pytest.mark.parametrize("norm", ["pre", "post", "none"])
def test_padding_rows_never_change_the_output(norm):
    model, data = tiny_model(norm=norm), batch()
    padded = GraphBatch(edges=F.pad(data.edges, (0, 0, 0, 5)), num_vertices=data.num_vertices, target=data.target,
                        label=data.label, path_length=data.path_length, max_vertices=data.max_vertices)
    with torch.no_grad():
        # run the padded batch untrimmed, so the padding tokens really go through attention
        direct = model._forward(padded)
        assert direct.shape == (len(data),)
        torch.testing.assert_close(direct, model(data), rtol=1e-5, atol=1e-5)


def test_edge_order_does_not_matter():
    model, data = tiny_model(), batch(seed=1)
    generator = torch.Generator().manual_seed(0)
    edges = data.edges.clone()
    for row, count in enumerate(data.num_edges.tolist()):
        edges[row, :count] = edges[row, torch.randperm(count, generator=generator)]
    assert not torch.equal(edges, data.edges)
    shuffled = GraphBatch(edges=edges, num_vertices=data.num_vertices, target=data.target, label=data.label,
                          path_length=data.path_length, max_vertices=data.max_vertices)
    with torch.no_grad():
        torch.testing.assert_close(model(shuffled), model(data), rtol=1e-5, atol=1e-5)


def test_buckets_give_the_same_distances_in_the_same_order():
    model, data = tiny_model(), batch(200, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(model(data, buckets=4), model(data), rtol=1e-5, atol=1e-5)


def test_the_target_token_matters():
    model, data = tiny_model(), batch(seed=3)
    moved = GraphBatch(edges=data.edges, num_vertices=data.num_vertices, target=(data.target % 8) + 1,
                       label=data.label, path_length=data.path_length, max_vertices=data.max_vertices)
    with torch.no_grad():
        assert not torch.allclose(model(moved), model(data))


def test_block_matches_the_attention_formula_written_out():
    """The per-head layout the hand-built model relies on, against a plain re-derivation."""
    torch.manual_seed(0)
    D, H, E, Fh, B, T = 12, 3, 5, 7, 4, 6  # d_head independent of d_model / n_heads
    block = TransformerBlock(D, H, E, Fh, norm="none", attn_bias=True)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_()
    x = torch.randn(B, T, D)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 4:] = False
    mask[2, 1:] = False
    a = block.attn
    q = torch.einsum("btd,hde->bhte", x, a.W_Q) + a.b_Q[None, :, None]
    k = torch.einsum("btd,hde->bhte", x, a.W_K) + a.b_K[None, :, None]
    v = torch.einsum("btd,hde->bhte", x, a.W_V) + a.b_V[None, :, None]
    scores = torch.einsum("bhqe,bhke->bhqk", q, k) / math.sqrt(E)
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    z = torch.einsum("bhqk,bhke->bhqe", scores.softmax(-1), v)
    attn = torch.einsum("bhte,hed->btd", z, a.W_O) + a.b_O
    mid = x + attn
    expected = mid + block.mlp.fc_out(torch.relu(block.mlp.fc_in(mid)))
    with torch.no_grad():
        torch.testing.assert_close(block(x, mask), expected, rtol=1e-4, atol=1e-4)
        with hooks(block, {"attn.hook_pattern": lambda m, i, o: None}):  # explicit-softmax path
            torch.testing.assert_close(block(x, mask), expected, rtol=1e-4, atol=1e-4)


def test_hooks_read_and_patch_activations():
    model, data = tiny_model(), batch(16, seed=4)
    names = model.hook_names()
    for name in ("hook_embed", "blocks.0.attn.hook_pattern", "blocks.1.hook_resid_post", "blocks.0.mlp.hook_post",
                 "hook_final"):
        assert name in names
    out, cache = model.run_with_cache(data)
    tokens = 1 + data.trim().edges.shape[1]
    pattern = cache["blocks.0.attn.hook_pattern"]
    assert pattern.shape == (16, 2, tokens, tokens)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(16, 2, tokens))
    _, real = model.tokens(data.trim())
    assert torch.all(pattern.masked_select(~real[:, None, None, :]) == 0)  # padding keys get no weight
    assert cache["blocks.1.hook_resid_post"].shape == (16, tokens, 32)
    torch.testing.assert_close(out, model(data))
    with torch.no_grad(), hooks(model, {"blocks.1.hook_resid_post": lambda m, i, o: torch.zeros_like(o)}):
        patched = model(data)
    assert torch.allclose(patched, patched[0].expand_as(patched))  # the input no longer reaches the read-out
    with pytest.raises(KeyError):
        model.run_with_cache(data, names=["blocks.9.hook_resid_post"])


def test_hook_names_never_share_a_namespace_with_parameters():
    """Every hook point's own name starts with `hook_`; no parameter or submodule path starts with one."""
    model = build_model(ModelConfig(max_vertices=6, d_model=16, n_layers=2, n_heads=2, attn_bias=True))
    names = model.hook_names()
    per_block = 12  # resid_pre/mid/post, attn q/k/v/pattern/z, attn_out, mlp pre/post, mlp_out
    assert len(names) == 2 + 2 * per_block
    assert all(name.rsplit(".", 1)[-1].startswith("hook_") for name in names)
    for name, _ in model.named_parameters():
        assert not any(part.startswith("hook_") for part in name.split(".")), name
    others = {name for name, module in model.named_modules() if name and name not in names}
    assert not any(part.startswith("hook_") for name in others for part in name.split("."))
    assert "blocks.0.hook_resid_post" in names and "blocks.0.attn.hook_pattern" in names
    assert not hasattr(model.blocks[0].attn, "pattern") and not hasattr(model.blocks[0], "resid_post")


def test_output_is_float32_under_bf16_autocast():
    model, data = tiny_model(), batch(16)
    seen = {}
    with torch.autocast("cpu", dtype=torch.bfloat16), \
            hooks(model, {"blocks.0.mlp.hook_pre": lambda m, i, o: seen.update(dtype=o.dtype)}):
        out = model(data)
    assert seen["dtype"] == torch.bfloat16  # the blocks really ran in bf16
    assert out.dtype == torch.float32


def test_study_architecture_has_the_study_parameter_count():
    model = build_model(ModelConfig(max_vertices=15, n_layers=11, n_heads=2, d_model=64, norm="post", attn_bias=True))
    assert model.num_parameters() == 550_433  # the study's count, docs/study.md (The learned model)


@pytest.mark.parametrize("values, fragment", [
    (dict(d_model=63), "even"),
    (dict(d_model=64, n_heads=3), "divisible"),
    (dict(norm="layer"), "norm"),
    (dict(n_layers=0), "n_layers"),
    (dict(d_ff=-1), "d_ff"),
    (dict(max_vertices=1), "max_vertices"),
])
def test_config_rejects_impossible_models(values, fragment):
    with pytest.raises(ConfigError, match=fragment):
        ModelConfig(**{"max_vertices": 8, **values})


def test_config_defaults_and_round_trip():
    config = ModelConfig(max_vertices=8, d_model=64, n_heads=2)
    assert (config.d_head, config.d_ff) == (32, 256)
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert ModelConfig(max_vertices=8, d_model=64, n_heads=3, d_head=7).d_head == 7
    with pytest.raises(ConfigError, match="unknown"):
        ModelConfig.from_dict({**config.to_dict(), "dropout": 0.1})
