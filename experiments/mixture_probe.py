"""python -m experiments.mixture_probe — one arm of the mixture study, one seed: its validation curve
and its gate verdict, to size a preset's steps before the study runs (the measurements in
experiments/mixture.toml's header).

    python -m experiments.mixture_probe --mixture reference --model 2 --set steps=2000 decay_step=1600

The arm is experiments.mixture's own job (same data, validation sample and run config) for
`--seed` (default 0), `[[models]]` number `--model` (0-based), the preset's `[pretrain]` with the
`--set key=value` changes (values read as TOML); with `--half` it also trains the half-length run
the gate's method "halving" compares with. Prints the curve (step: val_loss) and the verdict.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path

from graphpath.sweeps.convergence import check_job, label_variance
from graphpath.sweeps.runner import Job, SweepError, job_dir, require_complete, run_study_cli, run_sweep

from . import mixture


def parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SweepError(f"--set needs key=value, got {item!r}")
        try:
            out[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            raise SweepError(f"--set {key}: {value!r} is not a TOML value") from None
    return out


def _main(argv) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.mixture_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=mixture.DEFAULT_CONFIG)
    parser.add_argument("--out", type=Path, default=Path("runs/mixture-probe"))
    parser.add_argument("--mixture", required=True)
    parser.add_argument("--model", type=int, default=0, help="[[models]] index, 0-based")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="[pretrain] changes")
    parser.add_argument("--half", action="store_true", help="also the half-length run (method halving)")
    args = parser.parse_args(argv)
    study = mixture.load_study(args.config)
    if args.mixture not in study["_mixtures"]:
        raise SweepError(f"--mixture: no [mixtures.{args.mixture}] in {args.config}")
    if not 0 <= args.model < len(study["models"]):
        raise SweepError(f"--model must lie in 0..{len(study['models']) - 1}, got {args.model}")
    changes = parse_set(args.set)
    study["pretrain"].update(changes)
    mixture.config_text(mixture.run_config(study, study["models"][args.model], args.seed, None))  # bad keys: exit 2
    data = mixture.data_dir(args.out, args.mixture, args.seed)
    mixture.build_data(study, args.mixture, args.seed, data)
    key = f"{args.mixture}-model{args.model}-seed{args.seed}" + "".join(f"-{k}{v}" for k, v in sorted(changes.items()))
    jobs = [Job(key, mixture.run_config(study, study["models"][args.model], args.seed, data))]
    if args.half:
        jobs.append(Job(key + "-half", mixture.run_config(study, study["models"][args.model], args.seed, data, half=True)))
    start = time.time()
    require_complete(run_sweep(jobs, args.out, progress=False, workers=1))
    gate = study["_gates"]["pretrain"]
    baseline = label_variance(mixture.dataset_arrays(data / ("train" if gate.series == "loss" else "validation"))["label"])
    for job in jobs:
        rows = [json.loads(line) for line in (job_dir(args.out, job) / "metrics.jsonl").open()]
        curve = " ".join(f"{r['step']}:{r[gate.series]:.4g}" for r in rows if r.get(gate.series) is not None)
        print(f"{job.key}: {curve}")
    half = job_dir(args.out, jobs[1]) if args.half else None
    if gate.method == "windows" or half is not None:
        verdict = check_job(job_dir(args.out, jobs[0]), "pretrain", gate, baseline, half)
        print(json.dumps({k: verdict.get(k) for k in ("converged", "previous", "last", "change", "ratio", "reason")}))
    print(f"constant-predictor loss {baseline:.4g}; {time.time() - start:.0f} s", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    return run_study_cli("python -m experiments.mixture_probe", _main, argv, mixture.MixtureError, mixture.SpecError)


if __name__ == "__main__":
    sys.exit(main())
