"""python -m experiments.transfer — the task-to-task transfer matrix over data_gen's task suite.

For every seed and every ordered pair (A, B) of the study's tasks (data_gen.tasks.SUITE names):
    pretrain-A   one run on a fixed dataset of D_A graphs of A (`[pretrain]`)
    A-to-B       that model fine-tuned on D_B graphs of B (`[finetune]`); the same D_B dataset for
                 every A within a seed (the diagonal A = B included, kept apart in the analysis)
    baseline-B   the same initialisation (the seed's untrained model) fine-tuned on the same D_B
    zero-shot    pretrain-A's model scored on B with no fine-tuning
Every model is scored on a test set of B drawn for the seed, from which every graph that occurs in
one of the seed's training sets is removed first (canonical hash: vertex count + sorted set of
edges); the number removed is reported. Loss = MSE (every task regresses an integer label),
accuracy = rounded prediction equals the label.

    transfer(A->B)  = baseline loss - transferred loss        (> 0: pre-training on A helped B)
    relative(A->B)  = transfer / constant-predictor loss of B (B's label variance on its test set)
with 95% t-intervals over seeds. The similarity of A and B is the mean of relative(A->B) and
relative(B->A); tasks are clustered on 1 - similarity / max similarity (average linkage); the
asymmetry relative(A->B) - relative(B->A) is reported beside it.

    python -m experiments.transfer                                 # CPU default (transfer.toml)
    python -m experiments.transfer --config experiments/transfer-gpu.toml --workers 8
    python -m experiments.transfer --executor slurm --partition gpu --time 30

Output (`--out`, default runs/<name>): jobs/ (graphpath.training.run run directories), data/ (datasets and
test sets), transfer.json, figures/transfer-matrix.html, transfer-dendrogram.html,
transfer-asymmetry.html. Rerunning skips finished jobs and retries failed ones.
"""
from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np

from data_gen import SpecError, sample
from data_gen.build import build_dataset
from data_gen.tasks import SUITE, constant_baseline, task_spec
from graphpath.evaluation.scores import ci_summary, rounded
from graphpath.sweeps.runner import (Job, SweepError, config_text, executor_options, job_dir,
                             require_complete, run_study_cli, run_sweep, save_study, study_parser)
from graphpath_common.keys import reject_unknown_keys, require_seeds
from graphpath_common.locks import hold
from graphpath_common.rundir import RunDir
from graphpath_common.toml import read_toml

DEFAULT_CONFIG = Path(__file__).resolve().parent / "transfer.toml"
KEYS = ("name", "tasks", "seeds", "pretrain_size", "finetune_size", "test_size", "balance_threshold",
        "data", "model", "pretrain", "finetune")
DATA_KEYS = ("n_max",)
PURPOSES = {"pretrain": 0, "finetune": 1, "test": 2}


def load_study(path: Path) -> dict:
    study = read_toml(path, SweepError)
    reject_unknown_keys(KEYS, study, SweepError, "transfer study")
    reject_unknown_keys(DATA_KEYS, study.get("data", {}), SweepError, "transfer study [data]")
    tasks, seeds = study.get("tasks"), study.get("seeds", [0, 1, 2])
    if not isinstance(tasks, list) or len(tasks) < 2 or len(set(tasks)) != len(tasks):
        raise SweepError(f"tasks must list at least two different task names, got {tasks!r}")
    unknown = [t for t in tasks if t not in SUITE]
    if unknown:
        raise SweepError(f"unknown task(s) {', '.join(map(repr, unknown))} (the suite: {', '.join(SUITE)})")
    require_seeds(seeds, SweepError)
    for key, low in (("pretrain_size", 64), ("finetune_size", 16), ("test_size", 64)):
        value = study.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise SweepError(f"{key} must be an integer >= {low}, got {value!r}")
    study.setdefault("name", "transfer")
    study.setdefault("balance_threshold", None)
    study["seeds"] = seeds
    for section in ("data", "model", "pretrain", "finetune"):
        study.setdefault(section, {})
    try:
        for task in tasks:
            spec_of(study, task)
    except SpecError as error:
        raise SweepError(str(error)) from None
    config_text(run_config(study, seeds[0], tasks[0], tasks[-1], Path("/a"), Path("/b"), "pretrained"))
    return study


def spec_of(study: dict, task: str):
    """The task on the study's graphs (n in [3, n_max]); the same spec as the jobs' stage specs."""
    n_max = study["data"].get("n_max", 8)
    threshold = study["balance_threshold"] if task.startswith("distance-") else None
    return task_spec(task, n_max=n_max, max_vertices=n_max,
                     **({"balance_threshold": threshold} if threshold is not None else {}))


