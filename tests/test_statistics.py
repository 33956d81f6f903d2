"""graphpath.evaluation.statistics: coverage of the crossed seed x graph intervals against simulated
truth, tests against formulas, the Benjamini-Hochberg correction."""
import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit

from graphpath.evaluation.scores import mean_ci
from graphpath.evaluation.statistics import adjust, log_ratio, mean_log, mean_logit, p_value

REPLICATES = 400  # coverage is judged within [0.90, 0.99]: 0.95 +- ~4 binomial s.d. at 400


def squared_errors(rng, seeds, graphs, seed_sd, graph_sd, noise_sd):
    """Crossed design: x[s, i] = exp(a_s - seed_sd^2 / 2) (g_i + e_si)^2, E x = graph_sd^2 + noise_sd^2.
    A multiplicative seed effect and chi-square tails, as squared errors have."""
    a = rng.normal(0, seed_sd, (seeds, 1))
    g = rng.normal(0, graph_sd, (1, graphs))
    e = rng.normal(0, noise_sd, (seeds, graphs))
    return np.exp(a - seed_sd ** 2 / 2) * (g + e) ** 2


@pytest.mark.parametrize("seeds,graphs,seed_sd", [(1, 300, 0.0), (3, 300, 0.3), (5, 300, 0.3), (5, 1000, 0.5),
                                                  (3, 100, 0.1)])
def test_log_mse_interval_covers_the_truth(seeds, graphs, seed_sd):
    rng = np.random.default_rng(seeds * 1000 + graphs)
    truth = 0.5 ** 2 + 0.3 ** 2
    hits = 0
    for _ in range(REPLICATES):
        estimate = mean_log(squared_errors(rng, seeds, graphs, seed_sd, 0.5, 0.3))
        assert 0 < estimate.low <= estimate.value <= estimate.high  # no clipping needed: log scale
        hits += estimate.low <= truth <= estimate.high
    assert 0.90 <= hits / REPLICATES <= 0.99


def test_seed_only_t_interval_undercovers_when_seeds_share_graphs():
    """Why the graph term is there: a t-interval over per-seed MSEs ignores that every seed was
    scored on the same test graphs, and misses the truth far more often than 5%."""
    rng = np.random.default_rng(7)
    truth, old, new = 0.5 ** 2 + 0.1 ** 2, 0, 0
    for _ in range(REPLICATES):
        x = squared_errors(rng, 3, 200, 0.02, 0.5, 0.1)
        mean, low, high = mean_ci(x.mean(axis=1))
        old += low <= truth <= high
        estimate = mean_log(x)
        new += estimate.low <= truth <= estimate.high
    assert old / REPLICATES < 0.7 and new / REPLICATES >= 0.90


@pytest.mark.parametrize("seeds,graphs,seed_sd,graph_sd", [(1, 300, 0.0, 1.0), (3, 300, 0.3, 1.0),
                                                           (5, 300, 0.5, 2.0), (3, 100, 0.2, 0.5)])
def test_logit_accuracy_interval_covers_the_truth(seeds, graphs, seed_sd, graph_sd):
    rng = np.random.default_rng(seeds * 7 + graphs)
    draws = rng.normal(0, 1, (2, 1_000_000))
    truth = expit(1.0 + seed_sd * draws[0] + graph_sd * draws[1]).mean()
    hits = 0
    for _ in range(REPLICATES):
        p = expit(1.0 + rng.normal(0, seed_sd, (seeds, 1)) + rng.normal(0, graph_sd, (1, graphs)))
        estimate = mean_logit(rng.random((seeds, graphs)) < p)
        assert 0 < estimate.low <= estimate.high < 1
        hits += estimate.low <= truth <= estimate.high
    assert 0.90 <= hits / REPLICATES <= 0.99


@pytest.mark.parametrize("paired", [True, False])
def test_log_ratio_interval_covers_the_truth(paired):
    rng = np.random.default_rng(11 + paired)
    truth = (1.0 + 0.25) / (0.2 ** 2 + 0.1 ** 2)
    hits = 0
    for _ in range(REPLICATES):
        before = squared_errors(rng, 3, 300, 0.3, 1.0, 0.5)
        after = squared_errors(rng, 3, 300 if paired else 200, 0.3, 0.2, 0.1)
        estimate = log_ratio(before, after, paired=paired)
        hits += estimate.low <= truth <= estimate.high
    assert 0.90 <= hits / REPLICATES <= 0.99


def test_one_seed_interval_is_the_test_sample_interval():
    """One seed: the variance is the squared standard error of the mean over graphs, on log scale."""
    x = np.random.default_rng(0).exponential(2.0, 500)
    estimate = mean_log(x)
    se = x.std(ddof=1) / math.sqrt(x.size) / x.mean()
    assert estimate.kind == "graphs" and estimate.df == pytest.approx(x.size - 1)
    assert estimate.se == pytest.approx(se)
    half = stats.t.ppf(0.975, x.size - 1) * se
    assert estimate.low == pytest.approx(x.mean() * math.exp(-half))
    assert estimate.high == pytest.approx(x.mean() * math.exp(half))


def test_two_components_and_satterthwaite_df():
    rng = np.random.default_rng(1)
    x = squared_errors(rng, 4, 50, 0.5, 1.0, 0.2)
    mean = x.mean()
    seed_var = np.var(x.mean(axis=1) / mean, ddof=1) / 4
    graph_var = np.var(x.mean(axis=0) / mean, ddof=1) / 50
    estimate = mean_log(x)
    assert estimate.kind == "seeds+graphs"
    assert estimate.se ** 2 == pytest.approx(seed_var + graph_var)
    assert estimate.df == pytest.approx((seed_var + graph_var) ** 2 / (seed_var ** 2 / 3 + graph_var ** 2 / 49))


def test_p_value_against_the_t_distribution():
    x = np.random.default_rng(2).exponential(0.1, (3, 400))
    estimate = mean_log(x)
    statistic = (math.log(x.mean()) - math.log(0.25)) / estimate.se
    assert p_value(estimate, 0.25, "below") == pytest.approx(stats.t.cdf(statistic, estimate.df))
    assert p_value(estimate, 0.25, "above") == pytest.approx(stats.t.sf(statistic, estimate.df))
    assert p_value(estimate, 0.25, "below") < 1e-3  # 0.1 is far below 0.25
    with pytest.raises(ValueError):
        p_value(estimate, 0.25, "sideways")


def test_all_right_subgroup_has_a_finite_logit_interval():
    estimate = mean_logit(np.ones((3, 50)))
    assert estimate.value == 1.0 and 0.8 < estimate.low < estimate.high < 1.0


def test_benjamini_hochberg_matches_the_formula():
    p = [0.01, 0.04, None, 0.03, 0.2]
    present = np.array([0.01, 0.04, 0.03, 0.2])
    order = np.argsort(present)
    ranked = present[order] * len(present) / np.arange(1, len(present) + 1)
    expected = np.minimum.accumulate(ranked[::-1])[::-1]
    out = adjust(p)
    assert out[2] is None
    got = np.array([out[i] for i in (0, 1, 3, 4)])
    assert np.allclose(got[order], np.minimum(expected, 1))


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        mean_log(np.array([-1.0, 2.0]))
    with pytest.raises(ValueError):
        mean_log(np.zeros((2, 0)))
    with pytest.raises(ValueError):
        log_ratio(np.ones((2, 3)), np.ones((3, 3)), paired=True)
