"""python -m experiments.edt — effective data transferred (Hernandez et al. 2021) on graph tasks.

Task A = the study's `pretrain` set (distance 1 -> 2), task B = its `finetune` set (distance to
an on-path target, small graphs). For every model size N (non-embedding parameters) and seed:
    pretrain   one run on A (`[pretrain]`, streamed data)
    scratch    for every D in data_sizes + scratch_extra: a fixed dataset of D graphs of B and the
               run's own untrained initialisation trained on it (`finetune.body = "random"`)
    finetuned  for every D_F in data_sizes: the pre-trained model trained on the same dataset
Both arms use the `[finetune]` stage (same steps, lr, batch = min(batch_size, D)); the loss of a
job is its best held-out MSE on B (early stopping). `experiments.scaling_fit` turns the curves
into D_E, D_T, the multiplier (D_F + D_T) / D_F and the fit D_T = k D_F^alpha N^beta.

    python -m experiments.edt                                   # CPU default (experiments/edt.toml)
    python -m experiments.edt --config experiments/edt-gpu.toml --out runs/edt-gpu

Output (`--out`, default runs/<name>): `jobs/` (one graphpath.training.run run directory per job),
`data/` (the datasets), `edt.json`, `figures/edt-loss.html`, `edt-transfer.html`,
`edt-multiplier.html`. Jobs run through graphpath.sweeps.runner (--workers K local processes of one torch
thread, or --executor slurm); rerunning skips finished jobs and retries failed ones.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from data_gen import SpecError, study_presets
from data_gen.build import build_dataset
from graphpath.evaluation.scores import ci_summary
from graphpath.sweeps.runner import SweepError as StudyError
from graphpath.sweeps.runner import (Job, best_eval_loss, config_text, executor_options, job_dir, non_embedding_parameters,
                             require_complete, run_study_cli, run_sweep, save_study, study_parser)
from graphpath_common.keys import reject_unknown_keys, require_seeds
from graphpath_common.locks import hold
from graphpath_common.toml import read_toml

from . import scaling_fit as sf

DEFAULT_CONFIG = Path(__file__).resolve().parent / "edt.toml"
KEYS = ("name", "seeds", "data_sizes", "scratch_extra", "bootstrap", "data", "models", "pretrain", "finetune")
MIN_DATA = 16  # fewer graphs than this cannot fill a batch and a held-out comparison says nothing


def load_study(path: Path) -> dict:
    study = read_toml(path, StudyError)
    reject_unknown_keys(KEYS, study, StudyError, "edt study")
    seeds, sizes = study.get("seeds", [0]), study.get("data_sizes")
    extra, models = study.get("scratch_extra", []), study.get("models")
    require_seeds(seeds, StudyError)
    for name, ladder in (("data_sizes", sizes), ("scratch_extra", extra)):
        if not isinstance(ladder, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in ladder):
            raise StudyError(f"{name} must be a list of integers, got {ladder!r}")
        small = [d for d in ladder if d < MIN_DATA]
        if small:
            raise StudyError(f"{name} has sizes below the smallest sensible ({MIN_DATA} graphs): {small}")
    if len(sizes) < 2:
        raise StudyError("data_sizes needs at least two rungs")
    if not isinstance(models, list) or len(models) < 2 or not all(isinstance(m, dict) for m in models):
        raise StudyError("models must list at least two [[models]] tables (N must vary for the fit)")
    study.setdefault("name", "edt")
    study.setdefault("bootstrap", 1000)
    study["seeds"], study["scratch_extra"] = seeds, extra
    for stage in ("pretrain", "finetune"):
        study.setdefault(stage, {})
    for index, model in enumerate(models):  # every job's config must be valid before any job runs
        config_text(run_config(study, model, seeds[0], None, "random", max(sizes)))
    return study


def run_config(study: dict, model: dict, seed: int, dataset: Path | None, body: str, size: int) -> dict:
    finetune = dict(study["finetune"])
    finetune.update(body=body, batch_size=min(finetune.get("batch_size", 64), size))
    if dataset is not None:
        finetune["dataset"] = str(Path(dataset).resolve())
    return {"name": study["name"], "seed": seed, "data": dict(study.get("data", {})), "model": dict(model),
            "train": dict(study["pretrain"]), "finetune": finetune}


def dataset_for(out: Path, study: dict, seed: int, size: int) -> Path:
    """The D-graph dataset of task B for one seed (shared by every N and both arms)."""
    path = out / "data" / f"seed{seed}-D{size}"
    if not (path / "manifest.json").is_file():
        spec = study_presets(**study.get("data", {}))["finetune"]
        build_dataset(spec, size, int(np.random.SeedSequence([seed, size, 11]).generate_state(1)[0] % 2**31),
                      path, force=True, progress=False)
    return path


def run_jobs(study: dict, out: Path, progress: bool = True, **executor) -> dict:
    """Run (or skip) every job through graphpath.sweeps.runner; returns {(seed, model index, arm, D): best
    held-out loss}. `executor`: run_sweep's executor, workers and slurm options."""
    sizes, extra = sorted(study["data_sizes"]), sorted(study["scratch_extra"])
    jobs, cells = [], {}
    for seed in study["seeds"]:
        for m, model in enumerate(study["models"]):
            base = f"seed{seed}-model{m}"
            jobs.append(Job(f"{base}/pretrain", run_config(study, model, seed, None, "pretrained", 1 << 30)))
            for arm, ladder in (("scratch", sizes + extra), ("finetuned", sizes)):
                for size in ladder:
                    data = dataset_for(out, study, seed, size)
                    body = "random" if arm == "scratch" else "pretrained"
                    key = f"{base}/{arm}-D{size}"
                    jobs.append(Job(key, run_config(study, model, seed, data, body, size), "finetune",
                                    after=f"{base}/pretrain"))
                    cells[(seed, m, arm, size)] = key
    require_complete(run_sweep(jobs, out, progress=progress, desc="edt jobs", **executor))
    return {cell: best_eval_loss(job_dir(out, Job(key, {})), "finetune") for cell, key in cells.items()}


