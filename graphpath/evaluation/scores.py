"""Scores for one evaluation set, and confidence intervals.

Shapes
    B  graphs in the set
    L  labels on the confusion axes: 1..max_vertices (max_vertices = unreachable)

`score(prediction, label, max_vertices)` turns a model's float distances and the true labels into
the numbers eval.json stores: MSE, accuracy after rounding, per-label MSE and count, and
confusion counts from `confusion_matrix` — the one confusion routine (eval.json and the training
figures): true label x prediction rounded to the nearest integer (halves up) and clipped to the
label range 1..max_vertices.
`mean_ci(values)` is a t-distribution confidence interval for a mean, used where only per-seed
summaries exist; `ci_summary` writes it as the studies' JSON record. One set's MSE interval is on
log(MSE), over its graphs (graphpath.evaluation.statistics.mean_log).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from graphpath.evaluation.statistics import mean_log


def _beta_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return result


def incomplete_beta(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b), 0 <= x <= 1."""
    if x <= 0.0 or x >= 1.0:
        return float(x >= 1.0)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


@functools.lru_cache(maxsize=256)
def t_quantile(p: float, df: int) -> float:
    """The p-quantile (p in [0.5, 1)) of Student's t with `df` degrees of freedom, by bisection on
    the CDF 1 - I_{df/(df+t^2)}(df/2, 1/2) / 2 (no scipy needed at run time)."""
    if not 0.5 <= p < 1.0 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 <= p < 1 and df >= 1, got p={p}, df={df}")
    cdf = lambda t: 1.0 - 0.5 * incomplete_beta(df / 2, 0.5, df / (df + t * t))  # noqa: E731
    low, high = 0.0, 1.0
    while cdf(high) < p:
        low, high = high, high * 2
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < p else (low, middle)
        if high - low < 1e-13 * max(1.0, high):
            break
    return (low + high) / 2


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float | None, float | None]:
    """(mean, low, high) of a t-interval for the mean of `values`; low/high are None with < 2
    values (one run gives no spread to estimate)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = float(values.mean())
    if values.size < 2:
        return mean, None, None
    sem = float(values.std(ddof=1)) / math.sqrt(values.size)
    half = t_quantile(0.5 + confidence / 2, values.size - 1) * sem
    return mean, mean - half, mean + half


def ci_summary(values, confidence: float = 0.95) -> dict:
    """`mean_ci` as a JSON record over the finite values (None and NaN are dropped): {"mean",
    "ci95": [low, high] or None, "n"}; mean None when no value is finite. The studies' form."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"mean": None, "ci95": None, "n": 0}
    mean, low, high = mean_ci(finite, confidence)
    return {"mean": mean, "ci95": None if low is None else [low, high], "n": len(finite)}


def rounded(prediction: np.ndarray) -> np.ndarray:
    """Nearest integer, halves up: floor(x + 0.5), so 2.5 -> 3 and -0.5 -> 0 (np.rint would send
    2.5 to 2)."""
    return np.floor(np.asarray(prediction, dtype=np.float64) + 0.5).astype(np.int64)


def confusion_matrix(prediction, label, max_vertices: int, lowest: int = 1) -> np.ndarray:
    """(L, L) int64 counts[true label - lowest, predicted label - lowest], L = max_vertices - lowest + 1.

    The label range is lowest..max_vertices: 1..max_vertices for distances (eval.json), 0..max_vertices
    for tasks whose labels start at 0 (data_gen.tasks). The predicted label is the prediction
    rounded to the nearest integer (`rounded`: halves up), then clipped to that range; NaN counts as
    below the range (-> lowest), +inf as above it (-> max_vertices). label (B,) int in the range.
    """
    prediction = np.asarray(prediction, dtype=np.float64).ravel()
    label = np.asarray(label, dtype=np.int64).ravel()
    if label.size and (label.min() < lowest or label.max() > max_vertices):
        raise ValueError(f"labels must lie in [{lowest}, {max_vertices}], got [{label.min()}, {label.max()}]")
    guess = rounded(np.nan_to_num(prediction, nan=lowest - 2.0, posinf=max_vertices + 1, neginf=lowest - 2.0))
    clipped = np.clip(guess, lowest, max_vertices)
    size = max_vertices - lowest + 1
    counts = np.zeros((size, size), dtype=np.int64)  # (L true, L predicted)
    np.add.at(counts, (label - lowest, clipped - lowest), 1)
    return counts


