"""The compiled sampler: one numba kernel that draws, labels and balances graphs one at a time.

Why a per-graph loop here when `sampler.py` is vectorized: compiled, a graph costs tens of
nanoseconds, and a scalar loop can stop the moment the answer is known, which a batch cannot.
For study balancing the acceptance uniform u is drawn first, then the graph is dropped
  1. before its edges, if u >= the best keep probability of any distance n vertices allow;
  2. while drawing reference edges, at a (1, 2) pair, if distance 1 would be rejected;
  3. during BFS from 1: as soon as vertex 2 is reached (the distance decides), or once no
     distance still possible could be kept.
BFS itself stops once the distances the graph needs (1-2, and 1-t for `any`) are known.
`sampler.py` stays the readable, vectorized cross-check.

Randomness is counter-based: raw graph number i of a stream with 64-bit key `base` draws from
its own splitmix64 sequence started at mix(base + i * golden). So what graph i looks like never
depends on how many numbers earlier graphs used, and skipping work for a rejected graph (the
early exits) changes no later graph: `early_exit=False` gives byte-identical output (tested).
Bounded integers use Lemire's multiply-shift on 32-bit halves (bias < n / 2^32 <= 2^-26).

Bitsets: vertex v is bit v - 1 of a uint64 (so n <= 64). Shapes in `fill`:
    C  graphs to fill; W  edge slots per graph (spec.max_edges); V  max_vertices
    edges_out uint8 [C, W, 2]; num_vertices_out, target_out, label_out, path_out uint8 [C]
    keep float64 [V + 1]         study rule: keep probability by key (key V = unreachable)
    keep_bound float64 [V+1, V+1] keep_bound[n, k]: best keep probability of any key still
                                 possible for an n-vertex graph once BFS layer k lacks vertex 2
    keep_bound[n] float64 [V+1]  the row fill passes to _bfs_from_one as its stop bound
    remaining int64 [V + 1]      uniform rule: graphs still wanted per label (decremented)
    raw_counts, kept_counts int64 [V + 1]  per key: raw draws (only with early_exit=False), kept
"""
from __future__ import annotations

import numpy as np
from numba import njit

FAMILY_CODES = {"reference": 0, "erdos_renyi": 1, "tree": 2, "path": 3}
TARGET_CODES = {"fixed": 0, "on_path": 1, "any": 2}
BALANCE_CODES = {"none": 0, "study": 1, "uniform": 2}

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_LOW32 = np.uint64(0xFFFFFFFF)
_ONE = np.uint64(1)
_ZERO = np.uint64(0)
_S11, _S27, _S30, _S31, _S32, _S58 = (np.uint64(s) for s in (11, 27, 30, 31, 32, 58))
_UNIT = 1.0 / 9007199254740992.0  # 2^-53
# count-trailing-zeros by de Bruijn multiplication: index of a single set bit
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_CTZ = np.zeros(64, dtype=np.int64)
for _i in range(64):
    _CTZ[((1 << _i) * 0x03F79D71B4CB0A89 % 2**64) >> 58] = _i


@njit(cache=True, nogil=True)
def _mix(z):
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(cache=True, nogil=True)
def _next(state):
    """splitmix64: (new state, 64 random bits)."""
    state = state + _GOLDEN
    return state, _mix(state)


@njit(cache=True, nogil=True)
def _below(bits32, bound):
    """A 32-bit random value mapped onto [0, bound) (Lemire multiply-shift)."""
    return np.int64((bits32 * np.uint64(bound)) >> _S32)


@njit(cache=True, nogil=True)
def _lowest_vertex(bits):
    """Vertex id (1-based) of the lowest set bit of a nonzero bitset."""
    low = bits & (~bits + _ONE)
    return _CTZ[(low * _DEBRUIJN) >> _S58] + 1


@njit(cache=True, nogil=True)
def _shuffle_edges(state, ea, eb, m):
    for k in range(m - 1, 0, -1):
        state, z = _next(state)
        j = _below(z & _LOW32, k + 1)
        ea[k], ea[j] = ea[j], ea[k]
        eb[k], eb[j] = eb[j], eb[k]
    return state


@njit(cache=True, nogil=True)
def _draw_reference(n, state, ea, eb, adjacency, stop_on_12):
    """The study's family straight into edges and adjacency: n uniform pairs, self-pairs
    dropped, repeats kept. Returns (state, m), m = -1 if stopped at a (1, 2) edge.

    Branch-free on purpose: a self-pair is written and not counted (m += a != b), and its
    self-loop bit in the adjacency is harmless because BFS masks out reached vertices."""
    for v in range(1, n + 1):
        adjacency[v] = _ZERO
    m = 0
    for _ in range(n):
        state, z = _next(state)
        a = 1 + _below(z & _LOW32, n)
        b = 1 + _below(z >> _S32, n)
        low, high = min(a, b), max(a, b)
        if stop_on_12 and low == 1 and high == 2:
            return state, -1
        ea[m], eb[m] = low, high
        m += a != b
        adjacency[a] |= _ONE << np.uint64(b - 1)
        adjacency[b] |= _ONE << np.uint64(a - 1)
    return state, m


