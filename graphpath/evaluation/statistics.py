"""Intervals and tests for metrics of several seeds scored on one shared sample of test graphs.

Shapes
    S  seeds (training runs of one recipe), S >= 1
    N  test graphs in a subgroup (the same graphs for every seed)

Every seed is scored on the *same* test graphs, so a per-example value x[s, i] (a squared error,
or 1 when the rounded answer is right) carries a seed effect and a graph effect that are crossed,
not nested:

    x[s, i] = mu + a_s + b_i + e_si        (two-way crossed random effects)

The estimand is theta = E_seed E_graph x: the metric a new seed of the recipe scores on the
subgroup's distribution, test-sample variance included. The estimator is the grand mean, and its
variance is estimated by the method of moments for the crossed design (Owen 2007, "The
pigeonhole bootstrap", Ann. Appl. Stat. 1(2):386-411, section 2):

    V = var_s(row means) / S + var_i(column means) / N,

which overstates the true variance by sigma_e^2 / (S N) (negligible for N in the hundreds) and is
therefore slightly conservative. A nested bootstrap (seeds, then graphs independently within each
seed) would understate the graph term S-fold here, because the seeds share their graphs;
scipy.stats.bootstrap resamples one axis only, so the crossed moment estimator is used instead and
its coverage is tested against simulated truth (tests/test_statistics.py). With one seed the
seed term cannot be estimated: the interval then covers test-sample variance only (`kind`
"graphs"), which the report says beside it.

Scales that need no clipping: an MSE's interval is built on log(MSE) and an accuracy's on
logit(accuracy), both by the delta method (the influence of example (s, i) on log(mean) is
x / mean, on logit(mean) x / (mean (1 - mean))), with Welch-Satterthwaite degrees of freedom for
the two variance components and Student's t quantiles (scipy.stats.t). Tests of a finding are
one-sided t tests on the same scale against a threshold written in code (graphpath.evaluation.findings
says when); several findings are corrected together by Benjamini-Hochberg
(scipy.stats.false_discovery_control), which controls the false discovery rate, not the
family-wise error rate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05  # false discovery rate of the findings' tests: a finding holds when its Benjamini-Hochberg
# adjusted p-value is under it (BH controls the expected share of false findings among those that
# hold, not the family-wise error rate)
MSE_FLOOR = 1e-12  # an exact model's MSE of 0 is read as this before the log


@dataclass(frozen=True)
class Estimate:
    """A metric, its interval and what the interval covers.

    value: the point estimate (grand mean over seeds and graphs); low/high: the CONFIDENCE
    interval, inside the metric's range by construction; log_se/df: standard error and degrees of
    freedom on the transformed scale (`scale`); kind: "seeds+graphs" (both variance components) or
    "graphs" (one seed: test-sample variance only); seeds, graphs: S and N.
    """
    value: float
    low: float | None
    high: float | None
    scale: str  # "log" | "logit" | "log-ratio"
    center: float  # the estimate on the transformed scale
    se: float | None
    df: float | None
    kind: str
    seeds: int
    graphs: int

    def to_dict(self) -> dict:
        return {"value": self.value, "ci95": None if self.low is None else [self.low, self.high],
                "scale": self.scale, "se": self.se, "df": self.df, "ci_kind": self.kind,
                "seeds": self.seeds, "graphs": self.graphs}


def _as_matrix(values) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"values must be (S seeds, N graphs) with N >= 1, got shape {x.shape}")
    return x


def crossed_variance(seed_part: np.ndarray, graph_parts: list[np.ndarray]) -> tuple[float, float | None, str]:
    """(variance of a grand mean, Welch-Satterthwaite df, kind) from its influence values.

    seed_part (S,): each seed's mean influence (summed over the blocks the statistic uses);
    graph_parts [(N_k,)]: each independent graph sample's per-graph influence averaged over seeds.
    Components: var(seed_part) / S (when S >= 2) and var(graph_k) / N_k (when N_k >= 2). df is
    None when no component can be estimated (one seed and single graphs)."""
    components = []
    seeds = len(seed_part)
    if seeds >= 2:
        components.append((float(np.var(seed_part, ddof=1)) / seeds, seeds - 1))
    for part in graph_parts:
        if len(part) >= 2:
            components.append((float(np.var(part, ddof=1)) / len(part), len(part) - 1))
    if not components:
        return 0.0, None, "none"
    variance = sum(v for v, _ in components)
    denominator = sum(v * v / df for v, df in components)
    df = variance * variance / denominator if denominator > 0 else float(sum(df for _, df in components))
    return variance, df, "seeds+graphs" if seeds >= 2 else "graphs"


def _interval(center: float, se: float, df: float | None, confidence: float) -> tuple[float, float] | None:
    if df is None or not df > 0 or not math.isfinite(se):
        return None  # a single example (or a constant with one seed) gives no spread to estimate
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return center - half, center + half


def mean_log(values, confidence: float = CONFIDENCE) -> Estimate:
    """Mean of non-negative per-example values (squared errors) with an interval on log(mean).

    values (S, N) or (N,). Raises ValueError on an empty or negative input."""
    x = _as_matrix(values)
    if (x < 0).any():
        raise ValueError("mean_log needs non-negative values (squared errors)")
    mean = max(float(x.mean()), MSE_FLOOR)
    influence = x / mean  # d log(mean) / d x, per example
    variance, df, kind = crossed_variance(influence.mean(axis=1), [influence.mean(axis=0)])
    se = math.sqrt(variance)
    bounds = _interval(math.log(mean), se, df, confidence)
    value = float(x.mean())
    if bounds is None:
        low, high = None, None
    elif se == 0:  # every example the same (an exact model's zeros): no spread, the value itself
        low, high = value, value
    else:  # an MSE under the floor keeps its interval around its own value
        low, high = min(math.exp(bounds[0]), value), max(math.exp(bounds[1]), value)
    return Estimate(value, low, high, "log", math.log(mean), se, df, kind, x.shape[0], x.shape[1])


def mean_logit(hits, confidence: float = CONFIDENCE) -> Estimate:
    """Share of right answers (values in {0, 1}) with an interval on logit(share).

    hits (S, N) or (N,). The centre is the share with half a right and half a wrong answer
    added (Agresti's adjustment), so an all-right or all-wrong subgroup has a finite logit."""
    x = _as_matrix(hits)
    share = float(x.mean())
    adjusted = (x.sum() + 0.5) / (x.size + 1.0)
    influence = x / (adjusted * (1.0 - adjusted))  # d logit(p) / d x
    variance, df, kind = crossed_variance(influence.mean(axis=1), [influence.mean(axis=0)])
    if variance == 0:  # an all-right (or all-wrong) subgroup: the binomial variance of the adjusted share
        variance = 1.0 / (x.size * adjusted * (1.0 - adjusted))
    se = math.sqrt(variance)
    center = math.log(adjusted / (1.0 - adjusted))
    bounds = _interval(center, se, df if df is not None else x.size - 1.0, confidence)  # df 0: no interval
    low, high = (None, None) if bounds is None else (1 / (1 + math.exp(-bounds[0])), 1 / (1 + math.exp(-bounds[1])))
    return Estimate(share, low, high, "logit", center, se, df, kind, x.shape[0], x.shape[1])


def log_ratio(numerator, denominator, paired: bool, confidence: float = CONFIDENCE) -> Estimate:
    """mean(numerator) / mean(denominator) with an interval on its log.

    Both (S, N_a) and (S, N_b) with the same seeds in the same order. paired=True: the same graphs
    in both (N_a = N_b; e.g. one set before and after fine-tuning), so the graph influence is
    taken per graph; False: two disjoint graph samples, whose graph terms add."""
    a, b = _as_matrix(numerator), _as_matrix(denominator)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"numerator and denominator need the same seeds, got {a.shape[0]} and {b.shape[0]}")
    if paired and a.shape != b.shape:
        raise ValueError(f"paired values need equal shapes, got {a.shape} and {b.shape}")
    mean_a, mean_b = max(float(a.mean()), MSE_FLOOR), max(float(b.mean()), MSE_FLOOR)
    ia, ib = a / mean_a, b / mean_b
    seed_part = ia.mean(axis=1) - ib.mean(axis=1)
    graph_parts = [ia.mean(axis=0) - ib.mean(axis=0)] if paired else [ia.mean(axis=0), ib.mean(axis=0)]
    variance, df, kind = crossed_variance(seed_part, graph_parts)
    se = math.sqrt(variance)
    center = math.log(mean_a / mean_b)
    bounds = _interval(center, se, df, confidence)
    low, high = (None, None) if bounds is None else (math.exp(bounds[0]), math.exp(bounds[1]))
    return Estimate(mean_a / mean_b, low, high, "log-ratio", center, se, df, kind, a.shape[0],
                    a.shape[1] if paired else a.shape[1] + b.shape[1])