def run_config(study: dict, seed: int, source: str, target: str, pre_data: Path, fine_data: Path | None,
               body: str) -> dict:
    n_max = study["data"].get("n_max", 8)
    data = {"n_max": n_max, "finetune_n_max": n_max, "small_target": n_max,
            "pretrain_task": source, "finetune_task": target}
    if study["balance_threshold"] is not None:
        data.update(pretrain_threshold=study["balance_threshold"], finetune_threshold=study["balance_threshold"])
    pretrain = {**study["pretrain"], "dataset": str(Path(pre_data).resolve()),
                "batch_size": min(study["pretrain"].get("batch_size", 64), study["pretrain_size"])}
    finetune = {**study["finetune"], "body": body,
                "batch_size": min(study["finetune"].get("batch_size", 32), study["finetune_size"])}
    if fine_data is not None:
        finetune["dataset"] = str(Path(fine_data).resolve())
    return {"name": study["name"], "seed": seed, "data": data, "model": dict(study["model"]),
            "train": pretrain, "finetune": finetune}


def data_seed(seed: int, task: str, purpose: str) -> int:
    return int(np.random.SeedSequence([seed, SUITE.index(task), PURPOSES[purpose], 17]).generate_state(1)[0] % 2**31)


def dataset_path(out: Path, seed: int, task: str, purpose: str) -> Path:
    return Path(out) / "data" / f"seed{seed}" / f"{purpose}-{task}"


def build_datasets(study: dict, out: Path) -> None:
    """D_A of every task (pre-training) and D_B of every task (fine-tuning) per seed; kept if built."""
    for seed in study["seeds"]:
        for task in study["tasks"]:
            for purpose, size in (("pretrain", study["pretrain_size"]), ("finetune", study["finetune_size"])):
                path = dataset_path(out, seed, task, purpose)
                if not (path / "manifest.json").is_file():
                    build_dataset(spec_of(study, task), size, data_seed(seed, task, purpose), path, force=True,
                                  progress=False)


def make_jobs(study: dict, out: Path) -> list[Job]:
    jobs = []
    for seed in study["seeds"]:
        pre = {task: dataset_path(out, seed, task, "pretrain") for task in study["tasks"]}
        fine = {task: dataset_path(out, seed, task, "finetune") for task in study["tasks"]}
        for a in study["tasks"]:
            jobs.append(Job(f"seed{seed}/pretrain-{a}", run_config(study, seed, a, a, pre[a], None, "pretrained")))
        for b in study["tasks"]:
            jobs.append(Job(f"seed{seed}/baseline-{b}", run_config(study, seed, b, b, pre[b], fine[b], "random"),
                            "finetune", after=f"seed{seed}/pretrain-{b}"))
            for a in study["tasks"]:
                jobs.append(Job(f"seed{seed}/{a}-to-{b}", run_config(study, seed, a, b, pre[a], fine[b], "pretrained"),
                                "finetune", after=f"seed{seed}/pretrain-{a}"))
    return jobs


# ---- test sets disjoint from training graphs ------------------------------------------------------

def graph_hashes(batch) -> list[bytes]:
    """Canonical hash per graph: its vertex count and the sorted set of its edges (repeats and edge
    order do not matter; the target does not either: it is the question, not the graph)."""
    edges = batch.edges.numpy()  # (B, M, 2)
    counts = batch.num_vertices.numpy()
    out = []
    for n, rows in zip(counts, edges):
        unique = np.unique(rows[rows[:, 0] > 0], axis=0)
        out.append(hashlib.blake2b(np.int64(n).tobytes() + unique.astype(np.int64).tobytes(), digest_size=16).digest())
    return out


def test_set(study: dict, seed: int, task: str, seen: set) -> tuple:
    """(GraphBatch of test_size graphs of `task` none of whose graphs is in `seen`, collisions)."""
    size, spec = study["test_size"], spec_of(study, task)
    kept, collisions, drawn, round_ = [], 0, 0, 0
    while sum(len(k) for k in kept) < size:
        candidates = sample(spec, 2 * size, data_seed(seed, task, "test") + round_)
        hashes = graph_hashes(candidates)
        fresh = np.array([h not in seen for h in hashes], dtype=bool)
        collisions, drawn, round_ = collisions + int((~fresh).sum()), drawn + len(hashes), round_ + 1
        kept.append(candidates[np.flatnonzero(fresh)])
        if round_ > 50:
            raise SweepError(f"test set of {task}: fewer than {size} graphs outside the training sets "
                             f"after {drawn} draws ({collisions} collisions); use larger graphs (data.n_max)")
    from data_gen import GraphBatch

    whole = GraphBatch.cat(kept)
    return whole[:size], {"drawn": drawn, "collisions": collisions}


