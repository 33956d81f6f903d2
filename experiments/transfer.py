"""python -m experiments.transfer — the task-to-task transfer matrix over data_gen's task suite.

For every seed, every ordered pair (A, B) of the study's tasks (data_gen.tasks.SUITE names) and
every fine-tuning size D_B in `finetune_sizes`:
    pretrain-A     one run on a fixed dataset of D_A graphs of A (`[pretrain]`)
    control        one run of equal compute on the `control` task's D_A graphs with their labels
                   shuffled across graphs (the same inputs and label marginal, no task)
    A-to-B         pretrain-A fine-tuned on D_B graphs of B (the same dataset for every A)
    control-to-B   the control fine-tuned on the same data
    baseline-B     the seed's untrained initialisation (the one every pre-training starts from)
                   trained on the same data
    zero-shot      pretrain-A scored on B with no fine-tuning
Every fine-tuning arm runs at each lr of `lrs`, for steps that grow with D_B ([steps]); the lr of
each (arm, A, B, D_B) is the one with the lowest mean loss over seeds on B's validation sample
(split study-validation), and only its test losses are reported (split study-test); a pre-trained
arm (transferred, control) may also choose no fine-tuning, lr 0 (`choose`). Both samples
are drawn per seed, and every graph of the seed's training sets (and, for validation, of the test
sample) is removed first (canonical hash: vertex count + sorted set of edges). Every job is judged
by the convergence gate ([convergence]); a cell whose jobs did not all converge is marked and left
out of the tests. Statistics: experiments.transfer_stats (t-intervals over seeds, BH across
cells). Loss = MSE, accuracy = rounded prediction equals the label.

    python -m experiments.transfer                                 # CPU default (transfer.toml)
    python -m experiments.transfer --config experiments/transfer-gpu.toml --workers 8

Output (`--out`, default runs/<name>): jobs/, data/, transfer.json, figures/transfer-matrix.html,
transfer-dendrogram.html, transfer-asymmetry.html. Rerunning skips finished jobs.
"""
from __future__ import annotations

import hashlib
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from data_gen import SpecError
from data_gen.build import build_dataset
from data_gen.dataset import load_dataset, write_arrays
from data_gen.splits import split_batch
from data_gen.tasks import SUITE, task_spec
from graphpath.sweeps.convergence import Criterion, criteria, gate_summary, label_variance
from graphpath.sweeps.runner import (Job, SweepError, config_text, executor_options, job_dir,
                                     require_complete, run_study_cli, run_sweep, save_study, study_parser)
from graphpath_common.keys import reject_unknown_keys, require_seeds
from graphpath_common.locks import hold
from graphpath_common.toml import read_toml

from . import protocol
from . import transfer_stats as ts
from .transfer_figures import write_figures

DEFAULT_CONFIG = Path(__file__).resolve().parent / "transfer.toml"
KEYS = ("name", "tasks", "control", "seeds", "pretrain_size", "finetune_sizes", "lrs", "test_size",
        "validation_size", "balance_threshold", "fdr", "steps", "convergence", "data", "model", "pretrain",
        "finetune", "answers")
DATA_KEYS = ("n_max",)
PURPOSES = {"pretrain": 0, "finetune": 1}
GATES = {"pretrain": Criterion(max_ratio=0.1), "control": Criterion(), "finetune": Criterion()}


