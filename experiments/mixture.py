"""python -m experiments.mixture — pre-training mixture coverage (Yadlowsky et al. 2023).

Each `[mixtures.NAME]` (data_gen.mixture: families, size ranges, distance ranges, weights summing
to 1) becomes a fixed training dataset of `train_size` graphs per seed, its vertex ids randomly
relabelled (`relabel = true`, data_gen.mixture.relabel_ids: every id's embedding is trained,
whatever the graph's size); every `[[models]]` size is pre-trained on it (the distance 1 -> t
task, any t) and scored on every `[tests.NAME]` distribution: the mixtures' components, families
held out of them, blends, larger n and longer distances, one test sample per seed (split
mixture-tests, draw = seed + 1). Per (mixture, test, seed): coverage on inputs only
(data_gen.mixture.coverage), the labels' support apart (label_support), and the share of test
graphs using a vertex id no training graph used (unseen_ids): a test with any is analysed apart,
outside the regression. Every job is judged by the convergence gate ([convergence.pretrain],
graphpath.sweeps.convergence) on its validation loss: a sample of `validation_size` graphs from
its own mixture, drawn apart from the training set (split study-validation) and scored at every
evaluation, against that sample's constant predictor; with method "halving" (the CPU default's)
each job has a twin trained for half the steps (`<key>-half`, never scored on tests) whose final
validation loss its own is compared with. A cell whose jobs did not all converge is marked and
left out; the preset's `gate_rationale` says why the criterion, and the page shows it.
The question, answered by experiments.coverage_fit: does log test MSE follow coverage, model size,
or both (per-seed regressions, t-intervals over seeds, Bonferroni over the two coefficients)?

    python -m experiments.mixture                          # CPU default (experiments/mixture.toml)
    python -m experiments.mixture --config experiments/mixture-gpu.toml

Output (`--out`, default runs/<name>): `jobs/`, `data/`, `mixture.json` (docs/contracts.md),
figures `mixture-coverage.html`, `mixture-matrix.html`, `mixture-size.html`.
"""
from __future__ import annotations

import sys
import time
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_gen import SpecError
from data_gen.dataset import load_dataset
from data_gen.mixture import (Mixture, MixtureError, as_batch, build_mixture_dataset, coverage, label_support,
                              sample_mixture, unseen_ids)
from data_gen.splits import split_rng, split_seed_sequence
from graphpath.evaluation.predict import predict
from graphpath.evaluation.scores import ci_summary
from graphpath.sweeps.convergence import (Criterion, check_job, criteria, gate_summary, halved_stage,
                                          label_variance)
from graphpath.sweeps.runner import SweepError as StudyError
from graphpath.sweeps.runner import (Job, config_text, executor_options, job_dir, non_embedding_parameters,
                                     require_complete, run_study_cli, run_sweep, save_study, study_parser)
from graphpath_common.keys import reject_unknown_keys, require_seeds
from graphpath_common.locks import hold
from graphpath_common.toml import read_toml

from . import coverage_fit, protocol
from .mixture_figures import write_figures

DEFAULT_CONFIG = Path(__file__).resolve().parent / "mixture.toml"
KEYS = ("name", "seeds", "max_vertices", "train_size", "validation_size", "test_size", "relabel", "models",
        "pretrain", "mixtures", "tests", "convergence", "gate_rationale", "answers")
MIN_TRAIN, MIN_TEST = 256, 64
GATES = {"pretrain": Criterion(max_ratio=0.1, series="val_loss")}


