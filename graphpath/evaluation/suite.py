"""`python -m graphpath.evaluate`: score models on the off-distribution suite and write the report.

    python -m graphpath.evaluate RUN_DIR                    # final checkpoint, run's data spec
    python -m graphpath.evaluate --runs A B C --out DIR     # seeds pooled: mean and 95% CI
    python -m graphpath.evaluate --model handcrafted --n 8 --out DIR

Writes `eval.json` (schema: docs/contracts.md), `report.md` and `figures/` into the run dir (or
--out). Every model is scored on the same cached graphs (graphpath.evaluation.sets, drawn from the split
table in data_gen.splits); a run's learned model is shown next to the hand-built model for the
same n, and the pre-training checkpoint is scored on the pre-train and fine-tune sets for the
study's before/after numbers. `graphpath.training.run` calls `evaluate_run(run_dir)` at the end of a study.
"""
from __future__ import annotations

import datetime
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from graphpath_common import provenance
from graphpath_common.cli import ArgumentParser, run_cli
from graphpath_common.files import atomic_write_text
from graphpath_common.jsonfile import write_json
from graphpath_common.locks import hold
from graphpath_common.rundir import RunDir, read_json
from graphpath_common.toml import read_toml
from data_gen.spec import study_sizes_up_to

from handcrafted import build_bfs_transformer, model_size, stream_basis
from handcrafted.bfs_transformer import MAX_SUPPORTED_VERTICES, MIN_VERTICES

from graphpath.evaluation import report
from graphpath.core.checkpoint import CheckpointError
from graphpath.core.resolve import TrainedModel, load
from graphpath.evaluation.predict import model_vocabulary, pool_runs, score_model
from graphpath.evaluation.figures import write_figures
from graphpath.evaluation.raw_outputs import line_probe
from graphpath.evaluation.sets import EvalError, SET_NAMES, default_cache_dir, define_sets, load_set, resolve_names

PROG = "python -m graphpath.evaluate"
SCHEMA_VERSION = 1
DEFAULT_SIZE = 4096  # graphs per set
DEFAULT_GRID_SIZE = 256  # graphs per (n, t) grid cell
BEFORE_AFTER_SETS = ("pretrain", "finetune")


# ---- loading models and runs ----------------------------------------------------------------------

def load_learned(path: Path, device: str, stage: str | None = None) -> TrainedModel:
    """The model `path` names, through the one resolver (graphpath.core.resolve), its failures as
    one-line EvalErrors."""
    try:
        return load(path, stage, device)
    except (CheckpointError, OSError) as error:
        raise EvalError(f"cannot load a model from {path}: {error}".splitlines()[0]) from None


def build_handcrafted(n: int, device: str = "cpu"):
    try:
        return build_bfs_transformer(n).to(device)
    except (ValueError, TypeError) as error:
        raise EvalError(f"cannot build the hand-built model for n={n}: {error}") from None


# What each residual section of the hand-built model holds (handcrafted/bfs_transformer.py's map).
STREAM_MEANING = {
    "is_vertex": "1 on vertex tokens, 0 on the answer token",
    "self_id": "one-hot id of the vertex token",
    "neighbours": "bit u set iff u is a neighbour of v",
    "reach": "1 once the vertex is within l hops of vertex 1",
    "count": "hops before the vertex was reached (its distance, or n)",
    "scratch": "attention's mean reach over the closed neighbourhood, cleared by the MLP",
    "query": "one-hot target t (answer token)",
    "answer": "the copied count of vertex t: the output",
}


def handcrafted_description(n: int) -> dict:
    """Size and residual-stream map of the hand-built model for n (eval.json models.handcrafted.info)."""
    stream = [{"section": name, "width": width, "meaning": STREAM_MEANING.get(name, "")}
              for name, width in stream_basis(n).sections]
    return {**model_size(n), "stream": stream}


