"""`python -m graphpath.llc`: the local learning coefficient of every model of a run, at one calibrated setting.

    python -m graphpath.llc RUN_DIR [--stage pretrain|finetune] [--data SET] [--with-handcrafted]
    python -m graphpath.llc handcrafted --n N

1. The models (graphpath.analysis.targets): every seed's pre-training checkpoint on its own
   pre-training data and fine-tuned checkpoint on its own fine-tuning data (or the named `--data`
   set), and with `--with-handcrafted` the hand-built model on the run's pre-training data. Each
   model's fixed sample is the split `sample-llc` of its data (`--data-size` graphs; the training
   seed is the split's key, so seeds see different graphs and the interval over seeds covers the
   graph sample too).
2. Calibration (graphpath.analysis.llc.calibrate, CALIBRATION_RULE): the `--eps` x `--gamma` grid
   is run at the production settings (MSE, `--batch-size`, `--chains`, `--steps`, `--burn-in`, n,
   n*beta = n / log n, llc.NBETA_RULE) on three linear models built on the first model's own
   read-out features and labels (graphpath.analysis.llc_known): (a) a regular and (b) a degenerate
   read-out on the whitened features, against their known LLC K / 2, and (c) the regular read-out on
   the raw features against SGLD's expected reading there (from its Hessian spectrum), with the share of its LLC the
   localisation sees; beside them the raw model's Hessian spectrum (`llc_known.mixing`: the
   largest stable eps and the flattest direction's relaxation time per gamma). One setting is
   chosen for every model (the smallest passing gamma, then the largest eps). llc.json is rewritten
   after every grid row, so an interrupted or failed calibration keeps what it measured; when no
   setting passes, the command exits 2 with one line and no model is estimated.
3. Every model at that setting (a *localised* LLC at gamma, llc.ESTIMAND, not the learning
   coefficient itself), with its diagnostics (llc.DIAGNOSTIC_RULE): an estimate that
   fails them is recorded with its reasons and not reported as a result. `--workers K` estimates K
   models at once, each in its own process with one thread (the same numbers: each model's chains
   are seeded from the setting). Per group (pre-train,
   fine-tuned, hand-built) the results are pooled over seeds: mean and 95% t-interval.

Output: RUN_DIR/llc.json (schema in docs/contracts.md). The page shows the LLCs beside the basin.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from data_gen.splits import SPLITS, split_batch
from graphpath_common import provenance
from graphpath_common.locks import hold
from graphpath_common.cli import ArgumentParser, run_cli
from graphpath_common.rundir import RunDir

from graphpath.analysis.output import write_json
from graphpath.analysis.intervals import over_seeds
from graphpath.analysis import llc_known as K
from graphpath.analysis.llc import (CALIBRATION_RULE, CHECK_C_NOTE, DIAGNOSTIC_RULE, ESTIMAND, KNOWN_TOLERANCE, NBETA_RULE,
                                    SAMPLER_TOLERANCE, LLCConfig, LLCError, calibrate, default_nbeta, estimate_llc)
from graphpath.analysis.targets import Subject, add_arguments, subjects
from graphpath.core.checkpoint import CheckpointError

PROG = "python -m graphpath.llc"
SCHEMA_VERSION = 3
EPS_GRID = (3e-5, 1e-4, 3e-4)
GAMMA_GRID = (1.0, 10.0, 100.0)  # down to gamma 1: at gamma >= 100 localisation alone hides most of d / 2


def sample_for(subject: Subject, size: int, seed: int):
    return split_batch("sample-llc", spec=subject.spec, size=size, seed=seed, key=subject.seed or 0)


def graph_loss_on(batch):
    """Per-example MSE on rows of a fixed GraphBatch."""
    def loss_on(model, rows):
        part = batch[rows]
        return (model(part).float() - part.label.float()).pow(2).mean()
    return loss_on


@torch.no_grad()
def readout_features(subject: Subject, batch) -> torch.Tensor:
    """(N, D) what the model's read-out sees: the learned model's `hook_final`, the hand-built
    model's answer token at the end of its stream."""
    if hasattr(subject.model, "run_with_cache"):
        _, cache = subject.model.run_with_cache(batch, names=["hook_final"])
        return cache["hook_final"].float()
    n = batch.max_vertices
    return subject.model.stream(batch)[:, n].float()


def pooled(models: list[dict]) -> dict:
    """Per group: the LLC over seeds among the estimates that passed, and how many did."""
    groups = {}
    for m in models:
        groups.setdefault(m["group"], []).append(m)
    out = {}
    for name, rows in groups.items():
        values = [r["estimate"]["llc"] for r in rows if r["estimate"] and r["estimate"]["ok"]]
        out[name] = {"models": len(rows), "passed": len(values), **over_seeds(values)}
    return out


