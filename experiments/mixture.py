"""python -m experiments.mixture — pre-training mixture coverage (Yadlowsky et al. 2023).

Each `[mixtures.NAME]` (data_gen.mixture: families, size ranges, distance ranges, weights summing
to 1) becomes a fixed training dataset of `train_size` graphs per seed; every `[[models]]` size is
pre-trained on it (the distance 1 -> t task, any t) and scored on every `[tests.NAME]`
distribution: each mixture's components, families held out of it, blends, larger n and longer
distances (a test is itself a mixture, sampled once from its name, the same graphs for every
model). The question: does error track the test distribution's coverage by the mixture, rather
than the model's size? Coverage (data_gen.mixture.coverage) = the fraction of test graphs whose
(n, edge count, label) cell occurs in the very dataset the model trained on.

Output (`--out`, default runs/<name>): `jobs/` (graphpath.training.run run directories), `data/`,
`mixture.json` — per (mixture, test, model) MSE and accuracy with 95% CIs over seeds, coverage,
whether the test's families are all in the mixture; and `analysis`: Spearman correlation of
log MSE with coverage and with log N, and R^2 of log MSE ~ coverage, ~ log N, ~ both;
figures `figures/mixture-coverage.html` (MSE vs coverage, per model size) and
`figures/mixture-matrix.html` (mixtures x tests) and `figures/mixture-size.html` (MSE vs log N per
(mixture, test), coloured by coverage).

    python -m experiments.mixture                          # CPU default (experiments/mixture.toml)
    python -m experiments.mixture --config experiments/mixture-gpu.toml
"""
from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_gen import SpecError
from data_gen.mixture import Mixture, MixtureError, as_batch, build_mixture_dataset, coverage, sample_mixture
from data_gen.dataset import load_dataset
from data_gen.splits import split_rng
from graphpath.core.checkpoint import CheckpointError
from graphpath.core.resolve import load
from graphpath.evaluation.scores import ci_summary
from graphpath.evaluation.predict import predict
from graphpath.sweeps.runner import SweepError as StudyError
from graphpath.sweeps.runner import (Job, config_text, executor_options, job_dir, non_embedding_parameters,
                             require_complete, run_study_cli, run_sweep, save_study, study_parser)
from graphpath_common.keys import reject_unknown_keys, require_seeds
from graphpath_common.locks import hold
from graphpath_common.toml import read_toml


DEFAULT_CONFIG = Path(__file__).resolve().parent / "mixture.toml"
KEYS = ("name", "seeds", "max_vertices", "train_size", "test_size", "models", "pretrain", "mixtures", "tests")
MIN_TRAIN, MIN_TEST = 256, 64


def load_study(path: Path) -> dict:
    study = read_toml(path, StudyError)
    reject_unknown_keys(KEYS, study, StudyError, "mixture study")
    study = {"name": "mixture", "seeds": [0], "max_vertices": 10, "train_size": 20000, "test_size": 1024,
             "pretrain": {}, **study}
    seeds = study["seeds"]
    require_seeds(seeds, StudyError)
    for key, low in (("train_size", MIN_TRAIN), ("test_size", MIN_TEST)):
        if not isinstance(study[key], int) or study[key] < low:
            raise StudyError(f"{key} must be an integer >= {low} (the smallest sensible), got {study[key]!r}")
    models = study.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, dict) for m in models):
        raise StudyError("models must list at least one [[models]] table")
    for key in ("mixtures", "tests"):
        if not isinstance(study.get(key), dict) or not study[key]:
            raise StudyError(f"the study needs at least one [{key}.NAME] table")
    vocabulary = study["max_vertices"]
    study["_mixtures"] = {name: Mixture.from_dict(name, values, vocabulary) for name, values in study["mixtures"].items()}
    study["_tests"] = {name: Mixture.from_dict(name, values, vocabulary) for name, values in study["tests"].items()}
    for model in models:
        config_text(run_config(study, model, seeds[0], None))
    return study


def run_config(study: dict, model: dict, seed: int, dataset: Path | None) -> dict:
    train = {**study["pretrain"], **({"dataset": str(dataset)} if dataset is not None else {})}
    v = study["max_vertices"]
    return {"name": study["name"], "seed": seed, "data": {"n_max": v, "finetune_n_max": min(5, v), "small_target": min(5, v)},
            "model": dict(model), "train": train, "finetune": {"steps": 1}}


