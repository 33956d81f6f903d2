"""`python -m graphpath.interpret RUN_DIR`: what the learned models' residual streams hold, with controls and intervals.

Every seed of a group, each checkpoint on the distribution it was trained on (a pre-training one on
pre-training data, a fine-tuned one on fine-tuning data; both stages by default, `--stage` picks
one, `--data SET` names a study set instead; graphpath.analysis.targets). Each seed draws its own sample (`--size` graphs, split
`sample-inspect`, the seed as the split's key), so intervals over seeds cover the graph sample.
Per stream point (`hook_embed`, each `blocks.{l}.hook_resid_post`), linear probes
(graphpath.analysis.probe_fits: ridge, penalty by inner leave-one-out CV, 4 outer folds):

    target   at the target token: "the target is within k hops of vertex 1", k = 1..n-1; and
             the distance itself (R^2)
    edges    at every edge token (the learned model's vertex positions: a vertex lives on the
             edges that name it): "the edge's first / second endpoint is within k hops of 1"

each scored by out-of-fold AUROC and balanced accuracy, beside a label-permutation baseline
(labels permuted among tokens of the same type, `probe_fits.control_labels`; in pre-training the
target is always t = 2, one type, so a full permutation; not Hewitt and Liang 2019's control task,
which assigns each type a random label): selectivity = AUROC - control AUROC; and
beside a baseline probe on graph statistics alone (the target's degree, the edge count, n):
beyond_stats = AUROC - that baseline's AUROC. Findings per group (`probe_findings`, BH together):
the reach probe at the read-out's input beats the baseline by STATS_MARGIN and the label-permutation baseline by
CONTROL_MARGIN. AUROC intervals are t-intervals of logit(AUROC) over seeds mapped back. `hops` says
which k the data can probe (in small fine-tuning graphs k >= 3 is near-trivial and is not).
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
from graphpath.analysis.intervals import over_seeds, over_seeds_logit
from graphpath.evaluation import statistics as S
from graphpath.analysis.interpret_figures import figures
from graphpath.analysis.patching import patching, stream_points
from graphpath.analysis.targets import Subject, add_arguments, subjects
from graphpath.core.checkpoint import CheckpointError

PROG = "python -m graphpath.interpret"
SCHEMA_VERSION = 3
PATTERN = re.compile(r"^blocks\.(\d+)\.attn\.hook_pattern$")
DEFAULT_SIZE = 1024  # graphs per seed for the page (half the split), sized for the main job on 2 cores
PATCH_SIZE = 256  # graphs patched per seed (the first of the sample): 26 patched runs each
# The probe findings, one-sided t over seeds at the last stream point (the read-out's input),
# Benjamini-Hochberg corrected together per group. An out-of-fold AUROC on ~1000 graphs has a
# standard error of ~0.01-0.015 (Hanley and McNeil 1982, Radiology 143); a gain under 0.02, about
# two of them, is not one a reader should build on.
STATS_MARGIN = 0.02  # reach AUROC - graph-statistics AUROC: the stream knows more than deg(t), edges, n
CONTROL_MARGIN = 0.02  # selectivity (AUROC - the label-permutation baseline's AUROC)


class InterpretError(ValueError):
    """Bad input (no checkpoint, unknown layer); one line, exit 2."""


def _probe_pair(x: torch.Tensor, y: torch.Tensor, types: torch.Tensor, seed: int) -> dict:
    task = P.binary_probe(x, y, seed)
    control = P.binary_probe(x, P.control_labels(types, y, seed + 1), seed)
    return {"auroc": task["auroc"], "balanced_accuracy": task["balanced_accuracy"], "control": control["auroc"],
            "selectivity": task["auroc"] - control["auroc"]}


def _mean(values: np.ndarray) -> float | None:
    return float(np.nanmean(values)) if np.isfinite(values).any() else None


def graph_statistics(batch: GraphBatch) -> torch.Tensor:
    """(B, 3) what a probe could read without the graph's structure: the target's degree, the number
    of edges and the vertex count (the baseline the reach probe must beat)."""
    adj = P.adjacency(batch)  # (B, n, n)
    t = (batch.target.long() - 1).clamp(max=batch.max_vertices - 1)
    degree = adj.sum(-1)[torch.arange(len(batch)), t].float()
    degree = torch.where(batch.target <= batch.num_vertices, degree, torch.zeros_like(degree))
    return torch.stack([degree, batch.edge_mask.sum(1).float(), batch.num_vertices.float()], dim=1)


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
    stats_probe = P.binary_probe(graph_statistics(batch), target_y, seed)
    out = {"points": points, "target": [], "edges": [], "distance_r2": [], "stats_auroc": stats_probe["auroc"],
           "hop_share": stats_probe["share"], "max_n": int(batch.num_vertices.max())}
    for point in points:
        x = cache[point]  # (B, T, D)
        pair = _probe_pair(x[:, 0], target_y, target_types, seed)
        pair["beyond_stats"] = pair["auroc"] - stats_probe["auroc"]
        out["target"].append(pair)
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
        metrics = ("auroc", "balanced_accuracy", "control", "selectivity") + (("beyond_stats",) if where == "target"
                                                                             else ())
        for metric in metrics:  # AUROC and balanced accuracy live in (0, 1): intervals on the logit scale
            summary = over_seeds if metric in ("selectivity", "beyond_stats") else over_seeds_logit
            pooled[where][metric] = [summary([_mean(r[where][i][metric]) for r in rows]) for i in range(len(points))]
        per_k = len(rows[0][where][0]["auroc"])
        pooled[where]["selectivity_by_k"] = [[over_seeds([r[where][i]["selectivity"][k] for r in rows])["mean"]
                                              for k in range(per_k)] for i in range(len(points))]
    pooled["distance_r2"] = [over_seeds([r["distance_r2"][i] for r in rows]) for i in range(len(points))]
    pooled["stats_auroc"] = over_seeds_logit([_mean(r["stats_auroc"]) for r in rows])
    pooled["hops"] = hops_probed(rows)
    pooled["findings"] = probe_findings(rows)
    pooled["attention"] = {name: [over_seeds([r["attention"][name][h] for r in rows]) for h in range(len(values))]
                           for name, values in rows[0]["attention"].items()}
    patch = [r["patching"] for r in rows]
    pooled["patching"] = {
        "layers": {p: {kind: over_seeds([q["layers"][p][kind] for q in patch]) for kind in ("target", "edges")}
                   for p in patch[0]["layers"]},
        "heads": {h: over_seeds([q["heads"][h] for q in patch]) for h in patch[0]["heads"]}}
    return pooled


def hops_probed(rows: list[dict]) -> dict:
    """Which "within k hops" labels the data could probe: per k its positive share (mean over seeds)
    and whether every seed probed it (rarer class >= P.MIN_SHARE); `note` says plainly when k >= 3
    cannot be probed in this data (small graphs: everything reachable is within 2 hops)."""
    shares = np.array([r["hop_share"] for r in rows])  # (S, K-1)
    probed = [bool(np.isfinite([r["target"][-1]["auroc"][k] for r in rows]).all()) for k in range(shares.shape[1])]
    per_k = [{"k": k + 1, "share": float(shares[:, k].mean()), "probed": probed[k]} for k in range(shares.shape[1])]
    missing = [p["k"] for p in per_k if p["k"] >= 3 and not p["probed"]]
    note = None
    if missing:
        note = (f"k = {', '.join(map(str, missing))} hops cannot be probed in this data (graphs of at most "
                f"{max(r['max_n'] for r in rows)} vertices): 'within k hops' is near-trivial there (its rarer class "
                f"is under {P.MIN_SHARE:.0%} of the graphs), so nothing here says whether the stream holds k >= 3")
    return {"per_k": per_k, "note": note}


def probe_findings(rows: list[dict]) -> dict:
    """At the last stream point: `beats_stats` (reach AUROC - graph-statistics AUROC > STATS_MARGIN)
    and `beats_control` (selectivity > CONTROL_MARGIN), one-sided t over seeds, BH together."""
    beyond = [_mean(r["target"][-1]["beyond_stats"]) for r in rows]
    selectivity = [_mean(r["target"][-1]["selectivity"]) for r in rows]
    raw = {"beats_stats": O.t_test(beyond, STATS_MARGIN, "greater"),
           "beats_control": O.t_test(selectivity, CONTROL_MARGIN, "greater")}
    adjusted = dict(zip(raw, S.adjust(list(raw.values()))))
    return {"p_values": raw, "p_adjusted": adjusted,
            "holds": {k: p is not None and p < S.ALPHA for k, p in adjusted.items()},
            "estimates": {"beats_stats": over_seeds(beyond), "beats_control": over_seeds(selectivity)},
            "thresholds": {"stats_margin": STATS_MARGIN, "control_margin": CONTROL_MARGIN, "alpha": S.ALPHA}}


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
                per_seed = [O.measure_seed(s.model, pooled["points"][-1], sample, hops, seed,
                                            O.matched_weights(O.cells(on), O.cells(off))) for s in members]
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