def training_hashes(out: Path, seed: int, tasks: list[str]) -> set:
    from data_gen import load_dataset

    seen = set()
    for task in tasks:
        for purpose in ("pretrain", "finetune"):
            seen.update(graph_hashes(load_dataset(dataset_path(out, seed, task, purpose))))
    return seen


# ---- scoring and statistics -----------------------------------------------------------------------

def score_checkpoint(run_dir: Path, stage: str, batch) -> dict:
    """Loss and accuracy of the job's final `stage` model on `batch`, which may ask another task
    than the model's own: that is the transfer table's "A unchanged" baseline, named by the study."""
    from graphpath.core.checkpoint import CheckpointError
    from graphpath.core.resolve import load
    from graphpath.evaluation.predict import predict

    final = RunDir(run_dir).checkpoint(stage)
    if not final.is_file():
        raise SweepError(f"{run_dir} is missing or unfinished (no {final.relative_to(run_dir)})")
    try:
        model = load(final).model
    except CheckpointError as error:
        raise SweepError(str(error)) from None
    prediction = predict(model, batch)
    label = batch.label.numpy()
    return {"loss": float(np.mean((prediction - label) ** 2)),
            "accuracy": float(np.mean(rounded(np.nan_to_num(prediction, nan=-1.0)) == label))}


def score_all(study: dict, out: Path, progress: bool = True) -> tuple[list[dict], dict, dict]:
    """(raw rows, constant-predictor losses {task: [per seed]}, test-set report)."""
    from tqdm import tqdm

    rows, constant, report = [], {t: [] for t in study["tasks"]}, {}
    tasks = study["tasks"]
    work = [(seed, b) for seed in study["seeds"] for b in tasks]
    seen_of = {}
    for seed, b in tqdm(work, desc="scoring", unit="test set", disable=not progress, dynamic_ncols=True):
        if seed not in seen_of:
            seen_of = {seed: training_hashes(out, seed, tasks)}
        batch, info = test_set(study, seed, b, seen_of[seed])
        report.setdefault(str(seed), {})[b] = info
        constant[b].append(constant_baseline(batch.label.numpy())["mse"])
        root = Path(out)
        for kind, key, stage, a in ([("baseline", f"seed{seed}/baseline-{b}", "finetune", None)]
                                    + [("transferred", f"seed{seed}/{a}-to-{b}", "finetune", a) for a in tasks]
                                    + [("zero_shot", f"seed{seed}/pretrain-{a}", "pretrain", a) for a in tasks]):
            rows.append({"seed": seed, "source": a, "target": b, "kind": kind,
                         **score_checkpoint(job_dir(root, Job(key, {})), stage, batch)})
    return rows, constant, report


def _ci(values) -> dict:
    values = [float(v) for v in values]
    return {**ci_summary(values), "per_seed": values}


def transfer_cells(rows: list[dict], tasks: list[str], seeds: list[int], constant: dict) -> list[dict]:
    """Per ordered pair (A, B): transfer and relative transfer with t-intervals over seeds, and the
    raw losses and accuracies behind them."""
    def value(kind, a, b, seed, what="loss"):
        return next(r[what] for r in rows if (r["kind"], r["source"], r["target"], r["seed"]) == (kind, a, b, seed))

    cells = []
    for a in tasks:
        for b in tasks:
            base = [value("baseline", None, b, s) for s in seeds]
            moved = [value("transferred", a, b, s) for s in seeds]
            gain = [x - y for x, y in zip(base, moved)]
            scale = [constant[b][i] for i in range(len(seeds))]
            relative = [g / c if c > 0 else float("nan") for g, c in zip(gain, scale)]
            cells.append({"source": a, "target": b, "diagonal": a == b,
                          "transfer": _ci(gain), "relative": _ci(relative),
                          "transferred_loss": _ci(moved), "baseline_loss": _ci(base),
                          "zero_shot_loss": _ci([value("zero_shot", a, b, s) for s in seeds]),
                          "transferred_accuracy": _ci([value("transferred", a, b, s, "accuracy") for s in seeds]),
                          "baseline_accuracy": _ci([value("baseline", None, b, s, "accuracy") for s in seeds]),
                          "zero_shot_accuracy": _ci([value("zero_shot", a, b, s, "accuracy") for s in seeds])})
    return cells