def load_study(path: Path) -> dict:
    study = read_toml(path, SweepError)
    reject_unknown_keys(KEYS, study, SweepError, "transfer study")
    reject_unknown_keys(DATA_KEYS, study.get("data", {}), SweepError, "transfer study [data]")
    tasks, seeds = study.get("tasks"), study.get("seeds", [0, 1, 2])
    if not isinstance(tasks, list) or len(tasks) < 2 or len(set(tasks)) != len(tasks):
        raise SweepError(f"tasks must list at least two different task names, got {tasks!r}")
    study = {"name": "transfer", "control": "distance-any", "balance_threshold": None, "fdr": 0.05,
             "validation_size": 1024, "answers": {}, **study, "seeds": seeds}
    unknown = [t for t in tasks + [study["control"]] if t not in SUITE]
    if unknown:
        raise SweepError(f"unknown task(s) {', '.join(map(repr, unknown))} (the suite: {', '.join(SUITE)})")
    require_seeds(seeds, SweepError)
    for key, low in (("pretrain_size", 64), ("test_size", 64), ("validation_size", 64)):
        value = study.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise SweepError(f"{key} must be an integer >= {low}, got {value!r}")
    sizes = study.get("finetune_sizes")
    if (not isinstance(sizes, list) or not sizes or len(set(sizes)) != len(sizes)
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 16 for d in sizes)):
        raise SweepError(f"finetune_sizes must list distinct integers >= 16, got {sizes!r}")
    if not (isinstance(study["fdr"], float) and 0 < study["fdr"] < 1):
        raise SweepError(f"fdr must lie in (0, 1), got {study['fdr']!r}")
    study["finetune_sizes"] = sorted(sizes)
    study["lrs"] = protocol.check_lrs(study.get("lrs"), "lrs")
    study["steps"] = protocol.step_rule(study.get("steps"), "transfer study [steps]")
    for section in ("data", "model", "pretrain", "finetune"):
        study.setdefault(section, {})
    study["_gates"] = criteria(study.get("convergence"), GATES)
    study["_gates"]["pretrain"].check_every(study["pretrain"].get("steps", 1000),
                                            study["pretrain"].get("eval_every", 100), "[pretrain]")
    try:
        for task in set(tasks + [study["control"]]):
            spec_of(study, task)
    except SpecError as error:
        raise SweepError(str(error)) from None
    protocol.require_depth(study["model"], n_max(study), "[model]")
    config_text(fine_config(study, seeds[0], tasks[0], tasks[-1], Path("/a"), Path("/b"), "pretrained",
                            sizes[0], study["lrs"][0]))
    return study


def n_max(study: dict) -> int:
    return study["data"].get("n_max", 8)


def spec_of(study: dict, task: str):
    """The task on the study's graphs (n in [3, n_max]); the same spec as the jobs' stage specs."""
    threshold = study["balance_threshold"] if task.startswith("distance-") else None
    return task_spec(task, n_max=n_max(study), max_vertices=n_max(study),
                     **({"balance_threshold": threshold} if threshold is not None else {}))


def base_config(study: dict, seed: int, source: str, target: str, pre_data: Path) -> dict:
    data = {"n_max": n_max(study), "finetune_n_max": n_max(study), "small_target": n_max(study),
            "pretrain_task": source, "finetune_task": target}
    if study["balance_threshold"] is not None:
        data.update(pretrain_threshold=study["balance_threshold"], finetune_threshold=study["balance_threshold"])
    pretrain = {**study["pretrain"], "dataset": str(Path(pre_data).resolve()),
                "batch_size": min(study["pretrain"].get("batch_size", 64), study["pretrain_size"])}
    return {"name": study["name"], "seed": seed, "data": data, "model": dict(study["model"]), "train": pretrain,
            "finetune": {"steps": 1}}


def fine_config(study: dict, seed: int, source: str, target: str, pre_data: Path, fine_data: Path, body: str,
                size: int, lr: float) -> dict:
    raw = base_config(study, seed, source, target, pre_data)
    raw["finetune"] = {**study["finetune"], "body": body, "lr": lr, "dataset": str(Path(fine_data).resolve()),
                       **protocol.steps_for(size, study["finetune"].get("batch_size", 32), study["steps"])}
    raw["finetune"]["min_lr"] = min(raw["finetune"].get("min_lr", 0.0), lr)
    return raw


def data_seed(seed: int, task: str, purpose: str, size: int = 0) -> int:
    return int(np.random.SeedSequence([seed, SUITE.index(task), PURPOSES[purpose], 17, size]).generate_state(1)[0] % 2**31)


def dataset_path(out: Path, seed: int, name: str) -> Path:
    return Path(out) / "data" / f"seed{seed}" / name


def build_datasets(study: dict, out: Path) -> None:
    """Per seed: D_A graphs of every task and of the control task (its labels shuffled into a
    copy), and every fine-tuning size of every task; kept if built."""
    for seed in study["seeds"]:
        wanted = [(f"pretrain-{t}", t, "pretrain", study["pretrain_size"]) for t in set(study["tasks"] + [study["control"]])]
        wanted += [(f"finetune-{t}-D{d}", t, "finetune", d) for t in study["tasks"] for d in study["finetune_sizes"]]
        for name, task, purpose, size in wanted:
            path = dataset_path(out, seed, name)
            if not (path / "manifest.json").is_file():
                build_dataset(spec_of(study, task), size, data_seed(seed, task, purpose, size), path, force=True,
                              progress=False)
        control = dataset_path(out, seed, "control")
        if not (control / "manifest.json").is_file():
            graphs = load_dataset(dataset_path(out, seed, f"pretrain-{study['control']}"))
            arrays = {k: getattr(graphs, k).numpy() for k in ("edges", "num_vertices", "target", "label", "path_length")}
            arrays["label"] = np.random.default_rng([seed, 23]).permutation(arrays["label"])
            write_arrays(arrays, spec_of(study, study["control"]), control,
                         {"shuffled_labels_of": study["control"], "seed": seed})