def load_study(path: Path) -> dict:
    study = read_toml(path, StudyError)
    reject_unknown_keys(KEYS, study, StudyError, "mixture study")
    study = {"name": "mixture", "seeds": [0], "max_vertices": 10, "train_size": 20000, "validation_size": 1024,
             "test_size": 1024,
             "relabel": True, "pretrain": {}, "answers": {}, "gate_rationale": "", **study}
    seeds = study["seeds"]
    require_seeds(seeds, StudyError)
    for key, low in (("train_size", MIN_TRAIN), ("validation_size", MIN_TEST), ("test_size", MIN_TEST)):
        if not isinstance(study[key], int) or study[key] < low:
            raise StudyError(f"{key} must be an integer >= {low} (the smallest sensible), got {study[key]!r}")
    if not isinstance(study["gate_rationale"], str):
        raise StudyError(f"gate_rationale must be a string (why the criterion), got {study['gate_rationale']!r}")
    if not isinstance(study["relabel"], bool):
        raise StudyError(f"relabel must be true or false, got {study['relabel']!r}")
    models = study.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, dict) for m in models):
        raise StudyError("models must list at least one [[models]] table")
    for key in ("mixtures", "tests"):
        if not isinstance(study.get(key), dict) or not study[key]:
            raise StudyError(f"the study needs at least one [{key}.NAME] table")
    vocabulary = study["max_vertices"]
    study["_mixtures"] = {name: Mixture.from_dict(name, values, vocabulary) for name, values in study["mixtures"].items()}
    study["_tests"] = {name: Mixture.from_dict(name, values, vocabulary) for name, values in study["tests"].items()}
    study["_gates"] = criteria(study.get("convergence"), GATES)
    pre, gate = study["pretrain"], study["_gates"]["pretrain"]
    every = "log_every" if gate.series == "loss" else "eval_every"
    if gate.method == "windows":  # halving compares the two runs' final values, which every run records
        gate.check_every(pre.get("steps", 1000), pre.get(every, 10 if every == "log_every" else 100),
                         f"[pretrain] {every}")
    for index, model in enumerate(models):
        protocol.require_depth(model, vocabulary, f"[[models]] {index + 1}")
        config_text(run_config(study, model, seeds[0], None))
    return study


def run_config(study: dict, model: dict, seed: int, data: Path | None, half: bool = False) -> dict:
    """The job's run config; `data` is its (mixture, seed) data directory (None: only to validate);
    `half`: the same arm for half the steps (the gate's method "halving")."""
    train = halved_stage(study["pretrain"]) if half else dict(study["pretrain"])
    if data is not None:
        train.update(dataset=str(data / "train"), validation_dataset=str(data / "validation"))
    v = study["max_vertices"]
    return {"name": study["name"], "seed": seed, "data": {"n_max": v, "finetune_n_max": min(5, v), "small_target": min(5, v)},
            "model": dict(model), "train": train, "finetune": {"steps": 1}}


def families(mixture: Mixture) -> set:
    return {(c.family, c.avg_degree if c.family == "erdos_renyi" else None) for c in mixture.components}


def data_dir(out: Path, mix: str, seed: int) -> Path:
    return (Path(out) / "data" / f"{mix}-seed{seed}").resolve()


def job_key(mix: str, m: int, seed: int) -> str:
    return f"{mix}-model{m}-seed{seed}"


def half_key(mix: str, m: int, seed: int) -> str:
    """The job of the same arm trained for half the steps (method "halving"); never scored on tests."""
    return job_key(mix, m, seed) + "-half"


def build_data(study: dict, mix: str, seed: int, where: Path) -> None:
    """The (mixture, seed) training set and its validation sample: `validation_size` graphs drawn
    from the same mixture by an independent generator (relabelled alike), which the convergence gate
    judges on (the tests are other distributions and are never seen in training or gating)."""
    validation = split_seed_sequence("study-validation", draw=seed + 1, key=zlib.crc32(f"mixture:{mix}".encode()))
    for part, size, stream in (("train", study["train_size"], seed), ("validation", study["validation_size"], validation)):
        if not (where / part / "manifest.json").is_file():
            build_mixture_dataset(study["_mixtures"][mix], size, stream, where / part, relabel=study["relabel"])


