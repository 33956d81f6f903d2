"""Probe capacity against selectivity: the same probes and control task at rising capacity, the whole
curve reported (Hewitt and Liang 2019, "Designing and Interpreting Probes with Control Tasks", EMNLP).
Functions of tensors and per-seed records (no files, no CLI).

Shape glossary: N tokens probed, D the stream's width, L labels, R control draws, S seeds, Q ranks.

Why capacity. Hewitt and Liang's control task gives every token *type* a random label; a probe scores
on it only by memorising types. With U types a linear probe on a D-wide stream can fit every labelling
of them once U <= D + 1 (Cover 1965, IEEE Trans. Electronic Computers EC-14: U points in general
position in r dimensions, with a bias, are separable in every dichotomy when U <= r + 1, and in a share
C(U, r + 1) / 2^U of them otherwise, C(U, k) = 2 sum_{i<k} binom(U - 1, i)). Here U is 4 at the
fine-tuned target token and 10-28 at the edge tokens against D = 64, so the control is solved whatever
the stream holds about the graph and selectivity is ~0 by construction. Hewitt and Liang's remedy is
to limit the probe's capacity (they constrain the rank of linear and bilinear probes, the hidden size
of MLPs, and apply dropout, weight decay and fewer training examples) and to read selectivity along
that axis rather than accuracy alone.

The capacity axis: the rank r of the probe's input. For one binary label the probe is a single logit
w . x + b, whose weight is already rank 1, so Hewitt and Liang's rank constraint on W bounds nothing.
What bounds a single logit's capacity is the dimension it reads: each fold's probe reads only the top
r principal directions of *that fold's training rows* (PCA on the training split; the test rows never
enter it), with the same ridge and the same leave-one-out penalty as every other probe (P.Ridge's
`rank`). By Cover's count a probe on r directions can fit every labelling of at most r + 1 types and
only a shrinking share of labellings of more. r runs over CAPACITY_RANKS and the full width D (where
the curve meets the ordinary probe exactly). A penalty ladder was the alternative: ridge already
shrinks the low-variance principal directions most (Hastie, Tibshirani and Friedman, ESL 2nd ed.,
section 3.4.1), so a fixed strong penalty is a soft version of the same cut, with a scale that
depends on the stream's norm; the rank is the hard cut, and it is counted in dimensions, Cover's unit.

What the curve can and cannot say. PCA is unsupervised: a low-rank probe reads the stream's
highest-variance directions. Where the graph property lies in those and the types' identities in the
many lower ones, selectivity rises as r falls; where the types dominate the variance, a low-rank probe
reads types too and selectivity stays ~0 at every r, which then says the property is not among the
dominant directions, not that it is absent.

No rank is chosen on the data it reports: the curve is reported whole. The finding
(`capacity_findings`) asks whether selectivity exceeds the margin at *some* rank: one-sided t over
seeds per rank, Bonferroni over the Q ranks (the maximum over ranks of a selectivity is biased upward;
Bonferroni holds whatever the dependence between ranks), then Benjamini-Hochberg over the positions.
"""
from __future__ import annotations

import numpy as np

from graphpath.analysis import offpath as O
from graphpath.analysis import probe_controls as C
from graphpath.analysis.intervals import over_seeds, over_seeds_logit
from graphpath.evaluation import statistics as S

CAPACITY_RANKS = (1, 2, 4, 8, 16)  # principal directions a probe reads; the stream's full width is added (ranks)
CURVE = ("auroc", "control", "selectivity", "permuted")  # per rank, per seed the mean over the k that have a value
POSITIONS = ("target", "edges")


def ranks(width: int) -> list[int]:
    """The ranks probed on a stream `width` wide: CAPACITY_RANKS below it, then the width itself."""
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    return [r for r in CAPACITY_RANKS if r < width] + [width]


def capacity_curve(x, y, permuted, control, seed: int, widths: list[int], groups=None) -> list[dict[str, np.ndarray]]:
    """Per rank in `widths`, C.probe_with_controls at that rank: x (N, D); y, permuted (N, L); control
    (R, N, L). The same folds (by `seed`) and the same control draws at every rank, so the curve
    differs between ranks only by capacity; `groups` (N,) the graph of each token (folds by graph).
    Returns [per rank: its (L,) arrays]."""
    return [C.probe_with_controls(x, y, permuted, control, seed, rank=r, groups=groups) for r in widths]


def _mean(values: np.ndarray) -> float | None:
    return float(np.nanmean(values)) if np.isfinite(values).any() else None


def pool_curve(records: list[dict]) -> dict:
    """records: per seed {"ranks", "point", "target" and "edges": capacity_curve's list}. Returns
    {"ranks", "point", "target" and "edges": {metric: [per rank {mean, ci95, n}]}}: AUROCs with
    logit-scale intervals over seeds, the differences (selectivity) with plain t-intervals."""
    first = records[0]
    out = {"ranks": first["ranks"], "point": first["point"]}
    for where in POSITIONS:
        out[where] = {metric: [(over_seeds if metric == "selectivity" else over_seeds_logit)(
            [_mean(r[where][q][metric]) for r in records]) for q in range(len(first["ranks"]))]
            for metric in CURVE}
    return out


def capacity_findings(records: list[dict], margin: float) -> dict:
    """Whether selectivity (task AUROC - control AUROC, each seed's mean over k) exceeds `margin` at
    some rank, per position: per rank a one-sided t over seeds (O.t_test); the position's p-value is
    Bonferroni over its ranks, min(1, Q min_r p_r); Benjamini-Hochberg over the positions (S.adjust).
    A position with no control task (one type) or one seed has no p-value, does not hold, and
    `untestable` says why."""
    q = len(records[0]["ranks"])
    by_rank, raw, untestable = {}, {}, {}
    for where in POSITIONS:
        values = [[_mean(r[where][i]["selectivity"]) for r in records] for i in range(q)]
        by_rank[where] = [O.t_test(v, margin, "greater") for v in values]
        tested = [p for p in by_rank[where] if p is not None]
        raw[where] = min(1.0, q * min(tested)) if tested else None
        if raw[where] is None:
            finite = [v for row in values for v in row if v is not None]
            untestable[where] = ("one type (every token the same id): no control task" if not finite
                                 else "fewer than 2 seeds with a value at every rank: no t-test")
    adjusted = dict(zip(raw, S.adjust(list(raw.values()))))
    return {"p_by_rank": by_rank, "p_values": raw, "p_adjusted": adjusted,
            "holds": {k: p is not None and p < S.ALPHA for k, p in adjusted.items()}, "untestable": untestable,
            "thresholds": {"selectivity_margin": margin, "alpha": S.ALPHA, "ranks": q,
                           "rule": "some rank: one-sided t per rank, Bonferroni over ranks, BH over positions"}}
