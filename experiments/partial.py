"""python -m experiments.partial — partial fine-tuning (Lu et al. 2021; LoRA, Hu et al. 2021).

For every seed: one pre-training run on the study's `pretrain` set, then one fine-tuning job per
(mode, rank, body): modes full | norm-embed | readout | lora (one job per rank in `ranks`), each
on the pre-trained body and, as Lu et al.'s control, on the run's untrained initialisation
(`body = "random"`). Each fine-tuned model is scored on the fine-tuning set and every
out-of-distribution set of graphpath.evaluation.sets (`sets`, default all), the same graphs for every
job. Results: `partial.json` — per variant its trainable parameter count (formula of
graphpath.training.partial) and, per set, MSE and accuracy with a 95% t-interval over seeds; figures
`figures/partial-finetune.html` (fine-tune loss vs trainable parameters) and
`figures/partial-sets.html` (every set per variant).

    python -m experiments.partial                              # CPU default (experiments/partial.toml)
    python -m experiments.partial --config experiments/partial-gpu.toml --out runs/partial-gpu
"""
from __future__ import annotations

import sys
from pathlib import Path

from data_gen import SpecError
from graphpath.core.checkpoint import CheckpointError
from graphpath.core.resolve import load
from graphpath.evaluation.scores import ci_summary
from graphpath.evaluation.predict import model_vocabulary, score_model
from graphpath.evaluation.sets import EvalError, define_sets, load_set, resolve_names
from graphpath.core.model import ModelConfig
from graphpath.training.partial import BODIES, MODES, expected_trainable
from graphpath.sweeps.runner import SweepError as StudyError
from graphpath.sweeps.runner import (Job, best_eval_loss, config_text, executor_options, job_dir,
                             require_complete, run_study_cli, run_sweep, save_study, study_parser)
from graphpath_common.keys import reject_unknown_keys, require_seeds
from graphpath_common.locks import hold
from graphpath_common.toml import read_toml


DEFAULT_CONFIG = Path(__file__).resolve().parent / "partial.toml"
KEYS = ("name", "seeds", "modes", "ranks", "lora_alpha", "bodies", "sets", "eval_size", "data", "model",
        "pretrain", "finetune")


def load_study(path: Path) -> dict:
    study = read_toml(path, StudyError)
    reject_unknown_keys(KEYS, study, StudyError, "partial study")
    study = {"name": "partial", "seeds": [0], "modes": list(MODES), "ranks": [1, 4], "bodies": list(BODIES),
             "sets": ["finetune", "tests", "shift"], "eval_size": 1024, "pretrain": {}, "finetune": {}, **study}
    seeds = study["seeds"]
    require_seeds(seeds, StudyError)
    bad = [m for m in study["modes"] if m not in MODES]
    if bad or not study["modes"]:
        raise StudyError(f"unknown mode(s) {bad} (modes: {', '.join(MODES)})")
    bad = [b for b in study["bodies"] if b not in BODIES]
    if bad or not study["bodies"]:
        raise StudyError(f"unknown body {bad} (bodies: {', '.join(BODIES)})")
    if "lora" in study["modes"] and (not study["ranks"] or not all(
            isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in study["ranks"])):
        raise StudyError(f"ranks must be positive integers, got {study['ranks']!r}")
    if not isinstance(study["eval_size"], int) or study["eval_size"] < 16:
        raise StudyError(f"eval_size must be an integer >= 16, got {study['eval_size']!r}")
    try:
        study["sets"] = resolve_names(study["sets"])
    except EvalError as error:
        raise StudyError(str(error)) from None
    for variant in variants(study):
        config_text(run_config(study, seeds[0], variant))
    return study


def variants(study: dict) -> list[dict]:
    """Every (mode, rank, body) fine-tuning job of one seed, in a fixed order."""
    out = []
    for body in study["bodies"]:
        for mode in study["modes"]:
            for rank in (study["ranks"] if mode == "lora" else [None]):
                name = f"{mode}{'' if rank is None else f'-r{rank}'}-{body}"
                out.append({"name": name, "mode": mode, "rank": rank, "body": body})
    return out


def run_config(study: dict, seed: int, variant: dict | None) -> dict:
    finetune = dict(study["finetune"])
    if variant is not None:
        finetune.update(mode=variant["mode"], body=variant["body"])
        if variant["rank"] is not None:
            finetune["lora_rank"] = variant["rank"]
            if "lora_alpha" in study:
                finetune["lora_alpha"] = study["lora_alpha"]
    return {"name": study["name"], "seed": seed, "data": dict(study.get("data", {})),
            "model": dict(study.get("model", {})), "train": dict(study["pretrain"]), "finetune": finetune}


