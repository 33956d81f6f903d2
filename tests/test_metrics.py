"""graphpath.evaluation.scores on outputs whose scores are known by hand or by formula."""
from __future__ import annotations

import math

import numpy as np
import pytest

from graphpath.evaluation.scores import cell_scores, confusion_matrix, mean_ci, rounded, score, t_quantile

MAX_VERTICES = 8


def labels(seed: int = 0, size: int = 500) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(1, MAX_VERTICES + 1, size=size)


def test_oracle_scores_zero_error_and_full_accuracy():
    label = labels()
    block = score(label.astype(np.float64), label, MAX_VERTICES)
    assert block["mse"] == 0.0 and block["accuracy"] == 1.0
    assert block["mse_ci95"] == [0.0, 0.0]
    counts = np.array(block["confusion"]["counts"])
    assert np.array_equal(np.diag(counts), np.bincount(label, minlength=MAX_VERTICES + 1)[1:])
    assert counts.sum() == np.trace(counts) == len(label)
    assert all(v["mse"] == 0.0 for v in block["per_label"].values())


@pytest.mark.parametrize("constant", [0.0, 2.5, 7.0])
def test_constant_predictor_scores_the_mean_squared_gap(constant):
    label = labels(1)
    block = score(np.full(len(label), constant), label, MAX_VERTICES)
    assert block["mse"] == pytest.approx(np.mean((label - constant) ** 2), rel=1e-12)
    for key, entry in block["per_label"].items():
        assert entry["count"] == int((label == int(key)).sum())
        assert entry["mse"] == pytest.approx((int(key) - constant) ** 2)


def test_mean_predictor_scores_the_label_variance():
    label = labels(2)
    block = score(np.full(len(label), label.mean()), label, MAX_VERTICES)
    assert block["mse"] == pytest.approx(label.var(), rel=1e-12)
    assert block["label_variance"] == pytest.approx(label.var(), rel=1e-12)


def test_rounding_clipping_and_confusion_by_hand():
    # predictions round to 1, 0, 3 (2.5 rounds up), 20 and 8; the confusion clips 0 -> 1, 20 -> 8
    label = np.array([1, 1, 2, 8, 8])
    prediction = np.array([1.4, 0.2, 2.5, 20.0, 7.6])
    block = score(prediction, label, MAX_VERTICES)
    assert block["accuracy"] == pytest.approx(2 / 5)  # 1.4 -> 1 and 7.6 -> 8
    counts = np.array(block["confusion"]["counts"])
    expected = np.zeros((MAX_VERTICES, MAX_VERTICES), dtype=int)
    expected[0, 0] = 2  # 1.4 and 0.2 (clipped up)
    expected[1, 2] = 1  # 2.5 -> 3
    expected[7, 7] = 2  # 20 clipped down, and 7.6
    assert np.array_equal(counts, expected)
    assert block["per_label"]["8"] == {"count": 2, "mse": pytest.approx((12.0 ** 2 + 0.4 ** 2) / 2)}
    assert "3" not in block["per_label"]
    assert rounded(np.array([-0.5, 0.49, 1.5, 2.5])).tolist() == [0, 0, 2, 3]


def test_confusion_matrix_by_hand():
    """Nearest integer with halves up, then clipped to the label range 1..max_vertices."""
    label = np.array([1, 1, 2, 8, 8, 3, 3, 4, 5])
    prediction = np.array([0.6, 1.4, 2.5, 9.7, -3.0, 2.49, np.nan, np.inf, 4.5])
    expected = np.array([  # rows: true label 1..8; columns: predicted label 1..8
        [2, 0, 0, 0, 0, 0, 0, 0],  # 0.6 -> 1, 1.4 -> 1
        [0, 0, 1, 0, 0, 0, 0, 0],  # 2.5 -> 3 (np.rint would give 2)
        [1, 1, 0, 0, 0, 0, 0, 0],  # 2.49 -> 2, NaN -> below the range -> 1
        [0, 0, 0, 0, 0, 0, 0, 1],  # inf -> above the range -> 8
        [0, 0, 0, 0, 1, 0, 0, 0],  # 4.5 -> 5
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
        [1, 0, 0, 0, 0, 0, 0, 1],  # 9.7 -> 10 -> 8, -3.0 -> -3 -> 1
    ])
    assert np.array_equal(confusion_matrix(prediction, label, 8), expected)
    finite = ~np.isnan(prediction) & np.isfinite(prediction)
    assert np.array_equal(np.array(score(prediction[finite], label[finite], 8)["confusion"]["counts"]),
                          confusion_matrix(prediction[finite], label[finite], 8))  # eval.json uses the same routine
    with pytest.raises(ValueError, match="labels must lie"):
        confusion_matrix(np.zeros(1), np.array([0]), 8)
    # tasks whose labels start at 0 (data_gen.tasks): the range is 0..max_vertices
    zero = confusion_matrix(np.array([-0.4, 0.5, np.nan, 2.2]), np.array([0, 0, 1, 3]), 3, lowest=0)
    assert zero.tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]]


