"""Effective data transferred (Hernandez et al. 2021, "Scaling Laws for Transfer"): the analysis.

Definitions, for one model size N (non-embedding parameters):
    L_scratch(D)   test loss on task B of a model trained from scratch on D examples of B
    L_ft(D_F)      test loss of the model pre-trained on A, then fine-tuned on D_F examples of B
    D_E            the from-scratch data that reaches L_ft(D_F) (Hernandez et al., section 1 and
                   figure 1: effective data): the from-scratch curve is made monotone (running minimum over
                   increasing D, so more data never looks worse) and log D is interpolated
                   linearly in log L between the two rungs that bracket the target (exact for a
                   power law L = c D^-a). A loss below the best scratch loss (or above the worst)
                   is extrapolated along the last (first) segment and flagged "extrapolated-high"
                   ("extrapolated-low"), at most 10x beyond the ladder ("out-of-range", D_E None).
    D_T = D_E - D_F    effective data transferred (section 1, figure 1); kept when negative
                   (pre-training hurt: what the paper calls ossification).
    (D_F + D_T) / D_F  the effective data multiplier (the paper's "pre-training effectively
                   multiplies the fine-tuning dataset size").

Fit (section 1, equation 1.1): D_T = k * D_F^alpha * N^beta, least squares on log D_T over the
**low-data regime**: D_T > 0, D_E interpolated, D_F no larger than `low_data_max` (default: the
median of the D_F ladder). The points are computed on **seed-averaged curves** (geometric mean of
the test loss over seeds, per N, arm and D), so seed noise enters D_E once, averaged, and not
through the nonlinear interpolation and the D_T > 0 selection of every seed apart.

Intervals: a bootstrap over seeds (scipy.stats.bootstrap): a resample draws whole seeds with
replacement, so each seed's curves move together (rows of one seed share curves and are not
independent); the curves are averaged again and the fit repeated. With a handful of seeds the
plain percentile interval is too narrow (about 88% coverage at 5 seeds in simulation), so the
interval is the expanded percentile interval (`expanded_level`). A resample whose points cannot
identify the fit counts as failed; with more than 5% failed there is no interval.

What the fit needs before it is made: `MIN_SIZES` (4) model sizes spanning at least
`MIN_SPAN` (10x) in N for beta (a size law on fewer sizes regresses on a factor); with fewer, N
enters as one intercept per size and beta is not estimated. At least `EXTRA_POINTS` (3) more
qualifying points than parameters. The paper's values are in `PAPER` for comparison.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

PAPER = {"k": 1.9e4, "alpha": 0.18, "beta": 0.38, "source": "Hernandez et al. 2021, text -> Python"}
MIN_SIZES, MIN_SPAN, EXTRA_POINTS = 4, 10.0, 3
MAX_FAILED = 0.05  # bootstrap resamples that cannot be fitted, at most this share


def monotone_curve(data_sizes, losses) -> tuple[np.ndarray, np.ndarray]:
    """(D ascending, running-minimum loss) with duplicate D values averaged first."""
    d = np.asarray(data_sizes, dtype=float)
    loss = np.asarray(losses, dtype=float)
    keep = np.isfinite(loss) & (d > 0) & (loss > 0)
    d, loss = d[keep], loss[keep]
    unique, inverse = np.unique(d, return_inverse=True)
    mean = np.bincount(inverse, weights=loss) / np.bincount(inverse)
    return unique, np.minimum.accumulate(mean)


def effective_data(data_sizes, losses, target_loss: float,
                   max_extrapolation: float = 10.0) -> tuple[float | None, str]:
    """(D_E, flag): the from-scratch data reaching `target_loss`; flag "interpolated",
    "extrapolated-high" (beyond the largest D), "extrapolated-low" (below the smallest D),
    "out-of-range" (D_E None: more than `max_extrapolation` times beyond the ladder's ends) or
    "undefined" (D_E None: fewer than two points, a flat end segment, or a non-positive target)."""
    d, loss = monotone_curve(data_sizes, losses)
    return _on_curve(np.log(d), np.log(loss), target_loss, max_extrapolation)


def _on_curve(log_d: np.ndarray, log_loss: np.ndarray, target_loss: float,
              max_extrapolation: float = 10.0) -> tuple[float | None, str]:
    """`effective_data` on a curve already made monotone, in logs."""
    if len(log_d) < 2 or not (math.isfinite(target_loss) and target_loss > 0):
        return None, "undefined"
    target = math.log(target_loss)
    if target < log_loss[-1]:
        (x0, x1), (y0, y1), flag = log_d[-2:], log_loss[-2:], "extrapolated-high"
    elif target > log_loss[0]:
        (x0, x1), (y0, y1), flag = log_d[:2], log_loss[:2], "extrapolated-low"
    else:
        i = int(np.argmax(log_loss <= target))  # first rung of the non-increasing curve at the target
        if i == 0:
            return float(math.exp(log_d[0])), "interpolated"
        x0, x1, y0, y1 = log_d[i - 1], log_d[i], log_loss[i - 1], log_loss[i]
        flag = "interpolated"
    if y1 == y0:
        return (None, "undefined") if flag != "interpolated" else (float(math.exp(x0)), flag)
    x = x0 + (target - y0) * (x1 - x0) / (y1 - y0)
    if not (log_d[0] - math.log(max_extrapolation) <= x <= log_d[-1] + math.log(max_extrapolation)):
        return None, "out-of-range"
    return float(math.exp(x)), flag


def transfer_points(scratch: dict, finetuned: dict) -> list[dict]:
    """Rows {N, D_F, loss_ft, D_E, D_T, flag, ossified, multiplier} for every fine-tuned point.

    `scratch` = {N: [(D, loss), ...]}, `finetuned` = {N: [(D_F, loss), ...]}."""
    rows = []
    for n, points in finetuned.items():
        d, loss = monotone_curve([p[0] for p in scratch[n]], [p[1] for p in scratch[n]])
        log_d, log_loss = np.log(d), np.log(loss)
        for d_f, loss_ft in points:
            d_e, flag = _on_curve(log_d, log_loss, loss_ft)
            d_t = None if d_e is None else d_e - d_f
            rows.append({"N": n, "D_F": d_f, "loss_ft": loss_ft, "D_E": d_e, "D_T": d_t, "flag": flag,
                         "ossified": d_t is not None and d_t < 0,
                         "multiplier": None if d_t is None else (d_f + d_t) / d_f})
    return rows


def mean_curves(per_seed: dict, seeds: Sequence) -> tuple[dict, dict]:
    """(scratch, finetuned) curves {N: [(D, loss)]} whose loss is the geometric mean over `seeds`
    (repeats allowed: a bootstrap resample). `per_seed` = {seed: {"scratch"|"finetuned": {N: [(D,
    loss)]}}}, every seed with the same ladders."""
    out = []
    for arm in ("scratch", "finetuned"):
        first = per_seed[seeds[0]][arm]
        curves = {}
        for n, points in first.items():
            logs = np.array([[math.log(loss) if loss and loss > 0 else math.nan for _, loss in per_seed[s][arm][n]]
                             for s in seeds])  # (seeds, D)
            curves[n] = [(d, float(math.exp(v))) for (d, _), v in zip(points, logs.mean(axis=0))]
        out.append(curves)
    return out[0], out[1]


def expanded_level(n: int, confidence: float = 0.95) -> float:
    """The lower percentile level of the expanded percentile interval for `n` resampled units
    (Hesterberg 2015, "What teachers should know about the bootstrap", The American Statistician
    69(4), section 4.3): the percentile bootstrap's spread is too narrow by sqrt((n - 1) / n) and
    its tails are normal where t with n - 1 degrees of freedom is due, so the level is
    Phi(-sqrt(n / (n - 1)) t_{n-1, (1 + confidence) / 2})."""
    from scipy import stats

    if n < 2:
        return (1 - confidence) / 2
    z = math.sqrt(n / (n - 1)) * stats.t.ppf((1 + confidence) / 2, n - 1)
    return float(stats.norm.cdf(-z))


def default_low_data_max(rows: list[dict]) -> float | None:
    return float(np.median(sorted({r["D_F"] for r in rows}))) if rows else None


def select_low_data(rows: list[dict], low_data_max: float | None = None) -> list[dict]:
    """The rows the power law is fitted to (the rule in the module docstring)."""
    if low_data_max is None:
        low_data_max = default_low_data_max(rows)
    return [r for r in rows if r["D_T"] is not None and r["D_T"] > 0 and r["flag"] == "interpolated"
            and r["D_F"] <= low_data_max]


def size_law_allowed(sizes) -> tuple[bool, str]:
    """(may beta be fitted, why not): MIN_SIZES sizes over at least MIN_SPAN x in N."""
    sizes = sorted(set(sizes))
    if len(sizes) < MIN_SIZES:
        return False, f"{len(sizes)} model sizes; a size law needs at least {MIN_SIZES}"
    if sizes[-1] / sizes[0] < MIN_SPAN:
        return False, f"N spans {sizes[-1] / sizes[0]:.1f}x; a size law needs at least {MIN_SPAN:g}x"
    return True, ""


def solve(chosen: list[dict], with_beta: bool) -> np.ndarray | None:
    """[log k, alpha, beta] (beta NaN without the size law: then one log k per size, their mean
    reported) by least squares on log D_T, or None when the points cannot identify it."""
    d_f = np.log([r["D_F"] for r in chosen])
    y = np.log([r["D_T"] for r in chosen])
    sizes = sorted({r["N"] for r in chosen})
    if with_beta:
        design = np.column_stack([np.ones(len(y)), d_f, np.log([r["N"] for r in chosen])])
    else:
        design = np.column_stack([d_f] + [[float(r["N"] == n) for r in chosen] for n in sizes])
    if len(y) < design.shape[1] + EXTRA_POINTS or np.linalg.matrix_rank(design) < design.shape[1]:
        return None
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    if with_beta:
        return coef
    return np.array([coef[1:].mean(), coef[0], math.nan])


def fit_on(per_seed: dict, seeds: Sequence, with_beta: bool, low_data_max: float | None) -> tuple:
    """(coefficients or None, the chosen rows) on the curves averaged over `seeds`."""
    rows = transfer_points(*mean_curves(per_seed, seeds))
    chosen = select_low_data(rows, low_data_max)
    return solve(chosen, with_beta) if chosen else None, chosen


def fit_transfer(per_seed: dict, bootstrap: int = 1000, seed: int = 0, low_data_max: float | None = None) -> dict:
    """Fit D_T = k D_F^alpha N^beta on seed-averaged curves; 95% intervals from a bootstrap over
    seeds (module docstring). `per_seed` as in `mean_curves`."""
    from scipy import stats

    seeds = sorted(per_seed)
    rows = transfer_points(*mean_curves(per_seed, seeds))
    low = default_low_data_max(rows) if low_data_max is None else low_data_max
    with_beta, why = size_law_allowed([r["N"] for r in rows])
    out = {"rule": "D_T > 0, D_E interpolated, D_F <= low_data_max, on curves averaged over seeds",
           "low_data_max": low, "rows": rows, "size_law": with_beta, "size_law_reason": why or None,
           "seeds": len(seeds), "paper": PAPER}
    point, chosen = fit_on(per_seed, seeds, with_beta, low)
    out.update(points=len(chosen), excluded=len(rows) - len(chosen))
    if point is None:
        need = (3 if with_beta else 1 + len({r["N"] for r in rows})) + EXTRA_POINTS
        return {**out, "fit": None, "reason": f"{len(chosen)} qualifying points; the fit needs at least {need} "
                                              "spread over D_F" + ("" if with_beta else " and every size")}
    width = 3 if with_beta else 2  # beta is not a statistic without the size law

    def statistic(index):
        coef, _ = fit_on(per_seed, [seeds[int(i)] for i in index], with_beta, low)
        return np.full(width, np.nan) if coef is None else coef[:width]

    intervals, draws = [None, None, None], 0
    if bootstrap > 0 and len(seeds) >= 2:
        result = stats.bootstrap((np.arange(len(seeds)),), statistic, n_resamples=bootstrap, vectorized=False,
                                 method="percentile", rng=np.random.default_rng(seed))
        distribution = np.asarray(result.bootstrap_distribution).reshape(width, -1)  # (width, bootstrap)
        good = np.isfinite(distribution).all(axis=0)
        draws = int(good.sum())
        if draws >= (1 - MAX_FAILED) * bootstrap:
            low_level = expanded_level(len(seeds))
            for i, row in enumerate(distribution):
                intervals[i] = [float(np.percentile(row[good], 100 * low_level)),
                                float(np.percentile(row[good], 100 * (1 - low_level)))]
    fit = {"k": {"value": float(math.exp(point[0])),
                 "ci95": None if intervals[0] is None else [math.exp(v) for v in intervals[0]]},
           "alpha": {"value": float(point[1]), "ci95": intervals[1]},
           "beta": {"value": None if not with_beta else float(point[2]), "ci95": intervals[2] if with_beta else None}}
    return {**out, "fit": fit, "bootstrap": {"resamples": bootstrap, "fitted": draws, "failed": bootstrap - draws
                                             if bootstrap else 0, "seed": seed, "unit": "seed (whole curves)"}}
