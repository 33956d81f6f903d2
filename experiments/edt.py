"""python -m experiments.edt — effective data transferred (Hernandez et al. 2021) on graph tasks.

Task A = the study's `pretrain` set (distance 1 -> 2), task B = its `finetune` set (distance to
an on-path target, small graphs). For every model size N (non-embedding parameters) and seed:
    pretrain     one run on A (`[pretrain]`, streamed graphs), gated on having learned A
    scratch      for every D in data_sizes + scratch_extra: a fixed dataset of D graphs of B and the
                 run's own untrained initialisation trained on it (`finetune.body = "random"`)
    finetuned    for every D_F in data_sizes: the pre-trained model trained on the same dataset
    doubled      the largest scratch rung again with twice the steps (the doubling check)
Both fixed-data arms use `[finetune]` with steps that grow with the data (`[steps]`: epochs * D /
batch within [min_steps, max_steps]; experiments.protocol.steps_for). A job's loss is its final
model's MSE on the seed's test sample of B (split `study-test`, one sample per seed); nothing is
selected on it. Every job is judged by the convergence gate (`[convergence]`,
graphpath.sweeps.convergence); a cell (model, arm, D) is fitted only when its jobs converged in
every seed, and a failed cell is marked with its count. `experiments.scaling_fit` turns the
seed-averaged curves into D_E, D_T, the multiplier and the fit D_T = k D_F^alpha N^beta, with a
bootstrap over seeds.

    python -m experiments.edt                                   # CPU default (experiments/edt.toml)
    python -m experiments.edt --config experiments/edt-gpu.toml --out runs/edt-gpu

Output (`--out`, default runs/<name>): `jobs/`, `data/`, `edt.json`, `figures/edt-loss.html`,
`edt-transfer.html`, `edt-multiplier.html`. Jobs run through graphpath.sweeps.runner (--workers K
local processes of one torch thread, or --executor slurm); rerunning skips finished jobs.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from data_gen import SpecError, study_presets
from data_gen.build import build_dataset
from graphpath.evaluation.scores import ci_summary
from graphpath.sweeps.convergence import Criterion, criteria, doubling_check, gate_summary
from graphpath.sweeps.runner import SweepError as StudyError
from graphpath.sweeps.runner import (Job, config_text, executor_options, job_dir, non_embedding_parameters,
                                     require_complete, run_study_cli, run_sweep, save_study, study_parser)
from graphpath_common.keys import reject_unknown_keys, require_seeds
from graphpath_common.locks import hold
from graphpath_common.toml import read_toml

from . import protocol
from . import scaling_fit as sf

DEFAULT_CONFIG = Path(__file__).resolve().parent / "edt.toml"
KEYS = ("name", "seeds", "data_sizes", "scratch_extra", "bootstrap", "test_size", "low_data_max", "steps",
        "doubling_tolerance", "convergence", "data", "models", "pretrain", "finetune", "answers")
MIN_DATA = 16  # fewer graphs than this cannot fill a batch and a held-out comparison says nothing
GATES = {"pretrain": Criterion(max_ratio=0.1), "finetune": Criterion()}


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
    study = {"name": "edt", "bootstrap": 1000, "test_size": 2048, "low_data_max": None,
             "doubling_tolerance": 0.1, "answers": {}, **study, "seeds": seeds, "scratch_extra": extra}
    for stage in ("pretrain", "finetune"):
        study.setdefault(stage, {})
    study["steps"] = protocol.step_rule(study.get("steps"), "edt study [steps]")
    study["_gates"] = criteria(study.get("convergence"), GATES)
    n_max = study_presets(**study.get("data", {}))["pretrain"].n_max
    for index, model in enumerate(models):  # every job's config must be valid before any job runs
        protocol.require_depth(model, n_max, f"[[models]] {index + 1}")
        config_text(run_config(study, model, seeds[0], Path("/d"), "random", max(sizes)))
    pre = study["pretrain"]
    study["_gates"]["pretrain"].check_every(pre.get("steps", 1000), pre.get("eval_every", 100), "[pretrain]")
    return study


def run_config(study: dict, model: dict, seed: int, dataset: Path | None, body: str, size: int | None,
               factor: int = 1) -> dict:
    """A job's run config: pre-training (`dataset` None, `size` None: its [finetune] is a placeholder
    the job never runs, so the fixed-data rule does not enter its hash) or a fixed-data arm."""
    finetune = {"steps": 1}
    if dataset is not None:
        finetune = {**study["finetune"], "body": body, "dataset": str(Path(dataset).resolve()),
                    **protocol.steps_for(size, study["finetune"].get("batch_size", 64), study["steps"], factor)}
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


def make_jobs(study: dict, out: Path) -> tuple[list[Job], dict]:
    """(jobs, {cell (seed, model, arm, D): job key}); arm scratch | finetuned | doubled."""
    sizes, extra = sorted(study["data_sizes"]), sorted(study["scratch_extra"])
    top = max(sizes + extra)
    jobs, cells = [], {}
    for seed in study["seeds"]:
        for m, model in enumerate(study["models"]):
            base = f"seed{seed}-model{m}"
            jobs.append(Job(f"{base}/pretrain", run_config(study, model, seed, None, "pretrained", None)))
            for arm, ladder in (("scratch", sizes + extra), ("finetuned", sizes), ("doubled", [top])):
                for size in ladder:
                    data = dataset_for(out, study, seed, size)
                    body = "pretrained" if arm == "finetuned" else "random"
                    key = f"{base}/{arm}-D{size}" if arm != "doubled" else f"{base}/scratch-D{size}-x2"
                    jobs.append(Job(key, run_config(study, model, seed, data, body, size, 2 if arm == "doubled" else 1),
                                    "finetune", after=f"{base}/pretrain"))
                    cells[(seed, m, arm, size)] = key
    return jobs, cells


def score_jobs(study: dict, out: Path, cells: dict) -> dict:
    """{cell: test loss} on each seed's test sample of B."""
    spec = study_presets(**study.get("data", {}))["finetune"]
    samples = {seed: protocol.study_sample("test", "edt", "finetune", spec, study["test_size"], seed)[0]
               for seed in study["seeds"]}
    return {cell: protocol.score(job_dir(out, Job(key, {})), "finetune", samples[cell[0]])["loss"]
            for cell, key in cells.items()}


