"""Intervals the analysis tools report: recovery shares (Wilson) and means over seeds (Student t).

    wilson(k, m) -> [low, high]     95% Wilson score interval of k successes in m trials
                                    (Wilson 1927; scipy.stats.binomtest(...).proportion_ci)
    over_seeds(values) -> {"mean", "ci95", "n"}   t-interval over independent seeds
                                    (graphpath.evaluation.scores.ci_summary)
"""
from __future__ import annotations

from scipy import stats

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
