"""`python -m graphpath.interpret RUN_DIR`: what the learned models' residual streams hold, with controls and intervals.

Every seed of a group, each checkpoint on the distribution it was trained on (a fine-tuned one on
fine-tuning data; `--stage` picks one stage, default the final one, `--data SET` names a study
set instead; graphpath.analysis.targets). Each seed draws its own sample (`--size` graphs, split
`sample-inspect`, the seed as the split's key), so intervals over seeds cover the graph sample.
Per stream point (`hook_embed`, each `blocks.{l}.hook_resid_post`), linear probes
(graphpath.analysis.probe_fits: ridge, penalty by inner leave-one-out CV, 4 outer folds):

    target   at the target token: "the target is within k hops of vertex 1", k = 1..n-1; and
             the distance itself (R^2)
    edges    at every edge token (the learned model's vertex positions: a vertex lives on the
             edges that name it): "the edge's first / second endpoint is within k hops of 1"

each scored by out-of-fold AUROC and balanced accuracy, beside a control task of the same label
rates keyed on the token's type (Hewitt and Liang 2019): selectivity = AUROC - control AUROC.
Also attention along graph edges per head and activation patching per layer and per head
(graphpath.analysis.patching). Per group every number is pooled over seeds: mean and 95%
t-interval. For the fine-tuned models (the study's off-path failure) graphpath.analysis.offpath
compares on-path and off-path targets and states a verdict that rests on corrected tests.
Reference: the hand-built model's own stream at vertex tokens (measured, not assumed).

Output: RUN_DIR/interpret.json (schema in docs/contracts.md) and RUN_DIR/figures/interpret_*.html.
"""
from __future__ import annotations

import argparse
import re
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch

from data_gen import GraphBatch, study_presets
from data_gen.splits import SPLITS, split_batch
from graphpath_common import provenance
from graphpath_common.cli import ArgumentParser, run_cli
from graphpath_common.locks import hold
from graphpath_common.rundir import RunDir
from handcrafted import build_bfs_transformer

from graphpath.analysis import offpath as O
from graphpath.analysis import probe_fits as P
from graphpath.analysis.output import json_ready, write_json
from graphpath.analysis.intervals import over_seeds
from graphpath.analysis.interpret_figures import figures
from graphpath.analysis.patching import patching, stream_points
from graphpath.analysis.targets import Subject, add_arguments, subjects
from graphpath.core.checkpoint import CheckpointError

PROG = "python -m graphpath.interpret"
SCHEMA_VERSION = 2
PATTERN = re.compile(r"^blocks\.(\d+)\.attn\.hook_pattern$")
DEFAULT_SIZE = 1024  # graphs per seed for the page (half the split), sized for the main job on 2 cores
PATCH_SIZE = 256  # graphs patched per seed (the first of the sample): 26 patched runs each


class InterpretError(ValueError):
    """Bad input (no checkpoint, unknown layer); one line, exit 2."""


def _probe_pair(x: torch.Tensor, y: torch.Tensor, types: torch.Tensor, seed: int) -> dict:
    task = P.binary_probe(x, y, seed)
    control = P.binary_probe(x, P.control_labels(types, y, seed + 1), seed)
    return {"auroc": task["auroc"], "balanced_accuracy": task["balanced_accuracy"], "control": control["auroc"],
            "selectivity": task["auroc"] - control["auroc"]}


def _mean(values: np.ndarray) -> float | None:
    return float(np.nanmean(values)) if np.isfinite(values).any() else None