def relative_matrix(cells: list[dict], tasks: list[str]) -> np.ndarray:
    """(T, T) mean relative transfer, rows = source, diagonal NaN (kept apart)."""
    index = {t: i for i, t in enumerate(tasks)}
    matrix = np.full((len(tasks), len(tasks)), np.nan)
    for cell in cells:
        if not cell["diagonal"]:
            matrix[index[cell["source"]], index[cell["target"]]] = cell["relative"]["mean"]
    return matrix


def similarity(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(symmetric similarity (M + M^T) / 2, asymmetry M - M^T), diagonals NaN."""
    return (matrix + matrix.T) / 2, matrix - matrix.T


def cluster(sim: np.ndarray, tasks: list[str]) -> dict:
    """Average-linkage clustering on distance 1 - sim / max|sim| (0 on the diagonal)."""
    from scipy.cluster.hierarchy import dendrogram, linkage
    from scipy.spatial.distance import squareform

    off = sim[~np.eye(len(tasks), dtype=bool)]
    scale = float(np.nanmax(np.abs(off))) if np.isfinite(off).any() and np.nanmax(np.abs(off)) > 0 else 1.0
    distance = 1.0 - np.nan_to_num(sim, nan=0.0) / scale
    np.fill_diagonal(distance, 0.0)
    distance = np.maximum(distance, 0.0)
    links = linkage(squareform(distance, checks=False), method="average")
    tree = dendrogram(links, labels=list(tasks), no_plot=True)
    return {"method": "average", "distance": "1 - similarity / max |similarity|", "scale": scale,
            "linkage": links.tolist(), "order": tree["ivl"], "icoord": tree["icoord"], "dcoord": tree["dcoord"]}


def _nan_none(matrix: np.ndarray) -> list:
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in matrix]


def analyse(study: dict, rows: list[dict], constant: dict, report: dict) -> dict:
    tasks, seeds = study["tasks"], study["seeds"]
    cells = transfer_cells(rows, tasks, seeds, constant)
    matrix = relative_matrix(cells, tasks)
    sim, asym = similarity(matrix)
    clusters = cluster(sim, tasks)
    off = [c for c in cells if not c["diagonal"]]
    best = max(off, key=lambda c: c["relative"]["mean"])
    worst = min(off, key=lambda c: c["relative"]["mean"])
    significant = sum(1 for c in off if c["relative"]["ci95"] and c["relative"]["ci95"][0] > 0)
    harmful = sum(1 for c in off if c["relative"]["ci95"] and c["relative"]["ci95"][1] < 0)
    pairs = [(tasks[i], tasks[j]) for i in range(len(tasks)) for j in range(i + 1, len(tasks))]
    most = max(pairs, key=lambda p: abs(asym[tasks.index(p[0]), tasks.index(p[1])]))
    findings = (f"Of {len(off)} ordered pairs, {significant} transfer positively and {harmful} negatively at 95% "
                f"over {len(seeds)} seeds; the strongest is {best['source']} -> {best['target']} "
                f"({best['relative']['mean']:+.3g} of B's constant-predictor loss), the weakest "
                f"{worst['source']} -> {worst['target']} ({worst['relative']['mean']:+.3g}); the most asymmetric pair is "
                f"{most[0]} / {most[1]} ({asym[tasks.index(most[0]), tasks.index(most[1])]:+.3g}).")
    constants = {t: _ci(constant[t]) for t in tasks}
    collisions = {t: sum(report[str(s)][t]["collisions"] for s in seeds) for t in tasks}
    return {"schema": 1, "study": {k: study[k] for k in KEYS if k in study}, "tasks": tasks, "seeds": seeds,
            "definitions": {"loss": "mse", "accuracy": "rounded prediction == label",
                            "transfer": "baseline loss - transferred loss",
                            "relative": "transfer / constant-predictor loss of B (label variance of B's test set)",
                            "similarity": "(relative(A->B) + relative(B->A)) / 2",
                            "asymmetry": "relative(A->B) - relative(B->A)",
                            "test_hash": "blake2b of the vertex count and the sorted set of edges"},
            "constant": constants, "test_sets": {"per_seed": report, "collisions": collisions,
                                                 "collisions_total": sum(collisions.values())},
            "raw": rows, "cells": cells,
            "matrix": {"rows": "source", "columns": "target", "relative": _nan_none(matrix),
                       "diagonal": [next(c["relative"] for c in cells if c["diagonal"] and c["source"] == t)
                                    for t in tasks]},
            "similarity": _nan_none(sim), "asymmetry": _nan_none(asym), "clustering": clusters,
            "findings": findings}


def write_figures(doc: dict, folder: Path) -> list[str]:
    import plotly.graph_objects as go

    from graphpath_common.figures import write_html

    tasks = doc["tasks"]
    folder.mkdir(parents=True, exist_ok=True)
    by = {(c["source"], c["target"]): c for c in doc["cells"]}

    def hover(cell):
        r, t = cell["relative"], cell["transfer"]
        ci = (lambda b: f"[{b['ci95'][0]:.3g}, {b['ci95'][1]:.3g}]" if b["ci95"] else "(one seed)")
        return (f"{cell['source']} -> {cell['target']}{' (diagonal)' if cell['diagonal'] else ''}<br>"
                f"relative {r['mean']:+.3g} {ci(r)}<br>transfer {t['mean']:+.3g} {ci(t)}<br>"
                f"fine-tuned {cell['transferred_loss']['mean']:.3g}, baseline {cell['baseline_loss']['mean']:.3g}, "
                f"zero-shot {cell['zero_shot_loss']['mean']:.3g}")

    z = [[None if a == b else by[(a, b)]["relative"]["mean"] for b in tasks] for a in tasks]
    text = [[hover(by[(a, b)]) for b in tasks] for a in tasks]
    heat = go.Figure(go.Heatmap(z=z, x=tasks, y=tasks, text=text, hoverinfo="text", colorscale="RdBu", zmid=0,
                                colorbar=dict(title="relative")))
    heat.update_layout(title="Transfer A -> B relative to B's constant-predictor loss (mean over seeds; "
                             "diagonal apart, in the hover)",
                       xaxis=dict(title="B (fine-tuned on)"), yaxis=dict(title="A (pre-trained on)", autorange="reversed"))
    written = [write_html(heat, folder / "transfer-matrix.html")]

    tree = doc["clustering"]
    dendro = go.Figure()
    for xs, ys in zip(tree["icoord"], tree["dcoord"]):
        dendro.add_scatter(x=xs, y=ys, mode="lines", line=dict(color="#444"), showlegend=False, hoverinfo="skip")
    dendro.update_layout(title="Tasks clustered by symmetric transfer (average linkage on 1 - similarity / max)",
                         xaxis=dict(tickvals=[5 + 10 * i for i in range(len(tree["order"]))], ticktext=tree["order"]),
                         yaxis=dict(title="distance"))
    written.append(write_html(dendro, folder / "transfer-dendrogram.html"))

    asym = go.Figure(go.Heatmap(z=doc["asymmetry"], x=tasks, y=tasks, colorscale="PuOr", zmid=0,
                                colorbar=dict(title="A->B minus B->A")))
    asym.update_layout(title="Asymmetry: relative(A -> B) - relative(B -> A)", xaxis=dict(title="B"),
                       yaxis=dict(title="A", autorange="reversed"))
    written.append(write_html(asym, folder / "transfer-asymmetry.html"))
    return [str(p) for p in written]


def matrix_lines(doc: dict) -> list[str]:
    """The relative matrix with CIs as text lines (rows = source)."""
    by = {(c["source"], c["target"]): c["relative"] for c in doc["cells"]}
    lines = []
    for a in doc["tasks"]:
        parts = []
        for b in doc["tasks"]:
            r = by[(a, b)]
            ci = f"[{r['ci95'][0]:+.2f},{r['ci95'][1]:+.2f}]" if r["ci95"] else ""
            parts.append(f"{b}: {r['mean']:+.3f}{ci}{' (diag)' if a == b else ''}")
        lines.append(f"{a} -> " + "; ".join(parts))
    return lines


def _main(argv) -> int:
    parser = study_parser("python -m experiments.transfer", __doc__.split("\n\n")[0], DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    options = executor_options(args)
    study = load_study(args.config)
    out = args.out or Path("runs") / study["name"]
    start = time.time()
    with hold(out, "python -m experiments.transfer"):  # writable, and no other writer, before any work
        build_datasets(study, out)
        status = run_sweep(make_jobs(study, out), out, progress=not args.quiet, desc="transfer jobs", **options)
        require_complete(status)
        rows, constant, report = score_all(study, out, progress=not args.quiet)
        doc = analyse(study, rows, constant, report)
        doc["seconds"] = time.time() - start
        path = save_study(doc, out, "transfer.json", write_figures, figures=not args.no_figures)
    print("\n".join(matrix_lines(doc)), file=sys.stderr)
    print(f"{path}: {len(doc['cells'])} cells x {len(study['seeds'])} seeds in {doc['seconds']:.0f}s; "
          f"{doc['test_sets']['collisions_total']} test graphs dropped as training collisions; {doc['findings']}",
          file=sys.stderr)
    return 0


def main(argv=None) -> int:
    return run_study_cli("python -m experiments.transfer", _main, argv, SpecError)


if __name__ == "__main__":
    sys.exit(main())