def make_jobs(study: dict, out: Path) -> dict[str, tuple[Job, str]]:
    """{key: (job, gate rule)} for every job of the study."""
    jobs = {}
    for seed in study["seeds"]:
        pre = {t: dataset_path(out, seed, f"pretrain-{t}") for t in study["tasks"]}
        for a in study["tasks"]:
            key = f"seed{seed}/pretrain-{a}"
            jobs[key] = (Job(key, base_config(study, seed, a, a, pre[a])), "pretrain")
        key = f"seed{seed}/control"
        jobs[key] = (Job(key, base_config(study, seed, study["control"], study["control"],
                                          dataset_path(out, seed, "control"))), "control")
        for size in study["finetune_sizes"]:
            for lr in study["lrs"]:
                folder = f"seed{seed}/D{size}/{protocol.lr_name(lr)}"
                for b in study["tasks"]:
                    fine = dataset_path(out, seed, f"finetune-{b}-D{size}")
                    arms = [(f"baseline-{b}", b, pre[b], "random", f"seed{seed}/pretrain-{b}")]
                    arms += [(f"{a}-to-{b}", a, pre[a], "pretrained", f"seed{seed}/pretrain-{a}") for a in study["tasks"]]
                    arms.append((f"control-to-{b}", study["control"], dataset_path(out, seed, "control"), "pretrained",
                                 f"seed{seed}/control"))
                    for name, source, pre_data, body, after in arms:
                        raw = fine_config(study, seed, source, b, pre_data, fine, body, size, lr)
                        jobs[f"{folder}/{name}"] = (Job(f"{folder}/{name}", raw, "finetune", after=after), "finetune")
    return jobs


# ---- validation and test samples disjoint from training graphs ------------------------------------

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


def fresh_sample(study: dict, kind: str, seed: int, task: str, seen: set, size: int) -> tuple:
    """(GraphBatch of `size` graphs of `task` from split study-<kind>, none in `seen`, report)."""
    from data_gen import GraphBatch

    spec, key = spec_of(study, task), zlib.crc32(f"transfer:{task}".encode())
    kept, collisions, drawn, round_ = [], 0, 0, 0
    while sum(len(k) for k in kept) < size:
        candidates = split_batch(f"study-{kind}", spec=spec, size=2 * size, draw=seed + 1 + 100_000 * round_, key=key)
        fresh = np.array([h not in seen for h in graph_hashes(candidates)], dtype=bool)
        collisions, drawn, round_ = collisions + int((~fresh).sum()), drawn + len(fresh), round_ + 1
        kept.append(candidates[np.flatnonzero(fresh)])
        if round_ > 50:
            raise SweepError(f"{kind} sample of {task}: fewer than {size} graphs outside the training sets after "
                             f"{drawn} draws ({collisions} collisions); use larger graphs (data.n_max)")
    return GraphBatch.cat(kept)[:size], {"drawn": drawn, "collisions": collisions}


def training_hashes(out: Path, seed: int, study: dict) -> set:
    seen = set()
    for task in set(study["tasks"] + [study["control"]]):
        seen.update(graph_hashes(load_dataset(dataset_path(out, seed, f"pretrain-{task}"))))
    for task in study["tasks"]:
        for size in study["finetune_sizes"]:
            seen.update(graph_hashes(load_dataset(dataset_path(out, seed, f"finetune-{task}-D{size}"))))
    return seen