def run_jobs(study: dict, out: Path, progress: bool = True, **executor) -> list[tuple]:
    """Build the datasets and run (or skip) every job; returns [(seed, mixture, model index)]."""
    jobs = [(seed, mix, m) for seed in study["seeds"] for mix in study["_mixtures"] for m in range(len(study["models"]))]
    for seed, mix in sorted({(seed, mix) for seed, mix, _ in jobs}):
        build_data(study, mix, seed, data_dir(out, mix, seed))
    sweep = [Job(job_key(mix, m, seed), run_config(study, study["models"][m], seed, data_dir(out, mix, seed)))
             for seed, mix, m in jobs]
    if study["_gates"]["pretrain"].method == "halving":
        sweep += [Job(half_key(mix, m, seed), run_config(study, study["models"][m], seed, data_dir(out, mix, seed),
                                                         half=True)) for seed, mix, m in jobs]
    require_complete(run_sweep(sweep, out, progress=progress, desc="mixture jobs", **executor))
    return jobs


def dataset_arrays(path: Path) -> dict:
    train = load_dataset(path, verify=False)
    return {k: getattr(train, k).numpy() for k in ("edges", "num_vertices", "target", "label")}


def score(study: dict, out: Path, jobs: list[tuple], progress: bool = True) -> tuple[list[dict], dict]:
    """(raw rows per (mixture, test, model, seed), gate verdicts per job)."""
    from graphpath.core.resolve import load

    vocabulary = study["max_vertices"]
    raw, verdicts, trains = [], {}, {}
    bar = tqdm(jobs, desc="mixture scoring", unit="model", disable=not progress, dynamic_ncols=True)
    for seed, mix, m in bar:
        if (mix, seed) not in trains:
            trains = {(mix, seed): {part: dataset_arrays(data_dir(out, mix, seed) / part)
                                    for part in ("train", "validation")}}
        train, validation = trains[(mix, seed)]["train"], trains[(mix, seed)]["validation"]
        run = job_dir(out, Job(job_key(mix, m, seed), {}))
        gate = study["_gates"]["pretrain"]
        gated_on = train if gate.series == "loss" else validation  # the constant predictor of the series' data
        half = job_dir(out, Job(half_key(mix, m, seed), {})) if gate.method == "halving" else None
        verdicts[job_key(mix, m, seed)] = check_job(run, "pretrain", gate, label_variance(gated_on["label"]), half)
        model = load(run).model
        for test, mixture in study["_tests"].items():
            arrays = sample_mixture(mixture, study["test_size"],
                                    split_rng("mixture-tests", draw=seed + 1, key=zlib.crc32(test.encode())))
            prediction = predict(model, as_batch(arrays, vocabulary))
            label = arrays["label"].astype(float)
            raw.append({"mixture": mix, "test": test, "model": m, "seed": seed,
                        "mse": float(np.mean((prediction - label) ** 2)),
                        "accuracy": float(np.mean(np.round(prediction) == label)),
                        "coverage": coverage(arrays, train), "label_support": label_support(arrays, train),
                        "unseen_ids": unseen_ids(arrays, train)})
    return raw, verdicts


