"""Effective data transferred (Hernandez et al. 2021, "Scaling Laws for Transfer"): the analysis.

Definitions, for one model size N:
    L_scratch(D)   best held-out loss on task B of a model trained from scratch on D examples of B
    L_ft(D_F)      best held-out loss of the model pre-trained on A, then fine-tuned on D_F of B
    D_E            the from-scratch data that reaches L_ft(D_F): the from-scratch curve is made
                   monotone (running minimum of the loss over increasing D, so more data never
                   looks worse) and log D is interpolated linearly in the loss. A loss below the
                   best scratch loss (or above the worst) is extrapolated along the last (first)
                   segment in log D and flagged "extrapolated-high" ("extrapolated-low"), at most
                   10x beyond the ladder's ends ("out-of-range", D_E = None, beyond); a flat
                   curve that cannot be extrapolated gives D_E = None.
    D_T = D_E - D_F   data transferred. Kept when negative (pre-training hurt: the paper's
                   "ossification"), flagged `ossified`.
Fit: D_T = k * D_F^alpha * N^beta, least squares in log space over the **low-data regime**, by this
rule: D_T > 0, D_E interpolated (not extrapolated), and D_F no larger than `low_data_max` (default:
the median of the D_F ladder, i.e. the lower half). Bootstrap CIs resample the selected points
with replacement (resamples that cannot identify all three exponents are skipped and counted).
The paper's text -> Python values are in `PAPER` for comparison.
"""
from __future__ import annotations

import math

import numpy as np

PAPER = {"k": 1.9e4, "alpha": 0.18, "beta": 0.38, "source": "Hernandez et al. 2021, text -> Python"}


def monotone_curve(data_sizes, losses) -> tuple[np.ndarray, np.ndarray]:
    """(D ascending, running-minimum loss) with duplicate D values averaged first."""
    d = np.asarray(data_sizes, dtype=float)
    loss = np.asarray(losses, dtype=float)
    keep = np.isfinite(loss) & (d > 0)
    d, loss = d[keep], loss[keep]
    unique = np.unique(d)
    mean = np.array([loss[d == u].mean() for u in unique])
    return unique, np.minimum.accumulate(mean)


def effective_data(data_sizes, losses, target_loss: float,
                   max_extrapolation: float = 10.0) -> tuple[float | None, str]:
    """(D_E, flag) — the from-scratch data reaching `target_loss`; flag "interpolated",
    "extrapolated-high" (beyond the largest D), "extrapolated-low" (below the smallest D),
    "out-of-range" (D_E None: it would lie more than `max_extrapolation` times beyond the ladder's
    ends) or "undefined" (D_E None: fewer than two distinct points or a flat end segment)."""
    d, loss = monotone_curve(data_sizes, losses)
    if len(d) < 2 or not math.isfinite(target_loss):
        return None, "undefined"
    log_d = np.log(d)
    if target_loss < loss[-1]:
        (x0, x1), (y0, y1), flag = log_d[-2:], loss[-2:], "extrapolated-high"
    elif target_loss > loss[0]:
        (x0, x1), (y0, y1), flag = log_d[:2], loss[:2], "extrapolated-low"
    else:
        # first index where the (non-increasing) curve reaches the target
        i = int(np.argmax(loss <= target_loss))
        if i == 0:
            return float(d[0]), "interpolated"
        x0, x1, y0, y1 = log_d[i - 1], log_d[i], loss[i - 1], loss[i]
        flag = "interpolated"
    if y1 == y0:
        return (None, "undefined") if flag != "interpolated" else (float(math.exp(x0)), flag)
    x = x0 + (target_loss - y0) * (x1 - x0) / (y1 - y0)
    if not (log_d[0] - math.log(max_extrapolation) <= x <= log_d[-1] + math.log(max_extrapolation)):
        return None, "out-of-range"
    return float(math.exp(x)), flag


def transfer_points(scratch: dict, finetuned: dict) -> list[dict]:
    """Rows {N, D_F, loss_ft, D_E, D_T, flag, ossified, multiplier} for every fine-tuned point.

    `scratch` = {N: [(D, loss), ...]}, `finetuned` = {N: [(D_F, loss), ...]}."""
    rows = []
    for n, points in finetuned.items():
        curve = scratch[n]
        for d_f, loss in points:
            d_e, flag = effective_data([p[0] for p in curve], [p[1] for p in curve], loss)
            d_t = None if d_e is None else d_e - d_f
            rows.append({"N": n, "D_F": d_f, "loss_ft": loss, "D_E": d_e, "D_T": d_t, "flag": flag,
                         "ossified": d_t is not None and d_t < 0,
                         "multiplier": None if d_t is None else (d_f + d_t) / d_f})
    return rows


def select_low_data(rows: list[dict], low_data_max: float | None = None) -> list[dict]:
    """The rows the power law is fitted to (the rule in the module docstring)."""
    if low_data_max is None and rows:
        low_data_max = float(np.median(sorted({r["D_F"] for r in rows})))
    return [r for r in rows if r["D_T"] is not None and r["D_T"] > 0 and r["flag"] == "interpolated"
            and r["D_F"] <= low_data_max]


def _solve(d_f, n, d_t) -> tuple[float, float, float] | None:
    design = np.column_stack([np.ones(len(d_f)), np.log(d_f), np.log(n)])
    if np.linalg.matrix_rank(design) < 3:
        return None
    coef, *_ = np.linalg.lstsq(design, np.log(d_t), rcond=None)
    return float(math.exp(coef[0])), float(coef[1]), float(coef[2])


def fit_transfer(rows: list[dict], bootstrap: int = 1000, seed: int = 0, low_data_max: float | None = None) -> dict:
    """Fit D_T = k D_F^alpha N^beta to the low-data rows; estimates with 95% bootstrap CIs."""
    chosen = select_low_data(rows, low_data_max)
    out = {"rule": "D_T > 0, D_E interpolated, D_F <= low_data_max (default: median of the D_F ladder)",
           "low_data_max": low_data_max if low_data_max is not None else
           (float(np.median(sorted({r['D_F'] for r in rows}))) if rows else None),
           "points": len(chosen), "paper": PAPER}
    if not chosen:
        return {**out, "fit": None, "reason": "no row in the low-data regime"}
    d_f = np.array([r["D_F"] for r in chosen], dtype=float)
    n = np.array([r["N"] for r in chosen], dtype=float)
    d_t = np.array([r["D_T"] for r in chosen], dtype=float)
    point = _solve(d_f, n, d_t)
    if point is None:
        return {**out, "fit": None, "reason": "the selected rows do not vary both D_F and N"}
    rng = np.random.default_rng(seed)
    draws, skipped = [], 0
    for _ in range(bootstrap):
        pick = rng.integers(0, len(chosen), len(chosen))
        solved = _solve(d_f[pick], n[pick], d_t[pick])
        if solved is None:
            skipped += 1
        else:
            draws.append(solved)
    fit = {}
    for i, name in enumerate(("k", "alpha", "beta")):
        values = np.array([draw[i] for draw in draws])
        ci = [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if len(values) else None
        fit[name] = {"value": point[i], "ci95": ci}
    return {**out, "fit": fit, "bootstrap": {"draws": len(draws), "skipped": skipped, "seed": seed}}