@torch.no_grad()
def measure(subject: Subject, size: int, seed: int, layers: list[str] | None) -> dict:
    """One model's probes, attention and patching (per-layer lists follow `points`)."""
    model = subject.model.eval()
    points = stream_points(model)
    if not points or not any(PATTERN.match(n) for n in model.hook_names()):
        raise InterpretError(f"the model {subject.key} has no residual-stream or attention-pattern hook points to probe")
    if layers:
        unknown = sorted(set(layers) - set(points))
        if unknown:
            raise InterpretError(f"unknown layer(s) {', '.join(unknown)} (known: {', '.join(points)})")
        points = [p for p in points if p in layers]
    batch = split_batch("sample-inspect", spec=subject.spec, size=size, seed=seed, key=subject.seed or 0).trim()
    hops = batch.max_vertices
    patterns = [n for n in model.hook_names() if PATTERN.match(n)]
    _, cache = model.run_with_cache(batch, names=points + patterns)
    target_y, target_types = P.target_reach_labels(batch, hops), batch.target.long()
    edge_y, edge_types = P.edge_reach_labels(batch, hops)
    mask = batch.edge_mask
    out = {"points": points, "target": [], "edges": [], "distance_r2": []}
    for point in points:
        x = cache[point]  # (B, T, D)
        out["target"].append(_probe_pair(x[:, 0], target_y, target_types, seed))
        out["edges"].append(_probe_pair(x[:, 1:][mask], edge_y, edge_types, seed))
        out["distance_r2"].append(P.scalar_probe(x[:, 0], batch.label, seed)["r2"])
    out["attention"] = {}
    for name in patterns:
        stats = P.edge_attention(cache[name], batch)
        out["attention"][name] = [a / u if u > 0 else None for a, u in zip(stats["along_edges"].tolist(),
                                                                           stats["uniform"].tolist())]
    out["patching"] = patching(model, batch[:PATCH_SIZE].trim(), seed)
    return out


def pool(rows: list[dict]) -> dict:
    """Per group: every per-seed number as {mean, ci95, n} over seeds."""
    points = rows[0]["points"]
    pooled = {"points": points, "seeds": len(rows)}
    for where in ("target", "edges"):
        pooled[where] = {}
        for metric in ("auroc", "balanced_accuracy", "control", "selectivity"):
            unit = None if metric == "selectivity" else (0.0, 1.0)  # AUROC and balanced accuracy live in [0, 1]
            pooled[where][metric] = [over_seeds([_mean(r[where][i][metric]) for r in rows], bounds=unit)
                                     for i in range(len(points))]
        per_k = len(rows[0][where][0]["auroc"])
        pooled[where]["selectivity_by_k"] = [[over_seeds([r[where][i]["selectivity"][k] for r in rows])["mean"]
                                              for k in range(per_k)] for i in range(len(points))]
    pooled["distance_r2"] = [over_seeds([r["distance_r2"][i] for r in rows]) for i in range(len(points))]
    pooled["attention"] = {name: [over_seeds([r["attention"][name][h] for r in rows]) for h in range(len(values))]
                           for name, values in rows[0]["attention"].items()}
    patch = [r["patching"] for r in rows]
    pooled["patching"] = {
        "layers": {p: {kind: over_seeds([q["layers"][p][kind] for q in patch]) for kind in ("target", "edges")}
                   for p in patch[0]["layers"]},
        "heads": {h: over_seeds([q["heads"][h] for q in patch]) for h in patch[0]["heads"]}}
    return pooled


@torch.no_grad()
def handcrafted_reference(batch: GraphBatch, hops: int) -> dict:
    """The hand-built model's own stream: "v within k hops" from vertex v's token after k hop blocks
    (AUROC, pooled over vertices) and the distance from the answer token at the end (R^2)."""
    n = batch.max_vertices
    model = build_bfs_transformer(n)
    labels = P.hop_labels(batch, hops)  # (B, n, K)
    auroc = []
    for k in range(1, hops):
        x = model.stream(batch, upto=k)[:, :n]  # (B, n, D) after k hop blocks
        auroc.append(_mean(P.binary_probe(x.reshape(-1, x.shape[-1]), labels[..., k].reshape(-1, 1))["auroc"]))
    final = model.stream(batch)[:, n]
    return {"reach_auroc": auroc, "distance_r2": P.scalar_probe(final, batch.label)["r2"]}


