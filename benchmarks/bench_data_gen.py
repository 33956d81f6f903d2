"""How fast data_gen makes labelled, balanced graphs, next to a per-graph Python loop.

    python benchmarks/bench_data_gen.py                      # the study's sizes (n <= 15)
    python benchmarks/bench_data_gen.py --n-max 8 --finetune-n-max 5 --small-target 5
    python benchmarks/bench_data_gen.py --presets pretrain --size 4000000

For every preset it prints balanced graphs per second of
  python    a plain per-graph generator in the study's style (random module, BFS with a deque,
            the study's acceptance rule), one core, measured in this run
  kernel    the compiled kernel (`data_gen.fast`) called in this process, one core
  kernelcpu the same per CPU second of this process (robust to a busy machine)
  1w / 2w   the build's engine: forked worker processes drawing fixed-size shards (as
            `python -m data_gen.build` does, minus the disk writes), pool already warm
and the ratios kernel / python and 2w / 1w. Figures depend on how busy the machine is.
"""
from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_gen import PRESET_NAMES, GraphSpec, study_presets  # noqa: E402
from data_gen.dataset import shard_key  # noqa: E402
from data_gen.bfs import bfs_from, neighbour_lists  # noqa: E402
from data_gen.fast import fast_arrays, study_keep_table, warm_up  # noqa: E402


# ---- the baseline: one graph at a time, in plain Python ----------------------------------------

def python_graph(spec: GraphSpec, keep: list, rnd: random.Random):
    """One accepted graph of a reference-family spec: (edges, n, target, label, path_length).
    The study's rules: n drawn once, a rejected graph redrawn at that n; a small on-path target
    above t_max redraws the graph."""
    unreachable = spec.max_vertices
    n = rnd.randint(spec.n_min, spec.n_max)
    while True:
        edges = []
        for _ in range(n):
            a, b = rnd.randint(1, n), rnd.randint(1, n)
            if a != b:
                edges.append((min(a, b), max(a, b)))
        neighbours = neighbour_lists(n, edges)
        from_one = bfs_from(neighbours, 1, unreachable)
        d = from_one[2]
        if spec.target == "any":
            t = rnd.randint(2, spec.target_max)
            return edges, n, t, from_one[t] if t <= n else unreachable, d
        if spec.target == "on_path" and d == unreachable:
            continue
        if spec.balance == "study" and rnd.random() >= keep[d]:
            continue
        if spec.target == "fixed":
            return edges, n, 2, d, d
        from_two = bfs_from(neighbours, 2, unreachable)
        by_position = {}
        for v in range(1, n + 1):
            if from_one[v] >= 1 and from_one[v] + from_two[v] == d:
                by_position.setdefault(from_one[v], []).append(v)
        positions = sorted(by_position)
        k = rnd.choices(positions, weights=positions)[0]
        t = rnd.choice(by_position[k])
        if t <= (spec.t_max or n):
            return edges, n, t, k, d


def python_rate(spec: GraphSpec, seconds: float) -> float:
    rnd, keep = random.Random(0), list(study_keep_table(spec))
    made, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            python_graph(spec, keep, rnd)
        made += 200
    return made / (time.perf_counter() - start)


# ---- the compiled paths ---------------------------------------------------------------------

def kernel_rate(spec: GraphSpec, size: int) -> tuple[float, float]:
    """Graphs per wall-clock second and per CPU second of this process (the latter is what a
    core can do even while other jobs share the machine)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    fast_arrays(spec, size, key=1)
    return size / (time.perf_counter() - start), size / (time.process_time() - start_cpu)


def _shard(task):
    spec_dict, count, index = task
    arrays, _ = fast_arrays(GraphSpec.from_dict(spec_dict), count, shard_key(0, index))
    return len(arrays["label"])


def pool_rate(pool, spec: GraphSpec, size: int, shard_size: int) -> float:
    counts = [shard_size] * (size // shard_size)
    tasks = [(spec.to_dict(), count, i) for i, count in enumerate(counts)]
    start = time.perf_counter()
    made = sum(pool.imap_unordered(_shard, tasks))
    return made / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESET_NAMES), choices=PRESET_NAMES)
    parser.add_argument("--size", type=int, default=2_000_000, help="graphs per compiled measurement")
    parser.add_argument("--shard-size", type=int, default=65_536)
    parser.add_argument("--python-seconds", type=float, default=2.0, help="time for the Python loop")
    parser.add_argument("--n-max", type=int, default=15)
    parser.add_argument("--finetune-n-max", type=int, default=7)
    parser.add_argument("--small-target", type=int, default=7)
    args = parser.parse_args(argv)
    specs = study_presets(args.n_max, args.finetune_n_max, args.small_target)
    start = time.perf_counter()
    warm_up()
    print(f"kernel ready in {time.perf_counter() - start:.1f} s (compiled, or loaded from numba's cache)")
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    pools = {w: context.Pool(w) for w in (1, 2)}
    for pool in pools.values():  # warm: workers exist and have touched the kernel
        pool.map(_shard, [(specs["pretrain"].to_dict(), 1000, i) for i in range(4)])
    print(f"{'preset':28s} {'python':>9s} {'kernel':>10s} {'kernelcpu':>10s} {'1w':>10s} {'2w':>10s} "
          f"{'kernel/py':>9s} {'2w/1w':>6s}   (balanced graphs/s)")
    for name in args.presets:
        spec = specs[name]
        baseline = python_rate(spec, args.python_seconds)
        single, single_cpu = kernel_rate(spec, args.size)
        one = pool_rate(pools[1], spec, args.size, args.shard_size)
        two = pool_rate(pools[2], spec, args.size, args.shard_size)
        print(f"{name:28s} {baseline:9,.0f} {single:10,.0f} {single_cpu:10,.0f} {one:10,.0f} {two:10,.0f} "
              f"{single / baseline:8.0f}x {two / one:5.2f}x", flush=True)
    for pool in pools.values():
        pool.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
