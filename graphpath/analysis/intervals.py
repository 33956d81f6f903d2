"""Intervals the analysis tools report: recovery shares (Wilson) and means over seeds (Student t).

    wilson(k, m) -> [low, high]     95% Wilson score interval of k successes in m trials
                                    (Wilson 1927; scipy.stats.binomtest(...).proportion_ci)
    over_seeds(values) -> {"mean", "ci95", "n"}   t-interval over independent seeds
                                    (graphpath.evaluation.scores.ci_summary)
    over_seeds_logit(values) -> same        for a share in (0, 1) (an AUROC): the t-interval of
                                    logit(value), mapped back, so it stays inside (0, 1) unclipped
"""
from __future__ import annotations

import math

from scipy import stats
from scipy.special import expit, logit

from graphpath.evaluation.scores import ci_summary

CONFIDENCE = 0.95


def wilson(successes: int, trials: int, confidence: float = CONFIDENCE) -> list[float] | None:
    """[low, high] of the Wilson score interval for successes / trials; None when trials == 0.
    ValueError when successes is outside [0, trials]."""
    if trials == 0:
        return None
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must lie in [0, {trials}], got {successes}")
    ci = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence, method="wilson")
    return [float(ci.low), float(ci.high)]


def over_seeds(values, confidence: float = CONFIDENCE, bounds: tuple[float, float] | None = None) -> dict:
    """{"mean", "ci95": [low, high] or None (fewer than 2 finite values), "n"}: a t-interval over
    seeds, each value one seed's measurement (None and NaN dropped); `bounds` clips the interval to
    a metric's range (an AUROC's [0, 1])."""
    out = ci_summary(values, confidence)
    if bounds is not None and out["ci95"] is not None:
        out["ci95"] = [max(bounds[0], out["ci95"][0]), min(bounds[1], out["ci95"][1])]
    return out


LOGIT_EDGE = 1e-4  # a share of exactly 0 or 1 (an AUROC of 1.0) is read as 1e-4 from the edge before the logit


def over_seeds_logit(values, confidence: float = CONFIDENCE) -> dict:
    """{"mean", "ci95", "n", "scale": "logit"}: `mean` the plain mean over seeds; `ci95` the
    t-interval over seeds of logit(value), mapped back with the logistic function (inside (0, 1) by
    construction, never clipped; a perfect 1.0 is read as 1 - LOGIT_EDGE). None and NaN dropped."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    plain = ci_summary(finite, confidence)
    logits = [float(logit(min(max(v, LOGIT_EDGE), 1 - LOGIT_EDGE))) for v in finite]
    on_logit = ci_summary(logits, confidence)
    ci = None if on_logit["ci95"] is None else [float(expit(on_logit["ci95"][0])), float(expit(on_logit["ci95"][1]))]
    return {"mean": plain["mean"], "ci95": ci, "n": plain["n"], "scale": "logit"}