def test_score_rejects_labels_outside_the_vocabulary():
    with pytest.raises(ValueError, match="labels must lie"):
        score(np.zeros(2), np.array([1, 9]), MAX_VERTICES)


def test_mean_ci_on_a_known_sample():
    # 1..5: mean 3, sd sqrt(2.5), t(0.975, 4) = 2.7764 (printed t tables)
    mean, low, high = mean_ci([1, 2, 3, 4, 5])
    half = 2.7764 * math.sqrt(2.5) / math.sqrt(5)
    assert mean == 3.0
    assert low == pytest.approx(3 - half, abs=1e-4) and high == pytest.approx(3 + half, abs=1e-4)
    # two values 0 and 1: t(0.975, 1) = 12.706, sem 0.5
    assert mean_ci([0.0, 1.0])[2] == pytest.approx(0.5 + 12.706 * 0.5, abs=1e-3)


def test_t_quantiles_match_printed_tables_and_closed_forms():
    # printed two-sided 95% critical values
    for df, value in ((1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (9, 2.262), (29, 2.045), (120, 1.980)):
        assert t_quantile(0.975, df) == pytest.approx(value, abs=1e-3)
    # closed forms: df 1 is Cauchy, df 2 is t = (2p - 1) / sqrt(2p(1 - p))
    for p in (0.6, 0.9, 0.99):
        assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
        assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)
    assert 1.959964 < t_quantile(0.975, 10_000) < 1.9603  # just above the normal limit 1.959964
    from scipy import stats  # a run-time dependency: an independent t quantile
    for df in (1, 3, 7, 30, 500):
        for p in (0.55, 0.975, 0.999):
            assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-8)


def test_ci_summary_drops_missing_values_and_matches_scipy():
    from scipy import stats

    from graphpath.evaluation.scores import ci_summary

    record = ci_summary([1.0, None, 2.0, float("nan"), 4.0])
    sample = np.array([1.0, 2.0, 4.0])
    half = stats.t.ppf(0.975, 2) * sample.std(ddof=1) / math.sqrt(3)
    assert record["n"] == 3 and record["mean"] == pytest.approx(7 / 3)
    assert record["ci95"] == pytest.approx([7 / 3 - half, 7 / 3 + half], rel=1e-8)
    assert ci_summary([5.0]) == {"mean": 5.0, "ci95": None, "n": 1}
    assert ci_summary([None, float("inf")]) == {"mean": None, "ci95": None, "n": 0}


def test_mean_ci_with_one_value_has_no_interval():
    assert mean_ci([0.7]) == (0.7, None, None)
    with pytest.raises(ValueError):
        mean_ci([])


def test_mean_ci_covers_the_true_mean_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    samples = rng.normal(10.0, 3.0, size=(4000, 4))
    hits = 0
    for row in samples:
        _, low, high = mean_ci(row)
        hits += low <= 10.0 <= high
    assert abs(hits / len(samples) - 0.95) < 0.015  # binomial sd ~ 0.0034


def test_cell_scores_by_hand():
    prediction = np.array([2.0, 3.0, 1.0, 4.0])
    label = np.array([2, 2, 1, 1])
    rows = np.array([3, 3, 4, 4])
    cols = np.array([2, 2, 2, 3])
    cells = cell_scores(prediction, label, rows, cols, [3, 4], [2, 3])
    assert cells["count"] == [[2, 0], [1, 1]]
    assert cells["mse"] == [[0.5, None], [0.0, 9.0]]
    assert cells["accuracy"] == [[0.5, None], [1.0, 0.0]]
    with pytest.raises(ValueError, match="requested cells"):
        cell_scores(prediction, label, rows, cols, [3], [2, 3])