def score_all(study: dict, out: Path, progress: bool = True) -> tuple[dict, dict, dict, dict]:
    """({(sample, kind, source, target, size, lr, seed): loss}, constant {B: [per seed]}, sample
    report, accuracies on test at the same keys)."""
    from tqdm import tqdm

    losses, accuracy, constant, report = {}, {}, {t: [] for t in study["tasks"]}, {}
    work = [(seed, b) for seed in study["seeds"] for b in study["tasks"]]
    seen_of = {}
    for seed, b in tqdm(work, desc="scoring", unit="task", disable=not progress, dynamic_ncols=True):
        if seed not in seen_of:
            seen_of = {seed: training_hashes(out, seed, study)}
        test, test_info = fresh_sample(study, "test", seed, b, seen_of[seed], study["test_size"])
        validation, val_info = fresh_sample(study, "validation", seed, b, seen_of[seed] | set(graph_hashes(test)),
                                            study["validation_size"])
        report.setdefault(str(seed), {})[b] = {"test": test_info, "validation": val_info}
        constant[b].append(label_variance(test.label.numpy()))
        for sample_name, batch in (("validation", validation), ("test", test)):  # no fine-tuning at all
            for a in study["tasks"]:
                scored = protocol.score(job_dir(out, Job(f"seed{seed}/pretrain-{a}", {})), "pretrain", batch)
                losses[(sample_name, "zero_shot", a, b, None, None, seed)] = scored["loss"]
            scored = protocol.score(job_dir(out, Job(f"seed{seed}/control", {})), "pretrain", batch)
            losses[(sample_name, "control_zero_shot", None, b, None, None, seed)] = scored["loss"]
        for size in study["finetune_sizes"]:
            for lr in study["lrs"]:
                folder = f"seed{seed}/D{size}/{protocol.lr_name(lr)}"
                arms = [("baseline", None, f"baseline-{b}"), ("control", None, f"control-to-{b}")]
                arms += [("transferred", a, f"{a}-to-{b}") for a in study["tasks"]]
                for kind, a, name in arms:
                    run = job_dir(out, Job(f"{folder}/{name}", {}))
                    for sample_name, batch in (("validation", validation), ("test", test)):
                        scored = protocol.score(run, "finetune", batch)
                        losses[(sample_name, kind, a, b, size, lr, seed)] = scored["loss"]
                        accuracy[(sample_name, kind, a, b, size, lr, seed)] = scored["accuracy"]
    return losses, constant, report, accuracy


NO_FINETUNING = 0.0  # a pre-trained arm's choice "lr 0": its pre-trained model as it is (the zero-shot loss)
ZERO_SHOT = {"transferred": "zero_shot", "control": "control_zero_shot"}


def choose(study: dict, losses: dict) -> tuple[dict, dict]:
    """({(kind, source, target, size, seed): test loss at the chosen lr}, {arm name: choice}).

    A pre-trained arm (transferred or control) may also choose no fine-tuning (lr 0, NO_FINETUNING:
    its pre-trained model's loss), the limit of an ever smaller lr: where fine-tuning at the grid's
    smallest lr still beats larger ones, the best update may be none, and an lr grid alone cannot
    bracket it. An arm is marked `lr_at_edge` when its choice is the largest lr, or the smallest for
    an arm without that option (the from-scratch baseline); lr 0 is a bound, not an edge."""
    scores, choices = {}, {}
    for (sample, kind, a, b, size, lr, seed), value in losses.items():
        if kind == "zero_shot" and sample == "test":
            scores[(kind, a, b, None, seed)] = value
    arms = {(kind, a, b, size) for (_, kind, a, b, size, _, _) in losses if kind not in ZERO_SHOT.values()}
    for kind, a, b, size in sorted(arms, key=str):
        candidates = {lr: [losses[("validation", kind, a, b, size, lr, s)] for s in study["seeds"]]
                      for lr in study["lrs"]}
        test = {lr: {s: losses[("test", kind, a, b, size, lr, s)] for s in study["seeds"]} for lr in study["lrs"]}
        if kind in ZERO_SHOT:
            frozen = (ZERO_SHOT[kind], a, b, None, None)
            candidates[NO_FINETUNING] = [losses[("validation", *frozen, s)] for s in study["seeds"]]
            test[NO_FINETUNING] = {s: losses[("test", *frozen, s)] for s in study["seeds"]}
        lr, means = protocol.choose_lr(candidates)
        edge = lr != NO_FINETUNING and protocol.at_edge(lr, sorted(candidates))
        choices[f"{kind}:{a or ''}:{b}:{size}"] = {"lr": lr, "validation": {str(k): v for k, v in means.items()},
                                                   "lr_at_edge": edge}
        for seed in study["seeds"]:
            scores[(kind, a, b, size, seed)] = test[lr][seed]
    return scores, choices


def job_name(kind: str, a: str | None, b: str) -> str:
    return {"baseline": f"baseline-{b}", "control": f"control-to-{b}"}.get(kind, f"{a}-to-{b}")