def measure(args, base: LLCConfig, out: Path, argv=None) -> dict:
    try:
        found = subjects(args.model, PROG, (args.stage,) if args.stage else None, args.data, args.with_handcrafted,
                         args.n)
    except CheckpointError as error:
        raise LLCError(str(error)) from None
    doc = {"schema": SCHEMA_VERSION, "estimand": ESTIMAND, "nbeta_rule": NBETA_RULE,
           "calibration_rule": CALIBRATION_RULE, "known_tolerance": KNOWN_TOLERANCE,
           "sampler_tolerance": SAMPLER_TOLERANCE, "diagnostic_rule": DIAGNOSTIC_RULE,
           "check_c_note": CHECK_C_NOTE,
           "production": {**asdict(base), "eps": None, "gamma": None},  # the chosen setting, once calibrated
           "data_size": args.data_size, "data_seed": args.data_seed,
           "eps_grid": args.eps, "gamma_grid": args.gamma, "calibration": {"rows": [], "chosen": None,
                                                                         "features_of": found[0].key},
           "models": [], "groups": {},
           "provenance": provenance.entry(provenance.command_line(PROG, argv), "cpu", torch.get_num_threads())}

    def save():
        write_json(out, doc)

    first = sample_for(found[0], args.data_size, args.data_seed)
    features = readout_features(found[0], first)
    x = K.known_models(features, first.label.float(), whitened=False)["x"]
    doc["calibration"]["nbeta"] = base.nbeta or default_nbeta(len(x))
    doc["calibration"]["mixing"] = K.mixing(x, doc["calibration"]["nbeta"], args.gamma)

    def keep(rows):
        doc["calibration"]["rows"] = rows
        save()

    try:
        return _estimate(args, base, found, features, first, doc, keep, save, out)
    except KeyboardInterrupt:
        if doc["calibration"]["rows"]:  # every row and model measured before the interrupt is kept
            provenance.finish(doc["provenance"], "interrupted")
            save()
        raise


def _estimate(args, base: LLCConfig, found: list[Subject], features, first, doc: dict, keep, save, out: Path) -> dict:
    """Calibrate, then estimate every model at the chosen setting; `doc` is saved as it grows."""
    chosen, rows = calibrate(features, first.label.float(), base, args.eps, args.gamma, not args.quiet, keep)
    doc["calibration"]["rows"] = rows
    if chosen is None:
        provenance.finish(doc["provenance"], "failed: calibration failed")
        save()
        message = (f"calibration failed: no setting of eps {args.eps} x gamma {args.gamma} passed all three checks "
                   f"({'; '.join(row_line(r) for r in rows)}); the rows are in {out}")
        if args.calibration_may_fail:
            print(f"{PROG}: no LLC reported: {message}", file=sys.stderr)
            return doc
        raise LLCError(message)
    row = next((r for r in rows if (r["eps"], r["gamma"]) == (chosen.eps, chosen.gamma)), None)
    doc["calibration"]["chosen"] = {"eps": chosen.eps, "gamma": chosen.gamma, "nbeta": doc["calibration"]["nbeta"],
                                    "reading_share": row["checks"]["own_features"]["reading_share"] if row else None}
    doc["production"] = asdict(chosen)  # the setting every model runs at
    records = [{"key": subject.key, "group": subject.group, "seed": subject.seed, "stage": subject.stage,
                "data": subject.data, "target": subject.description, "parameter_count": subject.parameter_count}
               for subject in found]

    def done(index: int, result: dict) -> None:  # llc.json keeps the models in `found` order as they finish
        records[index].update(result)
        doc["models"] = [r for r in records if "estimate" in r]
        doc["groups"] = pooled(doc["models"])
        save()

    if args.workers <= 1 or len(found) == 1:
        for index, subject in enumerate(tqdm(found, desc="llc", unit="model", disable=args.quiet)):
            batch = sample_for(subject, args.data_size, args.data_seed)
            done(index, estimate_subject(subject.model, batch, chosen, args.traces, not args.quiet, subject.key))
    else:
        _estimate_side_by_side(args, found, chosen, out, done)
    provenance.finish(doc["provenance"], "finished")
    save()
    return doc


def estimate_subject(model, batch, cfg: LLCConfig, traces: bool, progress: bool = False, desc: str = "sgld") -> dict:
    """One model's localised LLC at the calibrated setting `cfg` on its fixed sample `batch` (also a
    process pool's job: everything it takes pickles): {"estimate": estimate_llc's dict} or
    {"estimate": None, "diverged": why}. Deterministic: the chains' generators are seeded from cfg.seed."""
    try:
        est = estimate_llc(model.eval(), graph_loss_on(batch), len(batch), cfg, progress, desc=desc)
    except LLCError as error:
        return {"estimate": None, "diverged": str(error)}
    if not traces:
        est.pop("traces")
    return {"estimate": est}