def analyse(study: dict, losses: dict, bootstrap: int) -> dict:
    """The edt.json document from the job losses."""
    max_vertices = study_presets(**study.get("data", {}))["finetune"].max_vertices
    n_of = [non_embedding_parameters(model, max_vertices) for model in study["models"]]
    sizes, extra = sorted(study["data_sizes"]), sorted(study["scratch_extra"])
    rows, curves = [], []
    for m, n in enumerate(n_of):
        for seed in study["seeds"]:
            scratch = {n: [(d, losses[(seed, m, "scratch", d)]) for d in sizes + extra]}
            tuned = {n: [(d, losses[(seed, m, "finetuned", d)]) for d in sizes]}
            rows += [{**row, "seed": seed, "model": m} for row in sf.transfer_points(scratch, tuned)]
        for arm, ladder in (("scratch", sizes + extra), ("finetuned", sizes)):
            curves.append({"model": m, "N": n, "arm": arm, "points": [
                {"D": d, "loss": ci_summary([losses[(s, m, arm, d)] for s in study["seeds"]]),
                 "per_seed": [losses[(s, m, arm, d)] for s in study["seeds"]]} for d in ladder]})
    summary = []
    for m, n in enumerate(n_of):
        for d in sizes:
            mine = [r for r in rows if r["model"] == m and r["D_F"] == d]
            summary.append({"model": m, "N": n, "D_F": d,
                            "D_T": ci_summary([r["D_T"] for r in mine]),
                            "multiplier": ci_summary([r["multiplier"] for r in mine]),
                            "ossified_seeds": sum(r["ossified"] for r in mine),
                            "extrapolated_seeds": sum(r["flag"] != "interpolated" for r in mine)})
    fit = sf.fit_transfer(rows, bootstrap=bootstrap, seed=0)
    return {"schema": 1, "study": {k: study[k] for k in KEYS if k in study}, "tasks": {"A": "pretrain", "B": "finetune"},
            "models": [{"index": m, "config": study["models"][m], "N": n} for m, n in enumerate(n_of)],
            "curves": curves, "rows": rows, "summary": summary, "fit": fit,
            "definitions": sf.__doc__.strip()}