def judge(study: dict, out: Path, jobs: list[Job]) -> dict:
    """{job key: convergence verdict}: pre-training by its rule (with the constant predictor),
    the fixed-data arms by the fine-tuning rule."""
    return protocol.gate(out, {job.key: (job.stage, job.stage, job.config) for job in jobs}, study["_gates"])


def cell_passes(study: dict, verdicts: dict, cells: dict, m: int, arm: str, size: int) -> bool:
    """A cell counts when its job (and, fine-tuned, its pre-training) converged in every seed."""
    for seed in study["seeds"]:
        key = cells[(seed, m, arm, size)]
        if not verdicts[key]["converged"]:
            return False
        if arm == "finetuned" and not verdicts[f"seed{seed}-model{m}/pretrain"]["converged"]:
            return False
    return True


def analyse(study: dict, losses: dict, verdicts: dict, cells: dict, bootstrap: int) -> dict:
    """The edt.json document from the job losses and the gate's verdicts."""
    max_vertices = study_presets(**study.get("data", {}))["finetune"].max_vertices
    n_of = [non_embedding_parameters(model, max_vertices) for model in study["models"]]
    sizes, extra = sorted(study["data_sizes"]), sorted(study["scratch_extra"])
    ladders = {"scratch": sizes + extra, "finetuned": sizes}
    curves, per_seed, marked = [], {s: {"scratch": {}, "finetuned": {}} for s in study["seeds"]}, []
    for m, n in enumerate(n_of):
        for arm, ladder in ladders.items():
            points = []
            for d in ladder:
                values = [losses[(s, m, arm, d)] for s in study["seeds"]]
                ok = cell_passes(study, verdicts, cells, m, arm, d)
                points.append({"D": d, "loss": ci_summary(values), "per_seed": values, "converged": ok})
                if ok:
                    for s, v in zip(study["seeds"], values):
                        per_seed[s][arm].setdefault(n, []).append((d, v))
                else:
                    marked.append({"model": m, "N": n, "arm": arm, "D": d})
            curves.append({"model": m, "N": n, "arm": arm, "points": points})
    usable = {n for n in n_of if len(per_seed[study["seeds"][0]]["scratch"].get(n, [])) >= 2
              and per_seed[study["seeds"][0]]["finetuned"].get(n)}
    for s in per_seed:
        for arm in per_seed[s]:
            per_seed[s][arm] = {n: v for n, v in per_seed[s][arm].items() if n in usable}
    if usable:
        fit = sf.fit_transfer(per_seed, bootstrap=bootstrap, seed=0, low_data_max=study["low_data_max"])
    else:
        fit = {"fit": None, "points": 0, "rows": [], "paper": sf.PAPER, "rule": None,
               "reason": "no model size has two converged from-scratch rungs and a converged fine-tuned one"}
    rows = []
    for m, n in enumerate(n_of):
        for seed in study["seeds"]:
            scratch = {n: [(d, losses[(seed, m, "scratch", d)]) for d in ladders["scratch"]]}
            tuned = {n: [(d, losses[(seed, m, "finetuned", d)]) for d in sizes]}
            rows += [{**row, "seed": seed, "model": m} for row in sf.transfer_points(scratch, tuned)]
    summary = []
    for m, n in enumerate(n_of):
        for d in sizes:
            mine = [r for r in rows if r["model"] == m and r["D_F"] == d]
            summary.append({"model": m, "N": n, "D_F": d, "D_T": ci_summary([r["D_T"] for r in mine]),
                            "multiplier": ci_summary([r["multiplier"] for r in mine]),
                            "ossified_seeds": sum(r["ossified"] for r in mine),
                            "extrapolated_seeds": sum(r["flag"] != "interpolated" for r in mine),
                            "converged": cell_passes(study, verdicts, cells, m, "finetuned", d)})
    top = max(sizes + extra)
    doubling = [{"model": m, "N": n, "D": top, **doubling_check(
        [losses[(s, m, "scratch", top)] for s in study["seeds"]],
        [losses[(s, m, "doubled", top)] for s in study["seeds"]], study["doubling_tolerance"])}
        for m, n in enumerate(n_of)]
    gate = {"criteria": {k: {**v.to_dict(), "text": v.describe()} for k, v in study["_gates"].items()},
            **gate_summary(verdicts), "cells_marked": marked, "verdicts": verdicts}
    public = {k: study[k] for k in KEYS if k in study}
    return {"schema": 2, "study": public, "tasks": {"A": "pretrain", "B": "finetune"},
            "models": [{"index": m, "config": study["models"][m], "N": n} for m, n in enumerate(n_of)],
            "curves": curves, "rows": rows, "summary": summary, "fit": fit, "doubling": doubling, "gate": gate,
            "answers": study["answers"], "definitions": sf.__doc__.strip()}


