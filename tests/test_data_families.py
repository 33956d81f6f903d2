"""Graph families draw what they claim: uniform labelled trees and paths, the reference family's
pair law and edge counts, and the same distributions from both backends."""
import itertools
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from data_gen import GraphSpec, sample_arrays

ALPHA = 1e-3


def edge_sets(arrays):
    return [frozenset(map(tuple, e[e[:, 0] > 0].tolist())) for e in arrays["edges"]]


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("family,expected_kinds", [("tree", 16), ("path", 12)])
def test_trees_and_paths_are_uniform(family, expected_kinds, backend):
    # 4 labelled vertices: 4^(4-2) = 16 labelled trees (Cayley), 4!/2 = 12 labelled paths
    spec = GraphSpec(family=family, n_min=4, n_max=4, target="any")
    counts = Counter(edge_sets(sample_arrays(spec, 16_000, 21, backend=backend)))
    assert len(counts) == expected_kinds
    assert stats.chisquare(list(counts.values())).pvalue > ALPHA


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_reference_pairs_are_uniform_and_self_pairs_dropped(backend):
    n = 5
    spec = GraphSpec(n_min=n, n_max=n, target="any")
    arrays = sample_arrays(spec, 20_000, 2, backend=backend)
    edges = arrays["edges"].reshape(-1, 2)
    edges = edges[edges[:, 0] > 0]
    pairs = Counter(map(tuple, edges.tolist()))
    assert set(pairs) == set(itertools.combinations(range(1, n + 1), 2))
    assert stats.chisquare(list(pairs.values())).pvalue > ALPHA
    # each of the n candidate pairs is a self-pair with probability 1/n: kept edges ~ Binomial(n, 1 - 1/n)
    kept = (arrays["edges"][..., 0] > 0).sum(1)
    observed = np.bincount(kept, minlength=n + 1)
    expected = stats.binom.pmf(np.arange(n + 1), n, 1 - 1 / n) * len(kept)
    useful = expected > 5
    observed, expected = observed[useful], expected[useful]
    assert stats.chisquare(observed, expected * observed.sum() / expected.sum()).pvalue > ALPHA


@pytest.mark.parametrize("family", ["reference", "erdos_renyi", "tree", "path"])
def test_backends_agree_for_every_family(family):
    spec = GraphSpec(family=family, n_min=3, n_max=12, target="any")
    fast = sample_arrays(spec, 10_000, 1, backend="numba")
    slow = sample_arrays(spec, 10_000, 2, backend="numpy")
    for name, values in (("label", lambda a: a["label"]), ("edges", lambda a: (a["edges"][..., 0] > 0).sum(1)),
                         ("path_length", lambda a: a["path_length"])):
        top = 70
        table = np.stack([np.bincount(values(fast), minlength=top), np.bincount(values(slow), minlength=top)])
        table = table[:, table.sum(0) > 0]
        assert stats.chi2_contingency(table).pvalue > ALPHA, name


def test_erdos_renyi_average_degree():
    spec = GraphSpec(family="erdos_renyi", n_min=20, n_max=20, target="any", avg_degree=3.0)
    arrays = sample_arrays(spec, 4000, 9)
    degree = 2 * (arrays["edges"][..., 0] > 0).sum(1) / 20
    assert abs(degree.mean() - 3.0) < 0.05