def read_run(run_dir: Path, device: str) -> dict:
    """A run's final model (trained on the study's tasks, or an EvalError), its data sizes,
    phases.json and, when the run fine-tuned, its last pre-training checkpoint."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EvalError(f"run directory {run_dir} does not exist")
    trained = load_learned(run_dir, device)
    try:
        trained.require_study(PROG)
    except CheckpointError as error:
        raise EvalError(str(error)) from None
    run = RunDir(run_dir)
    phases = read_json(run.phases, EvalError) if run.phases.is_file() else None
    return {"dir": run_dir, "model": trained.model, "info": trained.info, "data": trained.data, "phases": phases,
            "trained": trained,
            "pretrain": last_pretrain_checkpoint(run_dir) if trained.stage != "pretrain" else None}


def last_pretrain_checkpoint(run_dir: Path) -> Path | None:
    """The JSON of the run's last pre-training checkpoint (`pretrain-final`, else the highest
    `pretrain-<step>`), or None when the run kept none."""
    found = RunDir(run_dir).checkpoint_files("pretrain")
    return found[-1] if found else None


# ---- the work ------------------------------------------------------------------------------------

def prepare(data: dict, names: list[str], size: int, grid_size: int, seed: int, cache_dir, progress=True):
    """{name: (EvalSet, GraphBatch, data hash)} for the requested sets at the run's sizes."""
    sets = define_sets(data)
    prepared = {}
    for name in tqdm(names, desc="evaluation data", disable=not progress, leave=False):
        evalset = sets[name]
        batch, digest = load_set(evalset, grid_size if evalset.kind == "grid" else size, seed, cache_dir)
        prepared[name] = (evalset, batch, digest)
    return prepared


def _entry(kind: str, description: str, sources: list[str], vocabulary, runs_info: list[dict]) -> dict:
    return {"kind": kind, "description": description, "sources": sources, "vocabulary": vocabulary,
            "runs": len(sources), "info": runs_info, "results": {}, "skipped": {}}


def score_entry(entry: dict, models: list, prepared: dict, device: str, label: str, progress: bool,
                only=None) -> None:
    """Fill entry's results (pooled over `models`, one per run) and skipped sets."""
    per_run = []
    for model in models:
        results, skipped = score_model(model, prepared, entry["vocabulary"], device, label, progress, only)
        per_run.append(results)
        entry["skipped"].update(skipped)
    for name in per_run[0]:
        entry["results"][name] = pool_runs([r[name] for r in per_run])


def _info(info: dict) -> dict:
    return {k: info.get(k) for k in ("step", "seed", "stage", "model_config", "precision", "finetune_optimizer")}


def score_runs(loaded: list[dict], prepared: dict, device: str, progress: bool) -> dict:
    """{"learned": entry, "learned-pretrain": entry (pretrain/finetune sets only)} for the runs."""
    vocab = {model_vocabulary(r["model"], r["info"]) for r in loaded}
    if len(vocab) > 1:
        raise EvalError(f"runs disagree on the model vocabulary: {sorted(vocab, key=str)}")
    infos = [_info(r["info"]) for r in loaded]
    learned = _entry("learned", "the run's final checkpoint", [str(r["dir"]) for r in loaded], vocab.pop(), infos)
    score_entry(learned, [r["model"] for r in loaded], prepared, device, "learned", progress)
    models = {"learned": learned}
    before = [n for n in BEFORE_AFTER_SETS if n in prepared]
    if not before or not all(r["pretrain"] or r["info"].get("stage") == "pretrain" for r in loaded):
        return models
    pretrain = _entry("learned", "the run's pre-training checkpoint (before fine-tuning)",
                      [str(r["pretrain"] or r["dir"]) for r in loaded], learned["vocabulary"], infos)
    if not any(r["pretrain"] for r in loaded):  # never fine-tuned: the final model is the pre-trained one
        pretrain["results"] = {n: learned["results"][n] for n in before if n in learned["results"]}
    else:
        pre_models = [load_learned(r["pretrain"], device).model if r["pretrain"] else r["model"] for r in loaded]
        for run, pre_model in zip(loaded, pre_models):
            run["pretrain_model"] = pre_model  # the line-graph probe asks it too
        score_entry(pretrain, pre_models, prepared, device, "learned-pretrain", progress, before)
    models["learned-pretrain"] = pretrain
    return models