def write_figures(doc: dict, folder: Path) -> list[str]:
    import plotly.graph_objects as go

    from graphpath_common.figures import write_html

    folder.mkdir(parents=True, exist_ok=True)
    written = []

    def bars(points):
        mean = [p["loss"]["mean"] for p in points]
        ci = [p["loss"]["ci95"] or [p["loss"]["mean"]] * 2 for p in points]
        return mean, dict(type="data", symmetric=False, array=[c[1] - v for c, v in zip(ci, mean)],
                          arrayminus=[v - c[0] for c, v in zip(ci, mean)])

    loss = go.Figure()
    for curve in doc["curves"]:
        mean, error = bars(curve["points"])
        loss.add_scatter(x=[p["D"] for p in curve["points"]], y=mean, error_y=error, mode="lines+markers",
                         name=f"N={curve['N']:,} {curve['arm']}", line=dict(dash="dot" if curve["arm"] == "scratch" else "solid"))
    loss.update_layout(title="Best held-out MSE on B vs data (mean and 95% CI over seeds)",
                       xaxis=dict(type="log", title="D (scratch) or D_F (fine-tuned), graphs of B"),
                       yaxis=dict(type="log", title="held-out MSE"))
    written.append(write_html(loss, folder / "edt-loss.html"))

    transfer, multiplier = go.Figure(), go.Figure()
    fit = (doc["fit"] or {}).get("fit")
    for n in sorted({s["N"] for s in doc["summary"]}):
        mine = [s for s in doc["summary"] if s["N"] == n and s["D_T"]["mean"] is not None]
        transfer.add_scatter(x=[s["D_F"] for s in mine], y=[s["D_T"]["mean"] for s in mine], mode="markers",
                             name=f"N={n:,} D_T (mean over seeds)")
        multiplier.add_scatter(x=[s["D_F"] for s in mine], y=[s["multiplier"]["mean"] for s in mine],
                               mode="lines+markers", name=f"N={n:,}")
        if fit:
            grid = np.geomspace(min(s["D_F"] for s in doc["summary"]), max(s["D_F"] for s in doc["summary"]), 30)
            transfer.add_scatter(x=grid, y=fit["k"]["value"] * grid ** fit["alpha"]["value"] * n ** fit["beta"]["value"],
                                 mode="lines", name=f"fit, N={n:,}")
    title = "D_T vs D_F"
    if fit:
        title += (f": k={fit['k']['value']:.3g}, alpha={fit['alpha']['value']:.3g}, beta={fit['beta']['value']:.3g}"
                  f" (paper text->Python: k={sf.PAPER['k']:.2g}, alpha={sf.PAPER['alpha']}, beta={sf.PAPER['beta']})")
    transfer.update_layout(title=title, xaxis=dict(type="log", title="D_F"), yaxis=dict(type="log", title="D_T"))
    written.append(write_html(transfer, folder / "edt-transfer.html"))
    multiplier.update_layout(title="Effective data multiplier (D_F + D_T) / D_F (< 1: ossification)",
                             xaxis=dict(type="log", title="D_F"), yaxis=dict(type="log", title="multiplier"))
    written.append(write_html(multiplier, folder / "edt-multiplier.html"))
    return [str(p) for p in written]


def _main(argv) -> int:
    parser = study_parser("python -m experiments.edt", __doc__.split("\n\n")[0], DEFAULT_CONFIG)
    parser.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples for the fit's CIs")
    args = parser.parse_args(argv)
    executor = executor_options(args)
    study = load_study(args.config)
    bootstrap = study["bootstrap"] if args.bootstrap is None else args.bootstrap
    if not isinstance(bootstrap, int) or bootstrap < 0:
        raise StudyError(f"bootstrap must be a non-negative integer, got {bootstrap!r}")
    out = args.out or Path("runs") / study["name"]
    with hold(out, "python -m experiments.edt"):  # writable, and no other writer, before any job runs
        losses = run_jobs(study, out, progress=not args.quiet, **executor)
        doc = analyse(study, losses, bootstrap)
        path = save_study(doc, out, "edt.json", write_figures, figures=not args.no_figures)
    fit = doc["fit"].get("fit")
    line = (f"k={fit['k']['value']:.3g} alpha={fit['alpha']['value']:.3g} beta={fit['beta']['value']:.3g}"
            if fit else f"no fit ({doc['fit'].get('reason')})")
    print(f"{path}: {len(doc['rows'])} transfer points, {doc['fit']['points']} in the low-data fit; {line}",
          file=sys.stderr)
    return 0


def main(argv=None) -> int:
    return run_study_cli("python -m experiments.edt", _main, argv, SpecError)


if __name__ == "__main__":
    sys.exit(main())