def write_figures(doc: dict, folder: Path) -> list[str]:
    import plotly.graph_objects as go

    from graphpath_common.figures import write_html

    folder.mkdir(parents=True, exist_ok=True)

    def bars(points):
        mean = [p["loss"]["mean"] for p in points]
        ci = [p["loss"]["ci95"] or [p["loss"]["mean"]] * 2 for p in points]
        return mean, dict(type="data", symmetric=False, array=[c[1] - v for c, v in zip(ci, mean)],
                          arrayminus=[v - c[0] for c, v in zip(ci, mean)])

    loss = go.Figure()
    for curve in doc["curves"]:
        mean, error = bars(curve["points"])
        loss.add_scatter(x=[p["D"] for p in curve["points"]], y=mean, error_y=error, mode="lines+markers",
                         name=f"N={curve['N']:,} {curve['arm']}", line=dict(dash="dot" if curve["arm"] == "scratch" else "solid"),
                         marker=dict(symbol=["circle" if p["converged"] else "x" for p in curve["points"]]))
    loss.update_layout(title="Test MSE on B vs data (mean and 95% CI over seeds; x = not converged)",
                       xaxis=dict(type="log", title="D (scratch) or D_F (fine-tuned), graphs of B"),
                       yaxis=dict(type="log", title="test MSE"))
    written = [write_html(loss, folder / "edt-loss.html")]
    transfer, multiplier = go.Figure(), go.Figure()
    fit = (doc["fit"] or {}).get("fit")
    fitted = [r for r in doc["fit"].get("rows", []) if r["D_T"] is not None and r["D_T"] > 0]
    for n in sorted({r["N"] for r in doc["fit"].get("rows", [])}):
        mine = [r for r in fitted if r["N"] == n]
        transfer.add_scatter(x=[r["D_F"] for r in mine], y=[r["D_T"] for r in mine], mode="markers",
                             name=f"N={n:,} D_T (seed-averaged curves)")
        every = [r for r in doc["fit"]["rows"] if r["N"] == n and r["multiplier"] is not None]
        multiplier.add_scatter(x=[r["D_F"] for r in every], y=[r["multiplier"] for r in every], mode="lines+markers",
                               name=f"N={n:,}")
        if fit and mine:
            grid = np.geomspace(min(r["D_F"] for r in mine), max(r["D_F"] for r in mine), 30)
            beta = fit["beta"]["value"] or 0.0
            scale = fit["k"]["value"] * (n ** beta if fit["beta"]["value"] is not None else 1.0)
            transfer.add_scatter(x=grid, y=scale * grid ** fit["alpha"]["value"], mode="lines", name=f"fit, N={n:,}")
    title = "D_T vs D_F"
    if fit:
        title += f": alpha={fit['alpha']['value']:.3g}" + (f", beta={fit['beta']['value']:.3g}"
                                                           if fit["beta"]["value"] is not None else " (no size law)")
    transfer.update_layout(title=title, xaxis=dict(type="log", title="D_F"), yaxis=dict(type="log", title="D_T"))
    written.append(write_html(transfer, folder / "edt-transfer.html"))
    multiplier.update_layout(title="Effective data multiplier (D_F + D_T) / D_F (< 1: ossification)",
                             xaxis=dict(type="log", title="D_F"), yaxis=dict(type="log", title="multiplier"))
    written.append(write_html(multiplier, folder / "edt-multiplier.html"))
    return [str(p) for p in written]


