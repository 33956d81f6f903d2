"""Convergence diagnostics of several Markov chains of one scalar (here: the SGLD loss trace).

    split_rhat(draws) -> float     rank-normalised split R-hat
    ess(draws) -> float            bulk effective sample size (rank-normalised, split chains)
    mcse_mean(draws) -> float      Monte Carlo standard error of the mean: sd / sqrt(ESS of the raw draws)

`draws` is (C chains, N draws), C >= 2 and N >= 4. Formulas: Vehtari, Gelman, Simpson, Carpenter
and Buerkner (2021), "Rank-normalization, folding, and localization: an improved R-hat for
assessing convergence of MCMC", Bayesian Analysis 16(2), sections 3 and 4 (split chains, rank
normalisation) and Geyer's initial monotone sequence for the autocorrelation sum (Geyer 1992,
"Practical Markov chain Monte Carlo", Statistical Science 7(4), section 3.3) as in Stan's
reference implementation. A constant trace has no spread to assess: R-hat and ESS are NaN.
"""
from __future__ import annotations

import numpy as np
from scipy import stats


def _check(draws) -> np.ndarray:
    x = np.asarray(draws, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 4:
        raise ValueError(f"draws must be (chains >= 2, draws >= 4), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("draws must be finite")
    return x


def _split(x: np.ndarray) -> np.ndarray:
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half:]], axis=0)  # (2C, N/2)


def _rank_normalise(x: np.ndarray) -> np.ndarray:
    ranks = stats.rankdata(x, method="average").reshape(x.shape)
    return stats.norm.ppf((ranks - 0.375) / (x.size + 0.25))  # Blom's offsets (Vehtari et al., eq. 14)


def _rhat(x: np.ndarray) -> float:
    chains, n = x.shape
    within = x.var(axis=1, ddof=1).mean()
    between = n * x.mean(axis=1).var(ddof=1)
    if within == 0:
        return float("nan")
    return float(np.sqrt(((n - 1) / n * within + between / n) / within))


def split_rhat(draws) -> float:
    """Rank-normalised split R-hat (about 1 when the chains agree; > 1.01 means they do not, Vehtari et al. 2021)."""
    x = _split(_check(draws))
    return _rhat(_rank_normalise(x))


def _ess(x: np.ndarray) -> float:
    chains, n = x.shape
    centred = x - x.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(centred, n=2 * n, axis=1)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), axis=1)[:, :n] / n  # (C, N) autocovariance per chain
    within = x.var(axis=1, ddof=1).mean()
    if within == 0:
        return float("nan")
    var_plus = (n - 1) / n * within + (x.mean(axis=1).var(ddof=1) if chains > 1 else 0.0)
    rho = 1 - (within - acov.mean(axis=0)) / var_plus  # (N,) combined autocorrelation
    rho[0] = 1.0
    total, previous = 0.0, np.inf
    for t in range(0, n - 1, 2):  # Geyer: positive, then monotone, pairs
        pair = rho[t] + rho[t + 1]
        if pair < 0:
            break
        pair = min(pair, previous)
        total += pair
        previous = pair
    tau = max(2 * total - 1, 1 / np.log10(chains * n))
    return float(chains * n / tau)


def ess(draws) -> float:
    """Bulk effective sample size of all chains together (rank-normalised, split)."""
    return _ess(_rank_normalise(_split(_check(draws))))


def mcse_mean(draws) -> float:
    """Monte Carlo standard error of the grand mean of `draws` (its own, not rank-normalised, ESS)."""
    x = _check(draws)
    effective = _ess(_split(x))
    return float(x.std(ddof=1) / np.sqrt(effective)) if np.isfinite(effective) else float("nan")
