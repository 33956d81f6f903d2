"""`python -m graphpath.basin`: the basin radius, bracketed by geometric bisection on sigma.

`graphpath.analysis.perturb` reads a radius off a fixed sigma grid. Here sigma is searched: a sigma
"succeeds" when at least half of the seeds recover (held-out MSE <= threshold within the step
budget, graphpath.analysis.perturb's recovery). Starting from [lo, hi], lo is divided by `factor` until it
succeeds and hi multiplied until it fails (each at most `expand` times); then sigma = sqrt(lo*hi)
replaces whichever end it agrees with, until hi / lo <= `ratio` or `budget` sigmas have been
tried. The result is the interval (lo succeeds, hi fails), or an open end (null) when the budget
ran out before the bracket closed. A model whose unperturbed held-out MSE is already above the
threshold gets a `note`: its bracket says how far training gets it, not how wide a basin is.
Recovery is not monotone in sigma for every seed, so the bracket is the boundary this search
found, not a proof that every sigma below lo recovers. A perturbed model whose loss starts below
the threshold counts as recovered even if the recovery steps then raise it (`final` records the
last loss).

Models: `RUN_DIR` — its final checkpoint ("learned"), the hand-built model of the same size
("handcrafted") and the hand-built model with its attention sharpness lowered
(`beta_hop`, `beta_copy` = `--soft-betas`, default 5 8: less sharp, and no longer exact at
larger n — see its `loss_before`; "handcrafted-soft"), all on the run's data; or `handcrafted --n N` for the two hand-built ones.
Recovery settings come from a [perturb] table (`--config`, e.g. experiments/perturb-basin.toml)
with graphpath.analysis.perturb's keys. When the run directory holds `llc.json` its estimates are copied
beside the intervals. Output: `RUN_DIR/basin.json` (schema in docs/contracts.md).
"""
from __future__ import annotations

import copy
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from data_gen.splits import split_batch
from graphpath_common import provenance
from graphpath_common.cli import ArgumentParser, run_cli
from graphpath_common.jsonfile import write_json
from graphpath_common.locks import hold
from graphpath_common.keys import reject_unknown_keys
from graphpath_common.rundir import RunDir
from graphpath_common.toml import read_toml
from handcrafted import build_bfs_transformer

from graphpath.analysis.perturb import PerturbError, PerturbConfig, held_out_loss, load_target, perturb_, recover

PROG = "python -m graphpath.basin"
SCHEMA_VERSION = 1


def trial(base, spec, eval_batch, cfg: PerturbConfig, sigma: float, device) -> dict:
    """Every seed at one sigma: {sigma, recovered [bool per seed], final [loss per seed], success}."""
    recovered, final = [], []
    for seed in cfg.seeds:
        model = copy.deepcopy(base)
        perturb_(model, cfg.kind, sigma, seed, cfg.group, cfg.scale)
        curve = recover(model, spec, eval_batch, cfg, seed, device)
        recovered.append(any(loss <= cfg.threshold for _, loss in curve))
        last = curve[-1][1]
        final.append(last if math.isfinite(last) else None)
    return {"sigma": sigma, "recovered": recovered, "final": final,
            "success": sum(recovered) >= len(recovered) / 2}


def check_bracket(lo: float, hi: float, budget: int, ratio: float, factor: float = 10.0) -> None:
    """PerturbError unless the search's settings are finite with 0 < lo < hi, ratio > 1, factor > 1
    and budget >= 2."""
    finite = all(math.isfinite(v) for v in (lo, hi, ratio, factor))
    if not (finite and 0 < lo < hi and ratio > 1 and factor > 1 and budget >= 2):
        raise PerturbError(f"bracket needs finite numbers with 0 < lo < hi, ratio > 1, factor > 1, and budget >= 2 "
                           f"(got lo {lo}, hi {hi}, ratio {ratio}, factor {factor}, budget {budget})")


def bracket(succeeds, lo: float, hi: float, budget: int = 10, ratio: float = 1.5, factor: float = 10.0,
            expand: int = 3) -> dict:
    """Geometric bisection of a success/failure boundary. `succeeds(sigma) -> dict` with a bool
    `success` (see `trial`). Returns {lo, hi, trials, closed}; lo/hi are null when not found."""
    check_bracket(lo, hi, budget, ratio, factor)
    trials: list[dict] = []

    def test(sigma):
        trials.append(succeeds(sigma))
        return trials[-1]["success"]

    good = bad = None
    for _ in range(expand + 1):
        if len(trials) >= budget:
            break
        if test(lo):
            good = lo
            break
        bad, lo = lo, lo / factor
    for _ in range(expand + 1):
        if good is None or bad is not None or len(trials) >= budget:
            break
        if not test(hi):
            bad = hi
            break
        good, hi = hi, hi * factor
    while good is not None and bad is not None and bad / good > ratio and len(trials) < budget:
        mid = math.sqrt(good * bad)
        if test(mid):
            good = mid
        else:
            bad = mid
    closed = good is not None and bad is not None and bad / good <= ratio
    return {"lo": good, "hi": bad, "closed": closed, "trials": trials}


