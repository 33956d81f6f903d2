"""python -m experiments.partial — partial fine-tuning (Lu et al. 2021; LoRA, Hu et al. 2021).

For every seed and every (pre-training task A, fine-tuning task B) in `pairs` (data_gen.tasks
names; A != B is the papers' question, transfer across tasks): one pre-training on A, then one
fine-tuning job on B per (mode, rank, body, lr): modes full | norm-embed | readout | lora (one job
per rank in `ranks`), each on the pre-trained body and, as Lu et al.'s control (section 3.2,
"random initialization"), on the run's untrained initialisation (`body = "random"`), at every lr of
`lrs` (one list for every mode, or a table {mode: list}: a readout learns at lrs that
wreck a full fine-tuning), for `[finetune]`'s steps (`[finetune_by_mode.MODE]` overrides any of its
keys for one mode: the CPU default starts the read-out mode at its least-squares read-out,
`readout_init = "lstsq"`, graphpath.training.partial.fit_readout, so that linear probe is at its
optimum before the first step and its steps only check the plateau). A pair is cross-task when its two tasks ask different questions (data_gen.tasks: the
distance tasks share one; degree, reachable, ... each another). Each (pair, variant) keeps the lr with the lowest mean loss over seeds on B's validation
sample (split study-validation), and is marked `lr_at_edge` when that lr is the smallest or
largest of its grid (not tuned: the best may lie outside); only that lr's final models are reported, on B's test sample
(split study-test) and, when B is the study's `distance-onpath`, on the out-of-distribution sets
of graphpath.evaluation.sets (`sets`, drawn per seed). Nothing reported is selected on the data it
reports. Every job is judged by the convergence gate ([convergence]); a variant whose jobs did
not all converge is marked and left out of the tests.

Finding per (pair, mode): does the pre-trained body beat the random one? Per seed, log(test MSE of
the random body / test MSE of the pre-trained body); a 95% t-interval over seeds (each seed its
own test sample) and a two-sided t-test, Benjamini-Hochberg across the (pair, mode) tests
(scipy.stats.false_discovery_control; experiments.transfer_stats.p_value).

    python -m experiments.partial                              # CPU default (experiments/partial.toml)
    python -m experiments.partial --config experiments/partial-gpu.toml --out runs/partial-gpu

Output: `partial.json` (docs/contracts.md), figures `figures/partial-finetune.html` and
`figures/partial-sets.html`.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

from data_gen import SpecError
from data_gen.tasks import SUITE, SUITE_FIELDS
from graphpath.core.config import from_dict, stage_specs
from graphpath.core.model import ModelConfig
from graphpath.evaluation.predict import score_model
from graphpath.evaluation.scores import ci_summary
from graphpath.evaluation.sets import EvalError, define_sets, load_set, resolve_names
from graphpath.sweeps.convergence import Criterion, criteria, gate_summary
from graphpath.sweeps.runner import SweepError as StudyError
from graphpath.sweeps.runner import (Job, config_text, executor_options, job_dir, require_complete, run_study_cli,
                                     run_sweep, save_study, study_parser)
from graphpath.training.partial import BODIES, MODES, expected_trainable
from graphpath_common.keys import reject_unknown_keys, require_seeds
from graphpath_common.locks import hold
from graphpath_common.toml import read_toml

from . import protocol
from .partial_figures import write_figures
from .transfer_stats import p_value

DEFAULT_CONFIG = Path(__file__).resolve().parent / "partial.toml"
KEYS = ("name", "seeds", "pairs", "modes", "ranks", "lora_alpha", "bodies", "lrs", "sets", "eval_size", "test_size",
        "validation_size", "fdr", "convergence", "data", "model", "pretrain", "finetune", "finetune_by_mode", "answers")
STUDY_PAIR = ["distance-12", "distance-onpath"]
GATES = {"pretrain": Criterion(max_ratio=0.1), "finetune": Criterion()}


def load_study(path: Path) -> dict:
    study = read_toml(path, StudyError)
    reject_unknown_keys(KEYS, study, StudyError, "partial study")
    study = {"name": "partial", "seeds": [0], "pairs": [STUDY_PAIR], "modes": list(MODES), "ranks": [1, 4],
             "bodies": list(BODIES), "sets": ["tests", "shift"], "eval_size": 1024, "test_size": 2048,
             "validation_size": 1024, "fdr": 0.05, "pretrain": {}, "finetune": {}, "finetune_by_mode": {}, "answers": {},
             **study}
    seeds = study["seeds"]
    require_seeds(seeds, StudyError)
    pairs = study["pairs"]
    if (not isinstance(pairs, list) or not pairs or not all(isinstance(p, list) and len(p) == 2 for p in pairs)
            or len({tuple(p) for p in pairs}) != len(pairs)):
        raise StudyError(f"pairs must list distinct [pretrain task, fine-tuning task] pairs, got {pairs!r}")
    unknown = [t for p in pairs for t in p if t not in SUITE]
    if unknown:
        raise StudyError(f"unknown task(s) {unknown} in pairs (the suite: {', '.join(SUITE)})")
    bad = [m for m in study["modes"] if m not in MODES]
    if bad or not study["modes"]:
        raise StudyError(f"unknown mode(s) {bad} (modes: {', '.join(MODES)})")
    bad = [b for b in study["bodies"] if b not in BODIES]
    if bad or not study["bodies"]:
        raise StudyError(f"unknown body {bad} (bodies: {', '.join(BODIES)})")
    if "lora" in study["modes"] and (not study["ranks"] or not all(
            isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in study["ranks"])):
        raise StudyError(f"ranks must be positive integers, got {study['ranks']!r}")
    for key in ("eval_size", "test_size", "validation_size"):
        if not isinstance(study[key], int) or study[key] < 16:
            raise StudyError(f"{key} must be an integer >= 16, got {study[key]!r}")
    study["lrs"] = check_mode_lrs(study.get("lrs"), study["modes"])
    try:
        study["sets"] = resolve_names(study["sets"])
    except EvalError as error:
        raise StudyError(str(error)) from None
    study["_gates"] = criteria(study.get("convergence"), GATES)
    pre = study["pretrain"]
    study["_gates"]["pretrain"].check_every(pre.get("steps", 1000), pre.get("eval_every", 100), "[pretrain]")
    by_mode = study["finetune_by_mode"]
    if not isinstance(by_mode, dict) or not all(isinstance(v, dict) for v in by_mode.values()):
        raise StudyError(f"finetune_by_mode must be a table of tables (mode -> [finetune] keys), got {by_mode!r}")
    reject_unknown_keys(tuple(study["modes"]), by_mode, StudyError, "finetune_by_mode")
    for mode in study["modes"]:
        fine = {**study["finetune"], **by_mode.get(mode, {})}
        study["_gates"]["finetune"].check_every(fine.get("steps", 100), fine.get("eval_every", 100), f"[finetune] ({mode})")
    for pair in pairs:
        raw = run_config(study, seeds[0], pair, None, any_lr(study))
        protocol.require_depth(study.get("model", {}), from_dict(raw).data.n_max, "[model]")
        for variant in variants(study):
            for lr in study["lrs"][variant["mode"]]:
                config_text(run_config(study, seeds[0], pair, variant, lr))
    return study


def check_mode_lrs(lrs, modes: list[str]) -> dict[str, list[float]]:
    """{mode: lr grid} from `lrs`: one list shared by every mode, or a table naming every mode."""
    if not isinstance(lrs, dict):
        grid = protocol.check_lrs(lrs, "lrs")
        return {mode: grid for mode in modes}
    reject_unknown_keys(tuple(modes), lrs, StudyError, "lrs")
    missing = [mode for mode in modes if mode not in lrs]
    if missing:
        raise StudyError(f"lrs names no grid for mode(s) {', '.join(missing)}")
    return {mode: protocol.check_lrs(lrs[mode], f"lrs.{mode}") for mode in modes}


def any_lr(study: dict) -> float:
    """An lr of the grid, for configs whose fine-tuning never runs or is never read."""
    return study["lrs"][study["modes"][0]][0]


def pair_name(pair: list[str]) -> str:
    return f"{pair[0]}--{pair[1]}"


def variants(study: dict) -> list[dict]:
    """Every (mode, rank, body) fine-tuning of one pair and seed, in a fixed order."""
    out = []
    for body in study["bodies"]:
        for mode in study["modes"]:
            for rank in (study["ranks"] if mode == "lora" else [None]):
                name = f"{mode}{'' if rank is None else f'-r{rank}'}-{body}"
                out.append({"name": name, "mode": mode, "rank": rank, "body": body})
    return out


def run_config(study: dict, seed: int, pair: list[str], variant: dict | None, lr: float) -> dict:
    """A job's run config: the pair's pre-training (`variant` None: its [finetune] is a placeholder
    the job never runs, so the fine-tuning grid does not enter its hash) or one fine-tuning."""
    finetune = {"steps": 1}
    if variant is not None:
        finetune = {**study["finetune"], **study["finetune_by_mode"].get(variant["mode"], {}), "lr": lr,
                    "mode": variant["mode"], "body": variant["body"]}
        finetune["min_lr"] = min(finetune.get("min_lr", 0.0), lr)
        if variant["rank"] is not None:
            finetune["lora_rank"] = variant["rank"]
            if "lora_alpha" in study:
                finetune["lora_alpha"] = study["lora_alpha"]
    data = {**study.get("data", {}), "pretrain_task": pair[0], "finetune_task": pair[1]}
    return {"name": study["name"], "seed": seed, "data": data, "model": dict(study.get("model", {})),
            "train": dict(study["pretrain"]), "finetune": finetune}


def make_jobs(study: dict) -> dict[str, tuple[Job, str]]:
    jobs = {}
    for seed in study["seeds"]:
        for pair in study["pairs"]:
            base = f"seed{seed}/{pair_name(pair)}"
            jobs[f"{base}/pretrain"] = (Job(f"{base}/pretrain", run_config(study, seed, pair, None, any_lr(study))),
                                        "pretrain")
            for v in variants(study):
                for lr in study["lrs"][v["mode"]]:
                    key = f"{base}/{protocol.lr_name(lr)}/{v['name']}"
                    jobs[key] = (Job(key, run_config(study, seed, pair, v, lr), "finetune", after=f"{base}/pretrain"),
                                 "finetune")
    return jobs


def score_jobs(study: dict, out: Path) -> dict:
    """{(pair, variant): {lr (the chosen), validation {lr: mean over seeds}, per_seed [{test, sets}]}}:
    every lr's final model on the validation sample, then only the chosen lr's on the test sample
    and the sets."""
    from graphpath.core.resolve import load

    results = {}
    for pair in study["pairs"]:
        name = pair_name(pair)
        spec = stage_specs(from_dict(run_config(study, 0, pair, None, any_lr(study))))["finetune"]
        sets = define_sets(study.get("data", {})) if pair[1] == STUDY_PAIR[1] else {}
        samples = {s: {kind: protocol.study_sample(kind, "partial", pair[1], spec, study[f"{kind}_size"], s)[0]
                       for kind in ("validation", "test")} for s in study["seeds"]}
        prepared = {s: {n: (sets[n], *load_set(sets[n], study["eval_size"], s + 1, None)) for n in study["sets"]}
                    for s in study["seeds"]} if sets else {}
        for v in variants(study):
            def run(lr, seed):
                return job_dir(out, Job(f"seed{seed}/{name}/{protocol.lr_name(lr)}/{v['name']}", {}))

            lr, means = protocol.choose_lr({lr: [protocol.score(run(lr, s), "finetune", samples[s]["validation"])["loss"]
                                                 for s in study["seeds"]] for lr in study["lrs"][v["mode"]]})
            per_seed = []
            for seed in study["seeds"]:
                entry = {"test": protocol.score(run(lr, seed), "finetune", samples[seed]["test"]), "sets": {}}
                if prepared:
                    scored, _ = score_model(load(run(lr, seed)).model, prepared[seed], None, progress=False)
                    entry["sets"] = {k: {"mse": b["mse"], "accuracy": b["accuracy"]} for k, b in scored.items()}
                per_seed.append(entry)
            results[(name, v["name"])] = {"lr": lr, "validation": {str(k): m for k, m in means.items()},
                                          "per_seed": per_seed}
    return results


def analyse(study: dict, results: dict, verdicts: dict) -> dict:
    n_vertices = from_dict(run_config(study, 0, study["pairs"][0], None, any_lr(study))).data.n_max
    model_config = ModelConfig.from_dict({**study.get("model", {}), "max_vertices": n_vertices})
    rows = []
    for pair in study["pairs"]:
        name = pair_name(pair)
        for v in variants(study):
            chosen = results[(name, v["name"])]
            per_seed = chosen["per_seed"]
            keys = [f"seed{s}/{name}/{protocol.lr_name(chosen['lr'])}/{v['name']}" for s in study["seeds"]]
            keys += [f"seed{s}/{name}/pretrain" for s in study["seeds"]]
            sets = sorted({k for r in per_seed for k in r["sets"]})
            rows.append({**v, "pair": name, "pretrain_task": pair[0], "finetune_task": pair[1],
                         "cross_task": SUITE_FIELDS[pair[0]]["task"] != SUITE_FIELDS[pair[1]]["task"], "lr": chosen["lr"], "validation": chosen["validation"],
                         "lr_at_edge": protocol.at_edge(chosen["lr"], study["lrs"][v["mode"]]),
                         "trainable": expected_trainable(model_config, v["mode"], v["rank"]),
                         "converged": all(verdicts[k]["converged"] for k in keys),
                         "test": {m: ci_summary([r["test"][m] for r in per_seed]) for m in ("loss", "accuracy")},
                         "sets": {s: {m: ci_summary([r["sets"][s][m] for r in per_seed]) for m in ("mse", "accuracy")}
                                  for s in sets},
                         "per_seed": per_seed})
    tests = body_tests(study, rows)
    public = {k: study[k] for k in KEYS if k in study}
    gate = {"criteria": {k: {**c.to_dict(), "text": c.describe()} for k, c in study["_gates"].items()},
            **gate_summary(verdicts), "variants_marked": [f"{r['pair']}/{r['name']}" for r in rows if not r["converged"]],
            "lr_at_edge": [f"{r['pair']}/{r['name']}" for r in rows if r["lr_at_edge"]],
            "verdicts": verdicts}
    return {"schema": 2, "study": public, "total_parameters": expected_trainable(model_config, "full"),
            "variants": rows, "body_tests": tests, "gate": gate, "answers": study["answers"]}


def body_tests(study: dict, rows: list[dict]) -> list[dict]:
    """Per (pair, mode): log(random-body MSE / pre-trained-body MSE) per seed, interval, BH."""
    from scipy import stats

    if set(study["bodies"]) != set(BODIES):
        return []
    out = []
    for pair in study["pairs"]:
        for v in variants(study):
            if v["body"] != "pretrained":
                continue
            mine = {r["body"]: r for r in rows if r["pair"] == pair_name(pair) and r["mode"] == v["mode"]
                    and r["rank"] == v["rank"]}
            ratio = [math.log(b["test"]["loss"] / a["test"]["loss"]) for a, b in
                     zip(mine["pretrained"]["per_seed"], mine["random"]["per_seed"])]
            out.append({"pair": pair_name(pair), "mode": v["name"].rsplit("-", 1)[0], "log_ratio": ci_summary(ratio),
                        "per_seed": ratio, "p": p_value(ratio),
                        "converged": mine["pretrained"]["converged"] and mine["random"]["converged"]})
    tested = [t for t in out if t["converged"]]
    if tested:
        for test, q in zip(tested, stats.false_discovery_control([t["p"] for t in tested], method="bh")):
            test["q"], test["finding"] = float(q), bool(q <= study["fdr"])
    for test in out:
        test.setdefault("q", None)
        test.setdefault("finding", False)
    return out


def _main(argv) -> int:
    parser = study_parser("python -m experiments.partial", __doc__.split("\n\n")[0], DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    executor = executor_options(args)
    study = load_study(args.config)
    out = args.out or Path("runs") / study["name"]
    start = time.time()
    with hold(out, "python -m experiments.partial"):  # writable, and no other writer, before any job runs
        jobs = make_jobs(study)
        require_complete(run_sweep([job for job, _ in jobs.values()], out, progress=not args.quiet,
                                   desc="partial jobs", **executor))
        verdicts = protocol.gate(out, {k: (job.stage, rule, job.config) for k, (job, rule) in jobs.items()},
                                 study["_gates"])
        doc = analyse(study, score_jobs(study, out), verdicts)
        doc["seconds"] = time.time() - start  # wall time of this invocation (jobs already done are not rerun)
        path = save_study(doc, out, "partial.json", write_figures, figures=not args.no_figures)
    found = [f"{t['pair']} {t['mode']} ({np.exp(t['log_ratio']['mean']):.2g}x)" for t in doc["body_tests"] if t["finding"]]
    print(f"{path}: {len(doc['variants'])} variants x {len(study['seeds'])} seeds; {doc['gate']['converged']} of "
          f"{doc['gate']['jobs']} jobs converged, {len(doc['gate']['variants_marked'])} variants marked, "
          f"{len(doc['gate']['lr_at_edge'])} chose the edge of their lr grid; the pre-trained body beats the random one after BH in "
          f"{len(found)} of {len(doc['body_tests'])} (pair, mode) tests: {', '.join(found) or 'none'}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    return run_study_cli("python -m experiments.partial", _main, argv, SpecError, EvalError)


if __name__ == "__main__":
    sys.exit(main())