def analyse(study: dict, raw: list[dict], verdicts: dict) -> dict:
    vocabulary = study["max_vertices"]
    n_of = [non_embedding_parameters(model, vocabulary) for model in study["models"]]
    seeds, cells = study["seeds"], []
    for mix, mixture in study["_mixtures"].items():
        for test, test_mixture in study["_tests"].items():
            for m, n in enumerate(n_of):
                mine = sorted((r for r in raw if (r["mixture"], r["test"], r["model"]) == (mix, test, m)),
                              key=lambda r: r["seed"])
                cells.append({"mixture": mix, "test": test, "model": m, "N": n,
                              "families_in_mixture": families(test_mixture) <= families(mixture),
                              **{k: float(np.mean([r[k] for r in mine])) for k in ("coverage", "label_support",
                                                                                   "unseen_ids")},
                              "converged": all(verdicts[job_key(mix, m, s)]["converged"] for s in seeds),
                              "mse": ci_summary([r["mse"] for r in mine]),
                              "log_mse": ci_summary([np.log(max(r["mse"], 1e-12)) for r in mine]),
                              "accuracy": ci_summary([r["accuracy"] for r in mine])})
    fitted = [c for c in cells if c["converged"] and c["unseen_ids"] == 0]
    by = {(r["mixture"], r["test"], r["model"], r["seed"]): r for r in raw}
    log_mse = np.array([[np.log(max(by[(c["mixture"], c["test"], c["model"], s)]["mse"], 1e-12)) for c in fitted]
                        for s in seeds]).reshape(len(seeds), len(fitted))
    cov = np.array([[by[(c["mixture"], c["test"], c["model"], s)]["coverage"] for c in fitted]
                    for s in seeds]).reshape(len(seeds), len(fitted))
    analysis = coverage_fit.regression(log_mse, cov, np.log([c["N"] for c in fitted]))
    analysis.update(excluded_unconverged=sum(not c["converged"] for c in cells),
                    excluded_unseen_ids=sum(c["converged"] and c["unseen_ids"] > 0 for c in cells))
    public = {k: v for k, v in study.items() if not k.startswith("_")}
    gate = {"criteria": {k: {**c.to_dict(), "text": c.describe()} for k, c in study["_gates"].items()},
            "rationale": study["gate_rationale"] or None, "schedule": schedule_text(study["pretrain"]),
            **gate_summary(verdicts), "cells_marked": [[c["mixture"], c["test"], c["model"]] for c in cells
                                                       if not c["converged"]], "verdicts": verdicts}
    return {"schema": 2, "study": public, "definitions": {
                "coverage": "share of test graphs whose input cell (vertices touched, distinct edges, degree of 1, "
                            "degree of the target) occurs in the model's own training dataset",
                "label_support": "share of test graphs whose label occurs in the training dataset",
                "unseen_ids": "share of test graphs using a vertex id no training graph uses",
                "analysis": coverage_fit.__doc__.strip()},
            "models": [{"index": m, "config": study["models"][m], "N": n} for m, n in enumerate(n_of)],
            "cells": cells, "raw": raw, "analysis": analysis, "gate": gate, "answers": study["answers"]}


def schedule_text(pretrain: dict) -> str:
    """The pre-training schedule in words, for the page (the gate's windows depend on it)."""
    steps, decay = pretrain.get("steps", 1000), pretrain.get("decay", "cosine")
    text = f"{steps} steps of batch {pretrain.get('batch_size', 512)}, peak lr {pretrain.get('lr', 1e-3):g}, {decay}"
    if decay == "wsd":
        text += (f" (constant lr to step {pretrain['decay_step']}, then linear to {pretrain.get('min_lr', 0.0):g} "
                 "at the end)")
    return text


def summary_line(doc: dict) -> str:
    a, g = doc["analysis"], doc["gate"]
    text = f"{g['converged']} of {g['jobs']} jobs converged; {a['cells']} cells in the regression"
    if not a.get("fit"):
        return text + f"; no fit ({a.get('reason')})"
    parts = [f"{term} {v['value']:+.3g} {v['ci']}{' (finding)' if v['finding'] else ''}" for term, v in a["fit"].items()]
    return text + "; log MSE slope on " + ", ".join(parts) + ("" if a["size_law"] else f"; no size term ({a['size_law_reason']})")


def _main(argv) -> int:
    parser = study_parser("python -m experiments.mixture", __doc__.split("\n\n")[0], DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    executor = executor_options(args)
    study = load_study(args.config)
    out = args.out or Path("runs") / study["name"]
    start = time.time()
    with hold(out, "python -m experiments.mixture"):  # writable, and no other writer, before any job runs
        jobs = run_jobs(study, out, progress=not args.quiet, **executor)
        raw, verdicts = score(study, out, jobs, progress=not args.quiet)
        doc = analyse(study, raw, verdicts)
        doc["seconds"] = time.time() - start  # wall time of this invocation (jobs already done are not rerun)
        path = save_study(doc, out, "mixture.json", write_figures, figures=not args.no_figures)
    print(f"{path}: {summary_line(doc)}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    return run_study_cli("python -m experiments.mixture", _main, argv, MixtureError, SpecError)


if __name__ == "__main__":
    sys.exit(main())