def interpret_run(run: str, stage: str | None, data: str | None, size: int, seed: int, layers) -> dict:
    try:
        found = subjects(run, PROG, (stage,) if stage else None, data)
        for subject in found:
            subject.trained.require_study(PROG)
    except CheckpointError as error:
        raise InterpretError(str(error)) from None
    if stage is None:  # the final checkpoint of each seed: fine-tuned when the run fine-tuned
        last = "finetune" if any(s.stage == "finetune" for s in found) else "pretrain"
        found = [s for s in found if s.stage == last]
    groups: dict[str, list[Subject]] = {}
    for subject in found:
        groups.setdefault(subject.group, []).append(subject)
    doc = {"schema": SCHEMA_VERSION, "size": size, "seed": seed, "folds": P.FOLDS, "alphas": list(P.ALPHAS),
           "min_share": P.MIN_SHARE, "patch_size": PATCH_SIZE, "groups": {}}
    for name, members in groups.items():
        rows = [measure(s, size, seed, layers) for s in members]
        pooled = pool(rows)
        pooled["models"] = [{"key": s.key, "seed": s.seed, "data": s.data, "target": s.description} for s in members]
        if name == "finetune" and data is None:
            presets = study_presets(**members[0].trained.data)
            sample = O.samples(presets, size, seed)
            counts = {k: 0 if v is None else len(v) for k, v in sample.items()}
            on, off = sample["on"], sample["reachable"]
            shared = on is not None and off is not None and set(O.cells(on)) & set(O.cells(off))
            if shared:
                hops = max(on.max_vertices, off.max_vertices)
                per_seed = [O.measure_seed(s.model, pooled["points"][-1], sample, hops, seed) for s in members]
                pooled["offpath"] = {"counts": counts, "on_count": counts["on"], "off_count": counts["reachable"],
                                     "layer": pooled["points"][-1], **O.verdict(per_seed, O.cells(on), O.cells(off))}
            else:
                pooled["offpath"] = {"verdict": "too-few", "counts": counts, "off_count": counts["reachable"]}
        doc["groups"][name] = pooled
    first = groups[next(iter(groups))][0]
    sample = split_batch("sample-inspect", spec=first.spec, size=min(size, 512), seed=seed).trim()
    doc["handcrafted"] = handcrafted_reference(sample, sample.max_vertices)
    return doc


def _main(argv) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, "probe", handcrafted=False)
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help=f"graphs per seed (default {DEFAULT_SIZE}; the "
                        f"split's full size is {SPLITS['sample-inspect'].size})")
    parser.add_argument("--seed", type=int, default=SPLITS["sample-inspect"].seed,
                        help="seed of the graphs (default: data_gen.splits' sample-inspect row)")
    parser.add_argument("--layers", nargs="+", help="stream points to probe (default all)")
    parser.add_argument("--out", help="default RUN_DIR/interpret.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-figures", dest="figures", action="store_false")
    args = parser.parse_args(argv)
    if args.size < 64:
        raise InterpretError(f"--size must be >= 64 (4 folds of 16), got {args.size}")
    if args.seed < 0:
        raise InterpretError(f"--seed must be >= 0, got {args.seed}")
    torch.set_num_threads(max(1, args.threads))
    invocation = provenance.entry(provenance.command_line(PROG, argv), "cpu", torch.get_num_threads())
    if not Path(args.run).is_dir():
        raise InterpretError(f"no run directory {args.run}")
    home = RunDir(args.run)
    out = Path(args.out) if args.out else home.interpret
    folders = [out.parent] + ([home.path] if args.figures and home.path.resolve() != out.parent.resolve() else [])
    with ExitStack() as held:  # writable, and no other writer, before the probes run
        for folder in folders:
            held.enter_context(hold(folder, PROG))
        doc = json_ready(interpret_run(args.run, args.stage, args.data, args.size, args.seed, args.layers))
        doc["provenance"] = provenance.finish(invocation, "finished")
        if args.figures:
            doc["figures"] = figures(doc, home.figures)
        write_json(out, doc)
    for name, g in doc["groups"].items():
        sel = g["target"]["selectivity"][-1]
        print(f"{name} ({g['seeds']} seed(s)), last layer, target token: reach AUROC {g['target']['auroc'][-1]['mean']}, "
              f"selectivity {sel['mean']} {sel['ci95'] or ''}")
        if "offpath" in g:
            print(f"{name}: off-path verdict {g['offpath']['verdict']}")
    print(f"wrote {out}")
    return 0


def main(argv=None) -> int:
    return run_cli(PROG, _main, argv, InterpretError)


if __name__ == "__main__":
    sys.exit(main())