def score_handcrafted(n: int, prepared: dict, device: str, progress: bool, beside: bool) -> dict | None:
    """The hand-built model's entry. Beside runs (`beside`) it is skipped, with a line saying so,
    only where no hand-built model of the runs' size exists; any other failure is an error."""
    if beside and not MIN_VERTICES <= n <= MAX_SUPPORTED_VERTICES:
        print(f"note: no hand-built model beside the run: it exists for n in [{MIN_VERTICES}, "
              f"{MAX_SUPPORTED_VERTICES}], the run's n_max is {n}", file=sys.stderr)
        return None
    entry = _entry("handcrafted", f"hand-built BFS transformer, n = {n}", [f"handcrafted.build_bfs_transformer({n})"], n, [])
    model = build_handcrafted(n, device)
    entry["info"] = [handcrafted_description(n)]
    score_entry(entry, [model], prepared, device, "handcrafted", progress)
    return entry


def document(models: dict, prepared: dict, loaded: list[dict], data: dict, settings: dict, title) -> dict:
    """Assemble eval.json (schema in docs/contracts.md) from the scored models."""
    primary = "learned" if "learned" in models else "handcrafted"
    results = models[primary]["results"]
    set_data = {name: {"kind": s.kind, "description": s.description, "spec": s.spec.to_dict(),
                       "seed": s.seed, "draw": settings["seed"],
                       "size": settings["grid_size"] if s.kind == "grid" else settings["size"],
                       "count": len(batch), "data_sha256": digest}
                for name, (s, batch, digest) in prepared.items()}
    doc = {"schema_version": SCHEMA_VERSION, "title": title or primary,
           "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "model": ", ".join(models[primary]["sources"]), "primary": primary,
           "max_vertices": next(iter(prepared.values()))[0].spec.max_vertices, "data": data, "eval": settings,
           "sets": {name: {"kind": set_data[name]["kind"], "description": set_data[name]["description"], **block}
                    for name, block in results.items()},
           "set_data": set_data, "models": models, "phases": [r["phases"] for r in loaded]}
    if "grid" in results:
        doc["grid"] = {**results["grid"]["cells"], "train_n_max": data.get("finetune_n_max", 7),
                       "by_distance": results["grid"]["by_distance"]}
    doc["reproduction"] = report.study_rows(doc)
    if "learned" in models and all(i.get("stage") == "pretrain" for i in models["learned"]["info"]):
        for row in doc["reproduction"]:  # a run that never fine-tuned has no "after"
            if row["key"] == "finetune-after":
                row.update(mse=None, mse_ci95=None, source="the run has no fine-tuning stage")
    report.fill_from_phases(doc["reproduction"], doc["phases"] or [None])
    doc["findings"] = report.findings(doc, doc["phases"] or [None])
    report.attach_findings(doc)
    return doc


