"""Does off-distribution error follow what pre-training covered, or model size? (Yadlowsky et al.
2023, "Pretraining data mixtures enable narrow model selection capabilities in transformer
models", section 4: error rises as the test function moves out of the pre-training mixture's
support, whatever the model's size.) The regression and its intervals.

Per cell c = (mixture, test, model), over seeds s (each seed its own training set and test sample):
    y_c        mean over seeds of log test MSE
    coverage_c mean over seeds of data_gen.mixture.coverage (inputs only: the share of test graphs
               whose input cell occurs in the training set)
    log N_c    log non-embedding parameters of the cell's model
Fit y = a + b coverage + c log N by least squares over cells, and report R^2 of coverage alone,
log N alone and both. b < 0: error falls as coverage rises; c < 0: error falls with model size.

Intervals: the seed is the unit. The fit is made on each seed's cells alone (its training sets,
test samples and models), and each coefficient's estimate is the mean of the per-seed estimates
with a t-interval over seeds (graphpath.evaluation.scores.mean_ci) at 1 - 0.05 / 2: Bonferroni
over the two findings (b and c). A coefficient is a finding when its interval excludes 0. (A
bootstrap over 3 seeds cannot reach nominal coverage: its interval is at most the range of the
per-seed estimates, which misses the truth 25% of the time; the t-interval does not.)

Needs: the size term only with MIN_SIZES model sizes over MIN_SPAN in N (experiments.scaling_fit:
a size law on two sizes regresses on a factor); at least EXTRA_POINTS more cells than parameters.
"""
from __future__ import annotations

import numpy as np

from graphpath.evaluation.scores import mean_ci

from .scaling_fit import EXTRA_POINTS, size_law_allowed

FINDINGS = 2  # b and c: the Bonferroni divisor


def design(coverage: np.ndarray, log_n: np.ndarray, terms: tuple[str, ...]) -> np.ndarray:
    columns = {"coverage": coverage, "log_N": log_n}
    return np.column_stack([np.ones(len(coverage))] + [columns[t] for t in terms])


def ols(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float | None]:
    """(coefficients, R^2) of y on x (x has the intercept column)."""
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = None if total == 0 else 1.0 - float(((y - x @ coef) ** 2).sum()) / total
    return coef, r2


def regression(log_mse: np.ndarray, coverage: np.ndarray, log_n: np.ndarray, confidence: float = 0.95) -> dict:
    """The analysis of the module docstring. log_mse, coverage: (seeds, cells); log_n: (cells,)."""
    log_mse, coverage, log_n = np.asarray(log_mse, float), np.asarray(coverage, float), np.asarray(log_n, float)
    seeds, cells = log_mse.shape
    with_size, why = size_law_allowed(np.exp(log_n).round().tolist())
    terms = ("coverage", "log_N") if with_size else ("coverage",)
    out = {"cells": int(cells), "seeds": int(seeds), "terms": list(terms), "size_law": with_size,
           "size_law_reason": why or None, "confidence": confidence, "bonferroni": FINDINGS}
    y, cov = log_mse.mean(axis=0), coverage.mean(axis=0)
    if cells < len(terms) + 1 + EXTRA_POINTS or np.ptp(cov) == 0:
        return {**out, "fit": None, "reason": f"{cells} cells (need {len(terms) + 1 + EXTRA_POINTS}) or no spread "
                                              "in coverage"}
    coef, r2 = ols(y, design(cov, log_n, terms))
    out["r2"] = {"coverage": ols(y, design(cov, log_n, ("coverage",)))[1],
                 "log_N": ols(y, design(cov, log_n, ("log_N",)))[1] if np.ptp(log_n) > 0 else None, "both": r2}

    per_seed = np.array([ols(log_mse[s], design(coverage[s], log_n, terms))[0][1:] for s in range(seeds)])
    fit = {}
    for i, term in enumerate(terms):
        mean, low, high = mean_ci(per_seed[:, i], 1 - (1 - confidence) / FINDINGS)
        ci = None if low is None else [low, high]
        fit[term] = {"value": mean, "ci": ci, "per_seed": per_seed[:, i].tolist(),
                     "finding": ci is not None and (ci[0] > 0 or ci[1] < 0)}
    return {**out, "fit": fit, "fit_on_means": dict(zip(("intercept",) + terms, map(float, coef))), "unit": "seed"}