def models_for(cfg: PerturbConfig, soft_betas: tuple[float, float]):
    """[(name, model, description)], the data spec and the output directory: the learned model on
    the data it was trained on (graphpath.analysis.perturb.load_target), and the two hand-built
    models beside it when that data asks for distances (what they answer)."""
    base, spec, description, out_dir = load_target(cfg)
    n = spec.max_vertices
    found = [] if cfg.model == "handcrafted" else [("learned", base, description)]
    if spec.task != "distance":
        print(f"note: no hand-built models beside {cfg.model}: they answer distances, it was trained to answer "
              f"{spec.task!r}", file=sys.stderr)
        return found, spec, out_dir
    found.append(("handcrafted", build_bfs_transformer(n), {"model": "handcrafted", "n": n}))
    found.append(("handcrafted-soft", build_bfs_transformer(n, beta_hop=soft_betas[0], beta_copy=soft_betas[1]),
                  {"model": "handcrafted", "n": n, "beta_hop": soft_betas[0], "beta_copy": soft_betas[1]}))
    return found, spec, out_dir


def _main(argv) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("model", help="a run directory, or 'handcrafted' with --n")
    parser.add_argument("--n", type=int)
    parser.add_argument("--config", help="TOML with a [perturb] table (recovery settings)")
    parser.add_argument("--lo", type=float, default=0.01)
    parser.add_argument("--hi", type=float, default=1.0)
    parser.add_argument("--budget", type=int, default=8, help="most sigmas tried per model")
    parser.add_argument("--ratio", type=float, default=1.5, help="stop once hi / lo <= this")
    parser.add_argument("--soft-betas", dest="soft_betas", type=float, nargs=2, default=[5.0, 8.0])
    parser.add_argument("--steps", type=int)
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--out")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    values = {}
    if args.config:
        table = read_toml(args.config, PerturbError, "config ")
        values = table.get("perturb", table)
        reject_unknown_keys(PerturbConfig, values, PerturbError, f"{args.config} [perturb]")
    values.update({"model": args.model, "n": args.n, "threads": args.threads, "figures": False})
    values.update({k: getattr(args, k) for k in ("steps", "seeds") if getattr(args, k) is not None})
    try:
        cfg = PerturbConfig(**values)
    except TypeError as error:
        raise PerturbError(str(error)) from None
    if not all(math.isfinite(b) and b > 0 for b in args.soft_betas):
        raise PerturbError(f"--soft-betas must be two finite numbers > 0, got {args.soft_betas}")
    check_bracket(args.lo, args.hi, args.budget, args.ratio)
    torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    invocation = provenance.entry(provenance.command_line(PROG, argv), cfg.device, cfg.threads)
    models, spec, out_dir = models_for(cfg, tuple(args.soft_betas))
    out = Path(args.out) if args.out else RunDir(out_dir).basin
    with hold(out.parent, PROG):  # writable, and no other writer, before the search runs
        measure(args, cfg, models, spec, out_dir, out, device, invocation)
    return 0


def measure(args, cfg: PerturbConfig, models, spec, out_dir: Path, out: Path, device, invocation: dict) -> None:
    """Bracket every model's radius and write basin.json (with `invocation`, its provenance entry)."""
    eval_batch = split_batch("heldout-perturb", spec=spec, size=cfg.eval_size, seed=cfg.eval_seed).to(device)
    llc_path = RunDir(out_dir).llc
    try:
        llc = json.loads(llc_path.read_text())["models"] if llc_path.is_file() else {}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PerturbError(f"cannot read the LLC estimates in {llc_path}: {error}") from None
    results = {}
    for name, model, description in tqdm(models, desc="basin", disable=args.quiet):
        model = model.to(device).eval()
        before = held_out_loss(model, eval_batch)
        found = bracket(lambda s: trial(model, spec, eval_batch, cfg, s, device), args.lo, args.hi,
                        args.budget, args.ratio)
        if before > cfg.threshold:  # success then needs training to beat the model itself: not a basin
            found["note"] = (f"unperturbed held-out MSE {before:.4g} is above the recovery threshold "
                             f"{cfg.threshold:g}: the bracket measures training, not a basin")
        llc_name = {"learned": description.get("stage")}.get(name, name)
        results[name] = {"target": description, "loss_before": before, **found,
                         "llc": (llc.get(llc_name, {}).get("estimate") or {}).get("llc")}
    doc = {"schema": SCHEMA_VERSION, "data": spec.to_dict(), "settings": asdict(cfg), "lo_start": args.lo,
           "hi_start": args.hi, "budget": args.budget, "ratio": args.ratio, "models": results,
           "provenance": provenance.finish(invocation, "finished")}
    write_json(out, doc)
    for name, r in results.items():
        print(f"{name}: basin radius in [{r['lo']}, {r['hi']}] after {len(r['trials'])} sigmas"
              f"{'' if r['closed'] else ' (bracket not closed)'}; LLC {r['llc']}"
              + (f" [{r['note']}]" if "note" in r else ""))
    print(f"wrote {out}")


def main(argv=None) -> int:
    return run_cli(PROG, _main, argv, PerturbError)


if __name__ == "__main__":
    sys.exit(main())