def p_value(estimate: Estimate, threshold: float, claim: str) -> float | None:
    """One-sided p-value of a claim about the metric against `threshold` on the estimate's scale.

    claim "below": H1 metric < threshold; "above": H1 metric > threshold. None when the estimate
    has no standard error (nothing to test with). threshold is on the metric's own scale (an MSE, a
    share, a ratio) and is transformed like the estimate."""
    if claim not in ("below", "above"):
        raise ValueError(f"claim must be 'below' or 'above', got {claim!r}")
    if estimate.df is None or estimate.se is None or not estimate.se > 0:
        return None
    if estimate.scale == "logit":
        if not 0 < threshold < 1:
            raise ValueError(f"an accuracy threshold must lie in (0, 1), got {threshold}")
        target = math.log(threshold / (1 - threshold))
    else:
        if threshold <= 0:
            raise ValueError(f"an MSE or ratio threshold must be > 0, got {threshold}")
        target = math.log(threshold)
    statistic = (estimate.center - target) / estimate.se
    return float(stats.t.cdf(statistic, estimate.df) if claim == "below" else stats.t.sf(statistic, estimate.df))


def adjust(p_values: list[float | None]) -> list[float | None]:
    """Benjamini-Hochberg adjusted p-values (scipy.stats.false_discovery_control) over the
    p-values that exist; None stays None."""
    present = [i for i, p in enumerate(p_values) if p is not None]
    out: list[float | None] = [None] * len(p_values)
    if present:
        adjusted = stats.false_discovery_control([p_values[i] for i in present], method="bh")
        for i, value in zip(present, np.atleast_1d(adjusted)):
            out[i] = float(value)
    return out