def summary_line(doc: dict) -> str:
    fit, gate = doc["fit"].get("fit"), doc["gate"]
    text = (f"{gate['converged']} of {gate['jobs']} jobs converged, {len(gate['cells_marked'])} cells marked; "
            f"{doc['fit']['points']} points in the fit")
    if not fit:
        return text + f"; no fit ({doc['fit'].get('reason')})"
    parts = [f"alpha={fit['alpha']['value']:.3g} {fit['alpha']['ci95']}"]
    parts.append(f"beta={fit['beta']['value']:.3g} {fit['beta']['ci95']}" if fit["beta"]["value"] is not None
                 else f"beta not fitted ({doc['fit']['size_law_reason']})")
    doubled = sum(d["passed"] for d in doc["doubling"])
    return text + "; " + ", ".join(parts) + f"; doubling check passed for {doubled} of {len(doc['doubling'])} sizes"


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
        start = time.time()
        jobs, cells = make_jobs(study, out)
        require_complete(run_sweep(jobs, out, progress=not args.quiet, desc="edt jobs", **executor))
        doc = analyse(study, score_jobs(study, out, cells), judge(study, out, jobs), cells, bootstrap)
        doc["seconds"] = time.time() - start
        path = save_study(doc, out, "edt.json", write_figures, figures=not args.no_figures)
    print(f"{path}: {summary_line(doc)}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    return run_study_cli("python -m experiments.edt", _main, argv, SpecError)


if __name__ == "__main__":
    sys.exit(main())