@njit(cache=True, nogil=True)
def _draw_edges(family, n, state, er_threshold, ea, eb, scratch):
    """Edges of one graph of the other families into ea/eb (a < b): (state, edge count m)."""
    m = 0
    if family == 1:  # erdos_renyi: each pair independently, threshold = p * 2^32
        threshold = er_threshold[n]
        for a in range(1, n):
            for b in range(a + 1, n + 1):
                state, z = _next(state)
                if (z & _LOW32) < threshold:
                    ea[m], eb[m] = a, b
                    m += 1
    elif family == 2:  # tree: decode a uniform Pruefer sequence (smallest leaf first)
        degree = scratch
        for v in range(1, n + 1):
            degree[v] = 1
        sequence = scratch[n + 1:]
        for k in range(n - 2):
            state, z = _next(state)
            sequence[k] = 1 + _below(z & _LOW32, n)
            degree[sequence[k]] += 1
        for k in range(n - 2):
            leaf = 1
            while degree[leaf] != 1:
                leaf += 1
            parent = sequence[k]
            ea[m], eb[m] = min(leaf, parent), max(leaf, parent)
            m += 1
            degree[leaf] -= 1
            degree[parent] -= 1
        last = np.empty(2, dtype=np.int64)
        found = 0
        for v in range(1, n + 1):
            if degree[v] == 1:
                last[found] = v
                found += 1
        ea[m], eb[m] = last[0], last[1]
        m += 1
    else:  # path: a uniformly random order of the n vertices
        order = scratch
        for v in range(n):
            order[v] = v + 1
        for k in range(n - 1, 0, -1):
            state, z = _next(state)
            j = _below(z & _LOW32, k + 1)
            order[k], order[j] = order[j], order[k]
        for k in range(n - 1):
            ea[m], eb[m] = min(order[k], order[k + 1]), max(order[k], order[k + 1])
            m += 1
    state = _shuffle_edges(state, ea, eb, m)  # edge order carries no information
    return state, m


@njit(cache=True, nogil=True)
def _expand(frontier, reach, adjacency):
    """The next BFS layer: neighbours of `frontier` not yet in `reach`."""
    grown = _ZERO
    while frontier != _ZERO:
        low = frontier & (~frontier + _ONE)
        grown |= adjacency[_CTZ[(low * _DEBRUIJN) >> _S58] + 1]
        frontier ^= low
    return grown & ~reach


@njit(cache=True, nogil=True)
def _count_bits(bits):
    count = 0
    while bits != _ZERO:
        bits &= bits - _ONE
        count += 1
    return count


@njit(cache=True, nogil=True)
def _on_path_target(state, n, d, t_cap, adjacency, layer1, layer2):
    """A vertex on a shortest 1-2 path (distance d): position k weighted by k, then uniform
    among the candidates at that position with id <= t_cap. Returns (state, target, k)."""
    reach = _ONE << _ONE
    layer2[0] = reach
    for k in range(1, d + 1):  # BFS from 2, only as deep as the path
        layer2[k] = _expand(layer2[k - 1], reach, adjacency)
        reach |= layer2[k]
    cap = min(n, t_cap)
    id_mask = _LOW32 | (_LOW32 << _S32) if cap == 64 else (_ONE << np.uint64(cap)) - _ONE
    total = 0
    for k in range(1, d + 1):
        if layer1[k] & layer2[d - k] & id_mask:
            total += k
    state, z = _next(state)
    pick = _below(z & _LOW32, total)
    k = 1
    while True:
        candidates = layer1[k] & layer2[d - k] & id_mask
        if candidates:
            if pick < k:
                break
            pick -= k
        k += 1
    j = _below(z >> _S32, _count_bits(candidates))
    for _ in range(j):
        candidates &= candidates - _ONE
    return state, _lowest_vertex(candidates), k


@njit(cache=True, nogil=True)
def _bfs_from_one(adjacency, t, need_t, unreachable, layer1, stop_bound, u):
    """BFS from vertex 1, layer by layer into `layer1`, stopping once the 1-2 distance (and the
    1-t distance if `need_t`) is known, or, when `stop_bound` is given, once u >= stop_bound[k]
    with vertex 2 still unreached (no distance still possible would be kept).
    Returns (d12, dt, rejected)."""
    d12, dt = unreachable, unreachable
    reach = _ONE
    layer1[0] = reach
    frontier = reach
    k = 0
    while frontier != _ZERO:
        frontier = _expand(frontier, reach, adjacency)
        k += 1
        reach |= frontier
        layer1[k] = frontier
        if d12 == unreachable and frontier & (_ONE << _ONE):
            d12 = k
        if need_t and dt == unreachable and frontier & (_ONE << np.uint64(t - 1)):
            dt = k
        if d12 != unreachable and (not need_t or dt != unreachable):
            break
        if stop_bound.shape[0] > 0 and d12 == unreachable and u >= stop_bound[k]:
            return d12, dt, True
    return d12, dt, False