def evaluate(runs: list[Path], *, data: dict | None = None, handcrafted_n: int | None = None,
             compare_handcrafted: bool = True, sets=None, size: int = DEFAULT_SIZE,
             grid_size: int = DEFAULT_GRID_SIZE, seed: int = 0, device: str = "cpu", cache_dir="default",
             progress: bool = True, title: str | None = None) -> dict:
    """The eval.json document for the learned runs (pooled) and/or the hand-built model."""
    started = time.perf_counter()
    invocation = provenance.entry(device=device, threads=torch.get_num_threads())
    names = resolve_names(sets)
    for value, what in ((size, "--size"), (grid_size, "--grid-size")):
        if value <= 0:
            raise EvalError(f"{what} must be positive, got {value}")
    if seed < 0:
        raise EvalError(f"--seed (the evaluation draw) must be >= 0, got {seed}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EvalError(f"device {device} requested but CUDA is not available")
    refuse_repeats(runs)
    loaded = [read_run(r, device) for r in runs]
    seeds = [r["info"].get("seed") for r in loaded]
    repeated = sorted({s for s in seeds if s is not None and seeds.count(s) > 1})
    if repeated:
        raise EvalError(f"runs to pool must be different seeds; seed {repeated[0]} is in "
                        f"{', '.join(str(r['dir']) for r in loaded if r['info'].get('seed') == repeated[0])}")
    for other in loaded[1:]:
        if other["data"] != loaded[0]["data"]:
            raise EvalError(f"runs disagree on the data spec: {loaded[0]['dir']} has {loaded[0]['data']}, "
                            f"{other['dir']} has {other['data']}")
    if loaded:
        if data is not None and data != loaded[0]["data"]:
            raise EvalError(f"--data-from spec {data} differs from the runs' {loaded[0]['data']}")
        data = loaded[0]["data"]
    data = data if data is not None else default_data(handcrafted_n)
    cache = default_cache_dir() if cache_dir == "default" else (None if cache_dir is None else Path(cache_dir))
    prepared = prepare(data, names, size, grid_size, seed, cache, progress)
    data_seconds = time.perf_counter() - started
    models = score_runs(loaded, prepared, device, progress) if loaded else {}
    beside = bool(loaded) and handcrafted_n is None and compare_handcrafted
    if beside:
        handcrafted_n = data.get("n_max", 15)
    if handcrafted_n is not None:
        entry = score_handcrafted(handcrafted_n, prepared, device, progress, beside)
        if entry is not None:
            models["handcrafted"] = entry
    if not any(m["results"] for m in models.values()):
        reasons = [why for m in models.values() for why in m["skipped"].values()]
        raise EvalError("no requested set can be scored" + (f": {reasons[0]}" if reasons else ""))
    probe = line_probe(probe_models(loaded, models, handcrafted_n, data.get("n_max", 15), device),
                       data.get("n_max", 15), device)
    settings = {"seed": seed, "size": size, "grid_size": grid_size, "device": device,
                "cache_dir": None if cache is None else str(cache),
                "seconds": {"data": round(data_seconds, 3),
                            "scoring": round(time.perf_counter() - started - data_seconds, 3)}}
    doc = document(models, prepared, loaded, data, settings, title)
    doc["line_probe"] = probe
    doc["provenance"] = {"evaluation": provenance.finish(invocation, "finished"),
                         "runs": [{"run": str(r["dir"]), "invocations": provenance.read_invocations(r["dir"])}
                                  for r in loaded]}
    return doc


def refuse_repeats(runs: list[Path]) -> None:
    """EvalError when a run is given twice (it would count twice in every pooled mean and CI)."""
    seen = set()
    for run in runs:
        if Path(run).resolve() in seen:
            raise EvalError(f"run {run} is given twice; each run counts once in the pooled numbers")
        seen.add(Path(run).resolve())


def probe_models(loaded: list[dict], models: dict, handcrafted_n: int | None, n_max: int, device: str) -> dict:
    """{entry label: [one model per run]} for the line-graph probe: the learned runs' final and
    pre-training checkpoints and the hand-built model, where each was scored."""
    out = {}
    if loaded:
        out["learned"] = [r["model"] for r in loaded]
        if "learned-pretrain" in models:
            out["learned-pretrain"] = [r.get("pretrain_model", r["model"]) for r in loaded]
    if "handcrafted" in models and handcrafted_n == n_max:  # the probe's graphs speak n_max's vocabulary
        out["handcrafted"] = [build_handcrafted(handcrafted_n, device)]
    return out


def default_data(n: int | None) -> dict:
    """Data spec for a hand-built model alone: the study's sizes, capped at n."""
    if n is None:
        raise EvalError("nothing to evaluate: give RUN_DIR, --runs, or --model handcrafted --n N")
    return study_sizes_up_to(n)


def write_outputs(doc: dict, out_dir: Path, figures: bool = True) -> dict:
    """eval.json, report.md and figures/ under out_dir (each written to a temporary name first)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    doc["figures"] = write_figures(doc, RunDir(out_dir).figures) if figures else []
    doc["eval"]["seconds"]["figures"] = round(time.perf_counter() - started, 3)
    doc["eval"]["seconds"]["total"] = round(sum(v for k, v in doc["eval"]["seconds"].items() if k != "total"), 3)
    write_json(RunDir(out_dir).eval, doc, default=str)
    atomic_write_text(RunDir(out_dir).report, report.render_markdown(doc))
    return doc


def evaluate_run(run_dir, **options) -> dict:
    """Score a run's final checkpoint (and the hand-built model beside it), or a group's seeds
    pooled, and write eval.json, report.md and figures/ into the run (or group) directory, holding
    it (graphpath_common.locks); returns the eval.json document. Options: those of `evaluate` plus
    `figures`. EvalError (one line) for bad input."""
    figures = options.pop("figures", True)
    run = RunDir(run_dir)
    with hold(run.path, PROG):
        doc = evaluate([seed.path for seed in run.runs()], title=run.path.name, **options)
        return write_outputs(doc, run.path, figures)


# ---- command line --------------------------------------------------------------------------------

def parse_args(argv):
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", nargs="?", type=Path, help="a run directory (final checkpoint + data spec)")
    parser.add_argument("--runs", nargs="+", type=Path, default=[], help="several runs (seeds) to pool")
    parser.add_argument("--model", choices=("learned", "handcrafted"), default="learned",
                        help="handcrafted: score the hand-built model for --n alone")
    parser.add_argument("--n", type=int, help="vertex count of the hand-built model")
    parser.add_argument("--data-from", type=Path, help="with --model handcrafted: take a run's [data] table")
    parser.add_argument("--out", type=Path, help="output directory (default: the run dir, runs/aggregate, "
                        "or runs/handcrafted-n<N>)")
    parser.add_argument("--sets", nargs="+", help=f"sets or groups: {', '.join(SET_NAMES)}; study, tests, "
                        "shift, all (default all)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="graphs per set")
    parser.add_argument("--grid-size", type=int, default=DEFAULT_GRID_SIZE, help="graphs per grid cell")
    parser.add_argument("--seed", type=int, default=0, help="draw of the evaluation data: 0 = the split "
                        "table's sets (data_gen.splits), another value redraws every set from its row")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's); 1 is fastest "
                        "on a machine busy with other work")
    parser.add_argument("--cache", type=Path, help=f"cache folder (default {default_cache_dir()})")
    parser.add_argument("--no-cache", action="store_true", help="draw the sets afresh, store nothing")
    parser.add_argument("--no-handcrafted", action="store_true", help="do not score the hand-built model beside runs")
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def run(args) -> Path:
    runs = ([args.run_dir] if args.run_dir else []) + list(args.runs)
    group = args.run_dir if args.run_dir and not args.runs and RunDir(args.run_dir).is_group else None
    if group is not None:  # a group of seeds (train --seeds): its seeds pooled, written into the group
        runs = [seed.path for seed in RunDir(group).seeds]
    if args.model == "handcrafted":
        if runs:
            raise EvalError("--model handcrafted scores the hand-built model alone; drop RUN_DIR/--runs "
                            "(a run's evaluation already shows the hand-built model beside it)")
        if args.n is None:
            raise EvalError("--model handcrafted needs --n N")
        if args.n < 3:
            raise EvalError(f"--n must be >= 3 (vertices 1 and 2 and room for a path), got {args.n}")
        data = None
        if args.data_from:
            table = read_toml(RunDir(args.data_from).config, EvalError) if args.data_from.is_dir() else None
            if not table or "data" not in table:
                raise EvalError(f"--data-from {args.data_from}: no config.toml with a [data] table")
            data = dict(table["data"])
        out = args.out or Path("runs") / f"handcrafted-n{args.n}"
    else:
        if not runs:
            raise EvalError("give RUN_DIR or --runs DIR... (or --model handcrafted --n N)")
        if args.n is not None or args.data_from:
            raise EvalError("--n and --data-from belong to --model handcrafted")
        data = None
        out = args.out or group or (runs[0] if len(runs) == 1 else Path("runs") / "aggregate")
    cache = None if args.no_cache else (args.cache or "default")
    if args.threads is not None:
        if args.threads < 1:
            raise EvalError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    missing = [str(r) for r in runs if not Path(r).is_dir()]
    if missing:
        raise EvalError(f"run directory {missing[0]} does not exist")
    started = time.perf_counter()
    with hold(out, PROG):  # checked writable, and no other writer, before the work
        doc = evaluate(runs, data=data, handcrafted_n=args.n, compare_handcrafted=not args.no_handcrafted,
                       sets=args.sets, size=args.size, grid_size=args.grid_size, seed=args.seed,
                       device=args.device, cache_dir=cache, progress=not args.quiet, title=out.name)
        write_outputs(doc, out, figures=not args.no_figures)
    seconds = doc["eval"]["seconds"]
    print(f"evaluated {len(doc['sets'])} set(s) x {len(doc['models'])} model(s) in "
          f"{time.perf_counter() - started:.1f} s (data {seconds['data']:.1f} s, scoring {seconds['scoring']:.1f} s, "
          f"figures {seconds['figures']:.1f} s) -> {RunDir(out).eval}, {RunDir(out).report}")
    for model, entry in doc["models"].items():
        for name, why in entry["skipped"].items():
            print(f"skipped {model} on {name}: {why}", file=sys.stderr)
    return out


def main(argv=None) -> int:
    return run_cli(PROG, _main, argv, EvalError)


def _main(argv) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
