"""Time to quality at the main job's shapes (d 64, 6 layers, graphs n <= 8), in one run.

1. Throughput per core, lever by lever: one training step (forward, backward, clipping, AdamW) of
   each variant, timed in rounds that alternate between the variants, as examples per CPU-second
   of this process (robust to other work on the machine) with the median ratio to today's path
   and its spread over the rounds:
     today      padded batches of 256, one chunk (the preset before this benchmark existed)
     buckets    padded batches of 1024 sorted into 8 trimmed chunks
     packed     the packed layout (real tokens only, attention per edge count) at 256 and at the
                new recipe's batch, and with AdamW's fused step
     compiled   (--compile) torch.compile of the padded model, shapes fixed (every batch padded to 8)
   Then where one step of the new recipe spends its time (torch.profiler): the matrix products'
   share, and the per-core ceiling if everything else cost nothing, against this core's own GEMM
   rate at the MLP's shapes and at 1024^3.
2. A multi-seed job's aggregate: today's path trains its seeds one after another in one process;
   the new one trains one seed per core side by side (as `--seeds` does). Each runs for --seconds
   of wall time; aggregate = examples of all processes / wall time.
3. Held-out pre-train MSE at equal examples: the new recipe (experiments/small.toml), today's
   preset and the study's recipe (post-norm, Adam, constant lr 5e-4, biases, no clipping), each
   trained by the train command for --examples graphs (its schedule ending there), side by side.

    python benchmarks/bench_time_to_quality.py            # about 20 CPU-minutes (part 3: the preset's budget)
    python benchmarks/bench_time_to_quality.py --quick    # about 2 CPU-minutes: shorter, noisier
Figures depend on the machine and how busy it is; the load average is printed beside them.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from graphpath_common.jsonfile import write_json  # noqa: E402 - after the path above

PRESET = ROOT / "experiments" / "small.toml"
# The main job's pre-training recipe before this benchmark (experiments/small.toml at that time).
TODAY = {"batch_size": 256, "lr": 1e-3, "min_lr": 1e-5, "warmup_steps": 150, "decay": "cosine",
         "weight_decay": 0.01, "grad_clip": 1.0, "buckets": 1, "pack": False}
# The study's recipe at the preset's sizes: post-norm with biases, Adam (no weight decay), a
# constant lr of 5e-4 (its first phase), no clipping, no warmup; batch 256 (its 2^15 does not fit).
STUDY_MODEL = {"norm": "post", "attn_bias": True}
STUDY_TRAIN = {"batch_size": 256, "lr": 5e-4, "min_lr": 5e-4, "warmup_steps": 0, "decay": "constant",
               "weight_decay": 0.0, "buckets": 1, "pack": False}


def load_preset() -> dict:
    return tomllib.loads(PRESET.read_text())


# ---- 1. throughput per core --------------------------------------------------------------------

def make_step(batch_size: int, buckets: int = 1, pack: bool = False, fused: bool = False,
              compiled: bool = False, seed: int = 0):
    """(step(), batch_size): one training step of the preset's model on the next of 8 batches."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from data_gen import StreamingSampler
    from graphpath.core.config import load_config, stage_specs
    from graphpath.core.model import GraphTransformer

    config = load_config(PRESET)
    spec = stage_specs(config)["pretrain"]
    sampler = StreamingSampler(spec, batch_size, np.random.default_rng(seed))
    batches = [next(sampler) for _ in range(8)]
    torch.manual_seed(seed)
    model = GraphTransformer(config.model)
    if compiled:  # fixed shapes: every batch padded to the longest edge list n_max allows
        for batch in batches:
            batch.edges = F.pad(batch.edges, (0, 0, 0, spec.max_edges - batch.edges.shape[1]))
        model._forward = torch.compile(model._forward, dynamic=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True if fused else None)
    count = iter(range(10 ** 9))

    def step():
        batch = batches[next(count) % len(batches)]
        pred = model(batch, pack=True) if pack else model(batch, buckets=buckets)
        loss = F.mse_loss(pred, batch.label.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    for _ in range(3):  # warm up (and compile)
        step()
    return step


def levers(new_batch: int, rounds: int, seconds: float, with_compile: bool) -> dict:
    variants = {"today: padded, batch 256": dict(batch_size=256),
                "buckets: padded, batch 1024, 8 chunks": dict(batch_size=1024, buckets=8),
                "packed, batch 256": dict(batch_size=256, pack=True),
                f"packed, batch {new_batch}": dict(batch_size=new_batch, pack=True),
                f"packed, batch {new_batch}, fused AdamW (new)": dict(batch_size=new_batch, pack=True, fused=True)}
    if with_compile:
        variants["compiled: padded to 8 edges, batch 256"] = dict(batch_size=256, compiled=True)
    steps = {}
    for name, kwargs in variants.items():
        start = time.perf_counter()
        steps[name] = (make_step(**kwargs), kwargs["batch_size"])
        if kwargs.get("compiled"):
            print(f"  (compiling took {time.perf_counter() - start:.0f} s)", flush=True)
    speeds = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (step, batch_size) in steps.items():
            start, done = time.thread_time(), 0
            while time.thread_time() - start < seconds:
                step()
                done += batch_size
            speeds[name].append(done / (time.thread_time() - start))
    base = speeds[next(iter(variants))]
    print(f"\n1. throughput per core (examples per CPU-second, {rounds} rounds of {seconds:g} s each):")
    out = {}
    for name, values in speeds.items():
        ratios = [v / b for v, b in zip(values, base)]
        out[name] = {"examples_per_cpu_s": statistics.median(values), "ratio": statistics.median(ratios),
                     "ratio_range": [min(ratios), max(ratios)]}
        print(f"  {name:48s} {statistics.median(values):7,.0f}   x{statistics.median(ratios):.2f} "
              f"[{min(ratios):.2f}, {max(ratios):.2f}]")
    return out


def gemm_rate(m: int, k: int, n: int, seconds: float = 1.0) -> float:
    """GFLOP/s of one (m, k) @ (k, n) float32 product on this thread."""
    import torch

    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    start, done = time.thread_time(), 0
    while time.thread_time() - start < seconds:
        a @ b
        done += 1
    return 2 * m * k * n * done / (time.thread_time() - start) / 1e9


GEMMS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def time_split(new_batch: int, new_ratio: float, steps: int = 20) -> dict:
    """Where one training step of the new recipe spends its CPU time: matrix products vs the rest.

    The ceiling `1 / gemm_share` is the per-core speed-up if every other operation cost nothing and
    the products ran as they do now; it bounds what fusing the small operations can buy. `new_ratio`:
    the new recipe's speed against today's path (part 1), to state the ceiling against today's too."""
    from torch.profiler import ProfilerActivity, profile

    step = make_step(new_batch, pack=True, fused=True)
    for _ in range(5):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    gemm = sum(e.self_cpu_time_total for e in events if e.key in GEMMS)
    mlp, big = gemm_rate(720, 64, 256), gemm_rate(1024, 1024, 1024)
    share = gemm / total
    print(f"\n1b. one step of the new recipe (batch {new_batch}, {steps} steps profiled): "
          f"{total / steps / 1e3:.1f} ms of CPU, matrix products {share:.0%} of it; "
          f"ceiling with everything else free x{1 / share:.2f} (x{new_ratio / share:.2f} against today's path). This core's GEMM rate: {mlp:.0f} GFLOP/s "
          f"at the MLP's (720 x 64) @ (64 x 256), {big:.0f} at 1024^3")
    return {"step_ms": total / steps / 1e3, "gemm_share": share, "ceiling": 1 / share,
            "ceiling_against_today": new_ratio / share,
            "gemm_gflops_mlp_shape": mlp, "gemm_gflops_1024": big}


# ---- 2. a multi-seed job's aggregate ----------------------------------------------------------

def _one_thread() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def train_for(seconds: float, kwargs: dict, seed: int) -> tuple[int, float]:
    """(examples, CPU-seconds) of one process training for `seconds` of wall time after its warm-up."""
    step = make_step(seed=seed, **kwargs)
    done, start, cpu = 0, time.perf_counter(), time.thread_time()
    while time.perf_counter() - start < seconds:
        step()
        done += kwargs["batch_size"]
    return done, time.thread_time() - cpu


def aggregate(new_batch: int, seconds: float, workers: int) -> dict:
    today = dict(batch_size=256)
    new = dict(batch_size=new_batch, pack=True, fused=True)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
        list(pool.map(train_for, [0.1] * workers, [today] * workers, range(workers)))  # import everything once
        alone = [pool.submit(train_for, seconds, today, 0).result()]
        side = list(pool.map(train_for, [seconds] * workers, [new] * workers, range(workers)))
    # wall: what this machine gave now; own cores: each process's examples per CPU-second, summed
    # (what the job gets when nothing else runs, whatever else ran during the benchmark)
    one, many = (sum(e for e, _ in runs) / seconds for runs in (alone, side))
    one_own, many_own = (sum(e / max(c, 1e-9) for e, c in runs) for runs in (alone, side))
    print(f"\n2. a multi-seed job, {seconds:g} s of wall time each (load average now "
          f"{os.getloadavg()[0]:.1f} on {workers} CPUs); examples/s of wall time, and with each process on a core "
          f"of its own (examples per CPU-second, summed):")
    print(f"  today: seeds one after another, one process   {one:8,.0f} wall {one_own:8,.0f} own cores")
    print(f"  new:   {workers} seeds side by side, one each      {many:8,.0f} wall {many_own:8,.0f} own cores   "
          f"x{many / one:.2f} wall, x{many_own / one_own:.2f} own cores")
    return {"today_examples_per_s": one, "new_examples_per_s": many, "ratio": many / one,
            "today_own_cores": one_own, "new_own_cores": many_own, "ratio_own_cores": many_own / one_own,
            "workers": workers, "load_average": os.getloadavg()[0]}


# ---- 3. held-out MSE at equal examples -------------------------------------------------------

def recipe_configs(examples: int, evaluations: int) -> dict[str, dict]:
    """Raw run configs (pre-training only) of the three recipes, each ending at `examples` graphs."""
    preset = load_preset()
    recipes = {"new (experiments/small.toml)": ({}, {}),
               "today's preset": ({}, TODAY),
               "the study's recipe": (STUDY_MODEL, STUDY_TRAIN)}
    out = {}
    for name, (model, train) in recipes.items():
        raw = {**preset, "model": {**preset["model"], **model}, "train": {**preset["train"], **train}}
        if name == "the study's recipe":
            raw["train"].pop("grad_clip", None)
        steps = -(-examples // raw["train"]["batch_size"])
        raw["train"].update(steps=steps, eval_every=max(1, steps // evaluations), checkpoint_every=10 ** 9)
        raw["train"].pop("time_budget", None)
        out[name] = raw
    return out


def quality(examples: int, evaluations: int, workers: int) -> dict:
    from graphpath.core.config import from_dict, to_toml
    from graphpath.sweeps.executors import execute

    configs = recipe_configs(examples, evaluations)
    curves = {}
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread) as pool:
        futures = {}
        for index, (name, raw) in enumerate(configs.items()):
            run_dir = Path(tmp) / str(index)
            run_dir.mkdir()
            futures[name] = (run_dir, pool.submit(execute, str(run_dir), to_toml(from_dict(raw)), "pretrain", None))
        for name, (run_dir, future) in futures.items():
            result = future.result()
            if not result["ok"]:
                raise SystemExit(f"bench_time_to_quality: the {name} run failed:\n{Path(result['log']).read_text()[-2000:]}")
            lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
            curves[name] = [(m["examples"], m["eval_loss"]) for m in lines if "eval_loss" in m]
    new, today, study = (curves[name] for name in configs)
    print(f"\n3. held-out pre-train MSE at equal examples (each schedule ends at {examples:,} graphs):")
    print("  " + " " * 30 + "".join(f"{e:>12,}" for e, _ in new))
    for name, curve in curves.items():
        print(f"  {name:30s}" + "".join(f"{mse:12.4g}" for _, mse in curve))
    final = {name: curve[-1][1] for name, curve in curves.items()}
    mine, before, study_final = (final[name] for name in configs)
    print(f"  final MSE ratios: today's preset / new x{before / mine:.2f}, the study's recipe / new "
          f"x{study_final / mine:.2f}")
    reached = next((e for e, mse in new if mse <= before), None)
    if reached is not None:
        print(f"  the new recipe reached today's final MSE ({before:.4g}) by {reached:,} graphs: "
              f"x{examples / reached:.2f} fewer examples (at the evaluation points)")
    return {"examples": examples, "curves": curves, "final": final}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short timings and 120K examples (noisier)")
    parser.add_argument("--examples", type=int, default=None,
                        help="graphs per recipe in part 3 (default: the preset's steps x batch_size)")
    parser.add_argument("--seconds", type=float, default=None, help="wall seconds per process in part 2 (default 30)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds in part 1 (default 6)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compiling)")
    parser.add_argument("--skip-quality", action="store_true", help="parts 1 and 2 only")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    for name in ("examples", "seconds", "rounds"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            print(f"bench_time_to_quality: --{name} must be positive", file=sys.stderr)
            return 2
    _one_thread()
    workers = max(1, len(os.sched_getaffinity(0)))
    new_batch = load_preset()["train"]["batch_size"]
    print(f"main job's shapes: experiments/small.toml (new recipe batch {new_batch}); one torch thread per process; "
          f"{workers} CPUs; load average {os.getloadavg()[0]:.1f}")
    doc = {"levers": levers(new_batch, args.rounds or (3 if args.quick else 6), 0.5 if args.quick else 1.5,
                            args.compile)}
    doc["time_split"] = time_split(new_batch, doc["levers"][f"packed, batch {new_batch}, fused AdamW (new)"]["ratio"])
    doc["aggregate"] = aggregate(new_batch, args.seconds or (8.0 if args.quick else 30.0), workers)
    if not args.skip_quality:
        train = load_preset()["train"]
        doc["quality"] = quality(args.examples or (120_000 if args.quick else train["steps"] * train["batch_size"]),
                                 4, workers)
    if args.json:
        write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