def run_study(study: dict, out: Path, progress: bool = True, **executor) -> dict:
    """Run (or skip) every job through graphpath.sweeps.runner (`executor`: run_sweep's options), then score."""
    sets = define_sets(study.get("data", {}))
    prepared = {}
    for name in study["sets"]:
        batch, digest = load_set(sets[name], study["eval_size"], 0, None)
        prepared[name] = (sets[name], batch, digest)
    jobs = []
    for seed in study["seeds"]:
        jobs.append(Job(f"seed{seed}/pretrain", run_config(study, seed, None)))
        jobs += [Job(f"seed{seed}/{v['name']}", run_config(study, seed, v), "finetune", after=f"seed{seed}/pretrain")
                 for v in variants(study)]
    require_complete(run_sweep(jobs, out, progress=progress, desc="partial jobs", **executor))
    results = {}
    for seed, variant in [(seed, v) for seed in study["seeds"] for v in variants(study)]:
        job = job_dir(out, Job(f"seed{seed}/{variant['name']}", {}))
        try:  # the sets are the study's: the job must have trained on the study's tasks
            trained = load(job)
            trained.require_study("experiments.partial")
        except CheckpointError as error:
            raise StudyError(str(error)) from None
        scored, _ = score_model(trained.model, prepared, model_vocabulary(trained.model, trained.info), progress=False)
        results[(seed, variant["name"])] = {"best_finetune_eval": best_eval_loss(job, "finetune"),
                                            "sets": {k: {"mse": v["mse"], "accuracy": v["accuracy"]}
                                                     for k, v in scored.items()}}
    model_config = ModelConfig.from_dict({**study.get("model", {}),
                                          "max_vertices": sets["pretrain"].spec.max_vertices})
    rows = []
    for variant in variants(study):
        per_seed = [results[(seed, variant["name"])] for seed in study["seeds"]]
        rows.append({**variant, "trainable": expected_trainable(model_config, variant["mode"], variant["rank"]),
                     "finetune_loss": ci_summary([r["best_finetune_eval"] for r in per_seed]),
                     "sets": {name: {metric: ci_summary([r["sets"][name][metric] for r in per_seed if name in r["sets"]])
                                     for metric in ("mse", "accuracy")} for name in study["sets"]},
                     "per_seed": per_seed})
    return {"schema": 1, "study": study, "total_parameters": expected_trainable(model_config, "full"),
            "set_data": {name: {"description": p[0].description, "data_sha256": p[2]} for name, p in prepared.items()},
            "variants": rows}


def write_figures(doc: dict, folder: Path) -> list[str]:
    import plotly.graph_objects as go

    from graphpath_common.figures import write_html

    def error(blocks):
        means = [b["mean"] for b in blocks]
        return dict(type="data", symmetric=False,
                    array=[(b["ci95"] or [m, m])[1] - m for b, m in zip(blocks, means)],
                    arrayminus=[m - (b["ci95"] or [m, m])[0] for b, m in zip(blocks, means)])

    folder.mkdir(parents=True, exist_ok=True)
    loss = go.Figure()
    for body in doc["study"]["bodies"]:
        rows = sorted((r for r in doc["variants"] if r["body"] == body), key=lambda r: r["trainable"])
        loss.add_scatter(x=[r["trainable"] for r in rows], y=[r["finetune_loss"]["mean"] for r in rows],
                         error_y=error([r["finetune_loss"] for r in rows]), mode="markers+text",
                         text=[r["name"].rsplit("-", 1)[0] for r in rows], textposition="top center",
                         name=f"{body} body")
    loss.update_layout(title="Best fine-tune held-out MSE vs trainable parameters (95% CI over seeds)",
                       xaxis=dict(type="log", title="trainable parameters"), yaxis=dict(type="log", title="MSE"))
    sets = go.Figure()
    for name in doc["study"]["sets"]:
        blocks = [r["sets"][name]["mse"] for r in doc["variants"]]
        sets.add_bar(x=[r["name"] for r in doc["variants"]], y=[b["mean"] for b in blocks], error_y=error(blocks),
                     name=name)
    sets.update_layout(barmode="group", title="MSE on every set per fine-tuning variant (95% CI over seeds)",
                       yaxis=dict(type="log", title="MSE"))
    return [str(write_html(loss, folder / "partial-finetune.html")), str(write_html(sets, folder / "partial-sets.html"))]


def _main(argv) -> int:
    parser = study_parser("python -m experiments.partial", __doc__.split("\n\n")[0], DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    executor = executor_options(args)
    study = load_study(args.config)
    out = args.out or Path("runs") / study["name"]
    with hold(out, "python -m experiments.partial"):  # writable, and no other writer, before any job runs
        doc = run_study(study, out, progress=not args.quiet, **executor)
        path = save_study(doc, out, "partial.json", write_figures, figures=not args.no_figures)
    best = min(doc["variants"], key=lambda r: r["finetune_loss"]["mean"])
    print(f"{path}: {len(doc['variants'])} variants x {len(study['seeds'])} seeds; best fine-tune "
          f"MSE {best['finetune_loss']['mean']:.4g} ({best['name']}, {best['trainable']:,} trainable)", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    return run_study_cli("python -m experiments.partial", _main, argv, SpecError, EvalError)


if __name__ == "__main__":
    sys.exit(main())