def trained_on_dataset(run_dir: Path, data_dir: Path):
    """The job's model (graphpath.core.resolve), checked to have pre-trained on `data_dir`: coverage
    is measured against that very dataset."""
    try:
        trained = load(run_dir)
    except CheckpointError as error:
        raise StudyError(str(error)) from None
    dataset = trained.contract["pretrain"].dataset or {}
    if Path(dataset.get("path", "")).resolve() != Path(data_dir).resolve():
        raise StudyError(f"{run_dir} was pre-trained on {dataset.get('path') or 'fresh graphs'}, not on {data_dir}")
    return trained


def families(mixture: Mixture) -> set:
    return {(c.family, c.avg_degree if c.family == "erdos_renyi" else None) for c in mixture.components}


def run_study(study: dict, out: Path, progress: bool = True, **executor) -> dict:
    """Build the datasets, run (or skip) every job through graphpath.sweeps.runner (`executor`: run_sweep's
    options), then score every model on every test."""
    vocabulary = study["max_vertices"]
    tests = {name: sample_mixture(m, study["test_size"], split_rng("mixture-tests", key=zlib.crc32(name.encode())))
             for name, m in study["_tests"].items()}
    jobs = [(seed, mix, m) for seed in study["seeds"] for mix in study["_mixtures"] for m in range(len(study["models"]))]
    for seed, mix in {(seed, mix) for seed, mix, _ in jobs}:
        data_dir = out / "data" / f"{mix}-seed{seed}"
        if not (data_dir / "manifest.json").is_file():
            build_mixture_dataset(study["_mixtures"][mix], study["train_size"], seed, data_dir)
    sweep = [Job(f"{mix}-model{m}-seed{seed}",
                 run_config(study, study["models"][m], seed, (out / "data" / f"{mix}-seed{seed}").resolve()))
             for seed, mix, m in jobs]
    require_complete(run_sweep(sweep, out, progress=progress, desc="mixture jobs", **executor))
    raw = []
    bar = tqdm(jobs, desc="mixture scoring", unit="model", disable=not progress, dynamic_ncols=True)
    for seed, mix, m in bar:
        data_dir = out / "data" / f"{mix}-seed{seed}"
        trained = trained_on_dataset(job_dir(out, Job(f"{mix}-model{m}-seed{seed}", {})), data_dir)
        model = trained.model
        train = load_dataset(data_dir, verify=False)
        train_arrays = {"edges": train.edges.numpy(), "num_vertices": train.num_vertices.numpy(),
                        "label": train.label.numpy()}
        for test, arrays in tests.items():
            prediction = predict(model, as_batch(arrays, vocabulary))
            label = arrays["label"].astype(float)
            raw.append({"mixture": mix, "test": test, "model": m, "seed": seed,
                        "mse": float(np.mean((prediction - label) ** 2)),
                        "accuracy": float(np.mean(np.round(prediction) == label)),
                        "coverage": coverage(arrays, train_arrays)})
        bar.write(f"{mix} model {m} seed {seed}: " + ", ".join(
            f"{r['test']} {r['mse']:.3g}" for r in raw if (r["mixture"], r["model"], r["seed"]) == (mix, m, seed)))
    n_of = [non_embedding_parameters(model, vocabulary) for model in study["models"]]
    cells = []
    for mix, mixture in study["_mixtures"].items():
        for test, test_mixture in study["_tests"].items():
            for m, n in enumerate(n_of):
                mine = [r for r in raw if (r["mixture"], r["test"], r["model"]) == (mix, test, m)]
                cells.append({"mixture": mix, "test": test, "model": m, "N": n,
                              "families_in_mixture": families(test_mixture) <= families(mixture),
                              "coverage": float(np.mean([r["coverage"] for r in mine])),
                              "mse": ci_summary([r["mse"] for r in mine]), "accuracy": ci_summary([r["accuracy"] for r in mine])})
    public = {k: v for k, v in study.items() if not k.startswith("_")}
    return {"schema": 1, "study": public, "coverage_definition": "fraction of test graphs whose (n, edge count, "
            "label) cell occurs in the model's own training dataset (data_gen.mixture.coverage)",
            "models": [{"index": m, "config": study["models"][m], "N": n} for m, n in enumerate(n_of)],
            "cells": cells, "raw": raw, "analysis": analyse(cells)}


def analyse(cells: list[dict]) -> dict:
    """Does log MSE follow coverage or model size? Rank correlations and R^2 of small linear fits."""
    from scipy import stats

    y = np.log(np.array([max(c["mse"]["mean"], 1e-12) for c in cells]))
    cov = np.array([c["coverage"] for c in cells])
    log_n = np.log(np.array([c["N"] for c in cells], dtype=float))

    def r2(*columns):
        design = np.column_stack([np.ones(len(y)), *columns])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        residual = y - design @ coef
        total = float(((y - y.mean()) ** 2).sum())
        return None if total == 0 else 1 - float((residual ** 2).sum()) / total

    def spearman(x):
        if len(set(x.tolist())) < 2 or len(set(y.tolist())) < 2:
            return None
        return float(stats.spearmanr(x, y).statistic)

    return {"cells": len(cells), "spearman_log_mse_vs_coverage": spearman(cov),
            "spearman_log_mse_vs_log_N": spearman(log_n),
            "r2_coverage": r2(cov), "r2_log_N": r2(log_n), "r2_both": r2(cov, log_n)}