@njit(cache=True, nogil=True)
def _draw_graph(family, n, state, er_threshold, ea, eb, scratch, adjacency, stop_on_12):
    """One graph of `family` on n vertices into ea/eb and its adjacency bitsets.
    Returns (state, m); m = -1 if a reference graph was stopped at a (1, 2) pair."""
    if family == 0:
        return _draw_reference(n, state, ea, eb, adjacency, stop_on_12)
    state, m = _draw_edges(family, n, state, er_threshold, ea, eb, scratch)
    for v in range(1, n + 1):
        adjacency[v] = _ZERO
    for i in range(m):
        adjacency[ea[i]] |= _ONE << np.uint64(eb[i] - 1)
        adjacency[eb[i]] |= _ONE << np.uint64(ea[i] - 1)
    return state, m


@njit(cache=True, nogil=True)
def _store(row, ea, eb, m, n, t, label, d12, edges_out, num_vertices_out, target_out, label_out, path_out):
    """Write one accepted graph into output row `row`."""
    for i in range(m):
        edges_out[row, i, 0] = ea[i]
        edges_out[row, i, 1] = eb[i]
    num_vertices_out[row] = n
    target_out[row] = t
    label_out[row] = label
    path_out[row] = d12


@njit(cache=True, nogil=True)
def fill(base, first_index, family, n_min, n_max, target_mode, t_hi, balance, early_exit,
         hold_n, t_redraw, er_threshold, keep, keep_bound, remaining,
         edges_out, num_vertices_out, target_out, label_out, path_out, raw_counts, kept_counts):
    """Fill every row of the outputs with accepted graphs; returns the next raw graph index.

    hold_n: n is drawn once per output row and a rejected graph is redrawn at the same n (the
    study's rule); otherwise every raw graph draws its own n. t_redraw (on_path with t_hi < n):
    an on-path target above t_hi rejects the graph (the study's rule); otherwise only ids <= t_hi
    are candidates. Each raw graph draws its n bits either way, so graph i's stream is fixed.
    """
    count, width = edges_out.shape[0], edges_out.shape[1]
    unreachable = keep.shape[0] - 1
    ea = np.zeros(width + 1, dtype=np.int64)
    eb = np.zeros(width + 1, dtype=np.int64)
    scratch = np.zeros(2 * n_max + 4, dtype=np.int64)
    adjacency = np.zeros(66, dtype=np.uint64)
    layer1 = np.zeros(66, dtype=np.uint64)
    layer2 = np.zeros(66, dtype=np.uint64)
    no_bound = np.zeros(0)
    study_exit = early_exit and balance == 1
    filled, index, n = 0, first_index, -1
    while filled < count:
        state = _mix(base + np.uint64(index) * _GOLDEN)  # graph `index`'s own stream
        index += 1
        u = 0.0
        if balance == 1:
            state, z = _next(state)
            u = (z >> _S11) * _UNIT
        state, z = _next(state)
        if n < 0 or not hold_n:
            n = n_min + _below(z & _LOW32, n_max - n_min + 1)
        t = 2
        if target_mode == 2:
            t = 2 + _below(z >> _S32, t_hi - 1)
        if study_exit and u >= keep_bound[n, 0]:
            continue  # no distance an n-vertex graph can have would be kept
        # a (1, 2) edge settles the distance at 1: stop drawing if 1 would be rejected
        state, m = _draw_graph(family, n, state, er_threshold, ea, eb, scratch, adjacency,
                               study_exit and u >= keep[1])
        if m < 0:
            continue
        need_t = target_mode == 2 and 2 < t <= n
        d12, dt, rejected = _bfs_from_one(adjacency, t, need_t, unreachable, layer1,
                                          keep_bound[n] if study_exit else no_bound, u)
        if rejected:
            continue
        label = dt if (target_mode == 2 and t != 2) else d12
        key = label  # the balancing key: the label, or the 1-2 distance for on_path
        if not early_exit:
            raw_counts[key] += 1
        if target_mode == 1 and d12 == unreachable:
            continue  # on-path targets need a 1-2 path
        if balance == 1 and not u < keep[key]:
            continue
        if target_mode == 1:
            cap = n if t_redraw else t_hi
            state, t, label = _on_path_target(state, n, d12, cap, adjacency, layer1, layer2)
            if t > t_hi:
                continue  # the study redraws the graph when its on-path target is too large
        if balance == 2:
            if remaining[label] <= 0:
                continue
            remaining[label] -= 1
        kept_counts[key] += 1
        _store(filled, ea, eb, m, n, t, label, d12, edges_out, num_vertices_out, target_out,
               label_out, path_out)
        filled += 1
        n = -1  # the next output row draws its own n
    return index