def _estimate_side_by_side(args, found: list[Subject], chosen: LLCConfig, out: Path, done) -> None:
    """Every model in a local process pool, `args.workers` at once, one thread each; Ctrl-C
    interrupts the running chains (the models finished before it stay in llc.json)."""
    from graphpath.sweeps.executors import make_executor, shut_down_on_exit

    submit, close, _ = make_executor("local", out.parent, min(args.workers, len(found)), call=estimate_subject)
    running = {index: submit(subject.model, sample_for(subject, args.data_size, args.data_seed), chosen, args.traces)
               for index, subject in enumerate(found)}
    bar = tqdm(total=len(found), desc=f"llc, {args.workers} at once", unit="model", disable=args.quiet)
    with shut_down_on_exit(close, bar, running):
        while running:
            time.sleep(0.2)
            for index in [i for i, future in running.items() if future.done()]:
                done(index, running.pop(index).result())
                bar.update()


def row_line(row: dict) -> str:
    """One calibration row in words: each check's reading against its target."""
    parts = []
    for name, c in row["checks"].items():
        reading = "diverged" if c["llc"] is None else f"{c['llc']:.3g}"
        parts.append(f"{name} {reading} vs {c['target']:.3g}{'' if c['passes'] else ' FAIL'}")
    return f"eps {row['eps']:g} gamma {row['gamma']:g}: " + ", ".join(parts)


def _main(argv) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, "estimate")
    defaults = LLCConfig()
    parser.add_argument("--chains", type=int, default=defaults.chains)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--burn-in", dest="burn_in", type=int, default=defaults.burn_in)
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=defaults.batch_size)
    parser.add_argument("--nbeta", type=float, help="n * beta (default n / log n)")
    parser.add_argument("--data-size", dest="data_size", type=int, default=SPLITS["sample-llc"].size)
    parser.add_argument("--data-seed", dest="data_seed", type=int, default=SPLITS["sample-llc"].seed)
    parser.add_argument("--eps", type=float, nargs="+", default=list(EPS_GRID), help="SGLD step sizes to calibrate")
    parser.add_argument("--gamma", type=float, nargs="+", default=list(GAMMA_GRID), help="localisations to calibrate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--traces", action="store_true", help="keep every chain's loss trace in llc.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1,
                        help="models estimated at once, each in its own process with one thread (default 1: in "
                             "this process, with --threads); the same numbers either way")
    parser.add_argument("--out", help="output path (default RUN_DIR/llc.json)")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--calibration-may-fail", action="store_true",
                        help="when no setting passes calibration, record it in llc.json, print one line and exit 0 "
                             "(no LLC is reported); without it that outcome exits 2")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    if args.data_size < 16:
        raise LLCError(f"--data-size must be >= 16, got {args.data_size}")
    if args.workers < 1:
        raise LLCError(f"--workers must be >= 1, got {args.workers}")
    base = LLCConfig(eps=args.eps[0], gamma=args.gamma[0], nbeta=args.nbeta, chains=args.chains, steps=args.steps,
                     burn_in=args.burn_in, batch_size=args.batch_size, seed=args.seed)
    for value in args.eps + args.gamma:
        LLCConfig(eps=value, gamma=value)  # every grid value is checked before any work
    home = Path("runs") / f"handcrafted-n{args.n}" if args.model == "handcrafted" else Path(args.model)
    out = Path(args.out) if args.out else RunDir(home).llc
    with hold(out.parent, PROG):  # writable, and no other writer, before the chains run
        doc = measure(args, base, out, argv)
    chosen = doc["calibration"]["chosen"]
    if chosen is None:  # --calibration-may-fail: the failure was recorded and said in one line
        return 0
    for row in doc["calibration"]["rows"]:
        print(f"calibration {row_line(row)}{' (passes)' if row['passes'] else ''}")
    print(f"calibrated setting: eps {chosen['eps']:g}, gamma {chosen['gamma']:g}, nbeta {doc['calibration']['nbeta']:.4g} "
          f"({len(doc['calibration']['rows'])} tried); every LLC below is {ESTIMAND}")
    share = chosen["reading_share"]
    if share is not None:
        print(f"at this setting the raw read-out's reading is {share:.0%} of its true LLC (rank / 2); {CHECK_C_NOTE}")
    for m in doc["models"]:
        est = m["estimate"]
        if est is None:
            print(f"{m['key']}: diverged at the calibrated setting ({m['diverged']})")
        elif not est["ok"]:
            print(f"{m['key']}: refused ({'; '.join(est['failed'])})")
        else:
            print(f"{m['key']}: LLC {est['llc']:.3g} (MCSE {est['mcse']:.2g}, R-hat {est['rhat']:.3f}, ESS {est['ess']:.0f})")
    for name, g in doc["groups"].items():
        ci = g["ci95"]
        print(f"{name}: {g['passed']}/{g['models']} passed" + (f", LLC {g['mean']:.3g}" if g["mean"] is not None else "")
              + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else ""))
    print(f"wrote {out}")
    return 0


def main(argv=None) -> int:
    return run_cli(PROG, _main, argv, LLCError)


if __name__ == "__main__":
    sys.exit(main())
