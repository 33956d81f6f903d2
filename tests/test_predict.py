"""eval_core.predict, the one inference loop: order kept, buckets and autocast passed through,
training mode restored; training's held-out score is the plain formula over its predictions."""
from contextlib import contextmanager

import numpy as np
import torch

from data_gen import sample, study_presets
from graphpath.evaluation.predict import predict
from graphpath.core.model import ModelConfig, build_model
from graphpath.training.stage import Runtime, score_heldout

SPEC = study_presets(6, 4, 4, 3, 2)["test-any-large"]


def model_and_data():
    torch.manual_seed(0)
    return build_model(ModelConfig(max_vertices=6, d_model=16, n_layers=1)), sample(SPEC, 300, 3)


def test_predict_keeps_the_batch_order_with_and_without_buckets():
    model, data = model_and_data()
    model.train()
    with torch.no_grad():
        expected = model.eval()(data).double().numpy()  # one unbucketed pass in the batch's order
    model.train()
    plain = predict(model, data, chunk=64)
    bucketed = predict(model, data, chunk=128, buckets=4)
    assert model.training  # restored
    np.testing.assert_allclose(plain, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bucketed, expected, rtol=1e-5, atol=1e-5)


def test_predict_runs_every_chunk_under_the_given_autocast():
    model, data = model_and_data()
    entered = []

    @contextmanager
    def autocast():
        entered.append(torch.is_grad_enabled())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield

    out = predict(model, data, chunk=100, autocast=autocast)
    assert entered == [False, False, False]  # three chunks of 100, each under no_grad
    assert out.dtype == np.float64
    full = predict(model, data)
    assert not np.array_equal(out, full) and np.abs(out - full).max() < 0.5  # bf16 really ran


def test_score_heldout_is_the_mse_formula_over_predict():
    model, data = model_and_data()
    mse, per_label = score_heldout(model, data, 2, Runtime(torch.device("cpu")))
    pred, label = predict(model, data, buckets=2), data.label.numpy()
    assert mse == np.mean((pred - label) ** 2)
    expected = {str(k): float(np.mean((pred[label == k] - k) ** 2)) for k in np.unique(label)}
    assert per_label.keys() == expected.keys()
    assert all(abs(per_label[k] - expected[k]) <= 1e-12 * expected[k] for k in expected)