def converged_cells(study: dict, verdicts: dict, choices: dict) -> dict:
    """{(A, B, D_B): every job behind the cell converged in every seed, at the chosen lrs}."""
    out = {}
    for size in study["finetune_sizes"]:
        for a in study["tasks"]:
            for b in study["tasks"]:
                keys = []
                for seed in study["seeds"]:
                    keys += [f"seed{seed}/pretrain-{a}", f"seed{seed}/control"]
                    for kind, source in (("transferred", a), ("baseline", None), ("control", None)):
                        lr = choices[f"{kind}:{source or ''}:{b}:{size}"]["lr"]
                        if lr != NO_FINETUNING:  # no fine-tuning: its pre-training, in keys already
                            keys.append(f"seed{seed}/D{size}/{protocol.lr_name(lr)}/{job_name(kind, source, b)}")
                out[(a, b, size)] = all(verdicts[k]["converged"] for k in keys)
    return out


def analyse(study: dict, scores: dict, constant: dict, report: dict, verdicts: dict, choices: dict) -> dict:
    tasks, seeds, sizes = study["tasks"], study["seeds"], study["finetune_sizes"]
    cells = ts.transfer_cells(scores, tasks, sizes, seeds, constant, converged_cells(study, verdicts, choices))
    counts = ts.correct(cells, study["fdr"])
    matrices = {str(d): ts.relative_matrix(cells, tasks, d) for d in sizes}
    sim, asym = ts.similarity(matrices[str(sizes[0])])
    collisions = {t: sum(report[str(s)][t]["test"]["collisions"] for s in seeds) for t in tasks}
    public = {k: study[k] for k in KEYS if k in study}
    gate = {"criteria": {k: {**v.to_dict(), "text": v.describe()} for k, v in study["_gates"].items()},
            **gate_summary(verdicts), "cells_marked": [[c["source"], c["target"], c["size"]] for c in cells
                                                       if not c["converged"]], "verdicts": verdicts}
    return {"schema": 2, "study": public, "tasks": tasks, "seeds": seeds, "sizes": sizes,
            "definitions": {"loss": "mse", "accuracy": "rounded prediction == label",
                            "transfer": "baseline loss - transferred loss",
                            "relative": "transfer / constant-predictor loss of B (label variance of B's test sample)",
                            "specific": "(shuffled-label control loss - transferred loss) / constant-predictor loss",
                            "similarity": "(relative(A->B) + relative(B->A)) / 2 at the smallest D_B",
                            "asymmetry": "relative(A->B) - relative(B->A) at the smallest D_B",
                            "test_hash": "blake2b of the vertex count and the sorted set of edges",
                            "statistics": ts.__doc__.strip()},
            "constant": {t: ts._block(constant[t]) for t in tasks},
            "test_sets": {"per_seed": report, "collisions": collisions, "collisions_total": sum(collisions.values())},
            "lr_choices": choices, "cells": cells, "tests": counts, "gate": gate,
            "matrix": {"rows": "source", "columns": "target",
                       "relative": {d: ts.nan_none(m) for d, m in matrices.items()}},
            "similarity": ts.nan_none(sim), "asymmetry": ts.nan_none(asym), "clustering": ts.cluster(sim, tasks),
            "findings": ts.findings(cells, counts, len(seeds), study["fdr"]), "answers": study["answers"]}


def _main(argv) -> int:
    parser = study_parser("python -m experiments.transfer", __doc__.split("\n\n")[0], DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    options = executor_options(args)
    study = load_study(args.config)
    out = args.out or Path("runs") / study["name"]
    start = time.time()
    with hold(out, "python -m experiments.transfer"):  # writable, and no other writer, before any work
        build_datasets(study, out)
        jobs = make_jobs(study, out)
        require_complete(run_sweep([job for job, _ in jobs.values()], out, progress=not args.quiet,
                                   desc="transfer jobs", **options))
        losses, constant, report, _ = score_all(study, out, progress=not args.quiet)
        scores, choices = choose(study, losses)
        verdicts = protocol.gate(out, {key: (job.stage, rule, job.config) for key, (job, rule) in jobs.items()},
                                 study["_gates"])
        doc = analyse(study, scores, constant, report, verdicts, choices)
        doc["seconds"] = time.time() - start
        path = save_study(doc, out, "transfer.json", write_figures, figures=not args.no_figures)
    print(f"{path}: {len(doc['cells'])} cells x {len(study['seeds'])} seeds in {doc['seconds']:.0f}s; "
          f"{doc['gate']['converged']} of {doc['gate']['jobs']} jobs converged; {doc['findings']}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    return run_study_cli("python -m experiments.transfer", _main, argv, SpecError)


if __name__ == "__main__":
    sys.exit(main())