def score(prediction, label, max_vertices: int, confidence: float = 0.95) -> dict:
    """Every number eval.json stores for one set.

    prediction (B,) float, label (B,) int in 1..max_vertices. Accuracy compares the rounded
    prediction with the label as is; the confusion matrix clips the rounded prediction into
    1..max_vertices first, so its diagonal can exceed `accuracy * count` (a prediction of 16.2
    for an unreachable 15 counts on the diagonal there, but not as accurate).
    """
    prediction = np.asarray(prediction, dtype=np.float64).ravel()
    label = np.asarray(label, dtype=np.int64).ravel()
    if prediction.shape != label.shape:
        raise ValueError(f"prediction {prediction.shape} and label {label.shape} differ in shape")
    if label.size == 0:
        raise ValueError("cannot score an empty set")
    if label.min() < 1 or label.max() > max_vertices:
        raise ValueError(f"labels must lie in [1, {max_vertices}], got [{label.min()}, {label.max()}]")
    squared = (prediction - label) ** 2  # (B,)
    estimate = mean_log(squared, confidence)  # an interval on log(MSE): never below 0
    mse, low, high = estimate.value, estimate.low, estimate.high
    guess = rounded(np.nan_to_num(prediction, nan=-1.0, posinf=max_vertices + 1, neginf=-1.0))
    labels = np.arange(1, max_vertices + 1)  # (L,)
    counts = np.bincount(label, minlength=max_vertices + 1)[1:]  # (L,)
    sums = np.bincount(label, weights=squared, minlength=max_vertices + 1)[1:]
    confusion = confusion_matrix(prediction, label, max_vertices)  # (L true, L predicted)
    return {
        "count": int(label.size),
        "mse": mse,
        "mse_ci95": None if low is None else [low, high],
        "accuracy": float((guess == label).mean()),
        "mean_label": float(label.mean()),
        "label_variance": float(label.var()),
        "per_label": {str(int(v)): {"count": int(c), "mse": float(s / c)}
                      for v, c, s in zip(labels, counts, sums) if c > 0},
        "confusion": {"labels": labels.tolist(), "counts": confusion.tolist()},
    }


def cell_scores(prediction, label, rows, cols, row_values, col_values) -> dict:
    """MSE, accuracy and count per (row, col) cell, as nested lists [row][col] (None if empty).

    rows, cols (B,) int: each graph's cell coordinates (e.g. n and t).
    """
    prediction = np.asarray(prediction, dtype=np.float64)
    label = np.asarray(label, dtype=np.int64)
    row_values, col_values = np.asarray(row_values), np.asarray(col_values)
    if not (np.isin(rows, row_values).all() and np.isin(cols, col_values).all()):
        raise ValueError("every graph's (row, col) must be one of the requested cells")
    shape = (len(row_values), len(col_values))
    # row_values and col_values are sorted ascending (grid axes), so searchsorted finds each index
    flat = np.searchsorted(row_values, rows) * shape[1] + np.searchsorted(col_values, cols)
    size = shape[0] * shape[1]
    count = np.bincount(flat, minlength=size)
    sq = np.bincount(flat, weights=(prediction - label) ** 2, minlength=size)
    hit = np.bincount(flat, weights=(rounded(np.nan_to_num(prediction, nan=-1.0)) == label), minlength=size)

    def grid(values):
        return [[None if count[i * shape[1] + j] == 0 else float(values[i * shape[1] + j])
                 for j in range(shape[1])] for i in range(shape[0])]

    with np.errstate(invalid="ignore", divide="ignore"):
        return {"mse": grid(sq / count), "accuracy": grid(hit / count),
                "count": [[int(count[i * shape[1] + j]) for j in range(shape[1])] for i in range(shape[0])]}