def write_figures(doc: dict, folder: Path) -> list[str]:
    import plotly.graph_objects as go

    from graphpath_common.figures import write_html

    folder.mkdir(parents=True, exist_ok=True)
    scatter = go.Figure()
    for model in doc["models"]:
        mine = [c for c in doc["cells"] if c["model"] == model["index"]]
        scatter.add_scatter(x=[c["coverage"] for c in mine], y=[c["mse"]["mean"] for c in mine], mode="markers",
                            name=f"N={model['N']:,}", text=[f"{c['mixture']} -> {c['test']}" for c in mine],
                            error_y=dict(type="data", symmetric=False,
                                         array=[(c["mse"]["ci95"] or [0, c["mse"]["mean"]])[1] - c["mse"]["mean"] for c in mine],
                                         arrayminus=[c["mse"]["mean"] - (c["mse"]["ci95"] or [c["mse"]["mean"], 0])[0]
                                                     for c in mine]))
    a = doc["analysis"]
    scatter.update_layout(title=f"Test MSE vs coverage (Spearman with coverage {a['spearman_log_mse_vs_coverage']}, "
                                f"with log N {a['spearman_log_mse_vs_log_N']})",
                          xaxis=dict(title="coverage of the test set by the training mixture"),
                          yaxis=dict(type="log", title="MSE (mean, 95% CI over seeds)"))
    largest = max(doc["models"], key=lambda m: m["N"])["index"]
    mixtures = list(doc["study"]["mixtures"])
    tests = list(doc["study"]["tests"])
    z = [[next(c["mse"]["mean"] for c in doc["cells"] if (c["mixture"], c["test"], c["model"]) == (mix, t, largest))
          for t in tests] for mix in mixtures]
    matrix = go.Figure(go.Heatmap(z=np.log10(np.array(z)).tolist(), x=tests, y=mixtures, colorbar=dict(title="log10 MSE")))
    matrix.update_layout(title="log10 test MSE, largest model (rows: pre-training mixture)")
    size = go.Figure()
    ordered = sorted(doc["models"], key=lambda m: m["N"])
    for mix in mixtures:
        for t in tests:
            row = [next(c for c in doc["cells"] if (c["mixture"], c["test"], c["model"]) == (mix, t, m["index"]))
                   for m in ordered]
            size.add_scatter(x=[m["N"] for m in ordered], y=[c["mse"]["mean"] for c in row], mode="lines+markers",
                             name=f"{mix} -> {t}", text=[f"coverage {c['coverage']:.2f}" for c in row],
                             marker=dict(color=[c["coverage"] for c in row], cmin=0, cmax=1, colorscale="Viridis"))
    size.update_layout(title=f"Test MSE vs model size per (mixture, test); markers coloured by coverage (R^2 of log MSE: "
                             f"log N {a['r2_log_N']}, coverage {a['r2_coverage']})",
                       xaxis=dict(type="log", title="N (non-embedding parameters)"), yaxis=dict(type="log", title="MSE"))
    return [str(write_html(scatter, folder / "mixture-coverage.html")), str(write_html(matrix, folder / "mixture-matrix.html")),
            str(write_html(size, folder / "mixture-size.html"))]


def _main(argv) -> int:
    parser = study_parser("python -m experiments.mixture", __doc__.split("\n\n")[0], DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    executor = executor_options(args)
    study = load_study(args.config)
    out = args.out or Path("runs") / study["name"]
    with hold(out, "python -m experiments.mixture"):  # writable, and no other writer, before any job runs
        doc = run_study(study, out, progress=not args.quiet, **executor)
        path = save_study(doc, out, "mixture.json", write_figures, figures=not args.no_figures)
    a = doc["analysis"]
    print(f"{path}: {a['cells']} cells; Spearman(log MSE, coverage) {a['spearman_log_mse_vs_coverage']}, "
          f"Spearman(log MSE, log N) {a['spearman_log_mse_vs_log_N']}; R^2 coverage {a['r2_coverage']}, "
          f"log N {a['r2_log_N']}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    return run_study_cli("python -m experiments.mixture", _main, argv, MixtureError, SpecError)


if __name__ == "__main__":
    sys.exit(main())
