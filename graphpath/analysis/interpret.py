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
             edges that name it): "the edge's first / second endpoint is within k hops of 1";
             folded by graph (a graph's edge tokens share its labels and context: none of them on
             both sides of a fold, the penalty by leave-one-graph-out error)

each scored by out-of-fold AUROC and balanced accuracy (the ridge output thresholded at the training
fold's positive share), against three baselines
(graphpath.analysis.probe_controls):

    control      Hewitt and Liang 2019's control task: each type (target: the target's id; edge:
                 its (a, b) pair) gets a random label drawn once from the real label's distribution,
                 CONTROL_DRAWS draws averaged; selectivity = AUROC - control AUROC (and the same in
                 balanced accuracy). In pre-training the target is always t = 2, one type: there is
                 no control task there and its selectivity is null.
    permuted     a label-permutation baseline (labels permuted among tokens of one type; a full
                 permutation where there is one type): beyond_permuted = AUROC - its AUROC.
    statistics   a probe on graph statistics alone (the target's degree one-hot, whether it is
                 isolated, the size of its component, the edge count, n, the source's degree
                 one-hot and the size of its component), per hop count k:
                 beyond_stats = AUROC - its AUROC. Per k the first stream point whose beyond_stats
                 interval lies wholly above 0 is where "within k hops" emerges (`emergence`;
                 descriptive: uncorrected for the points and k looked at).

Findings per group at the last stream point (the read-out's input), one-sided t over seeds,
Benjamini-Hochberg corrected together (`probe_findings`; the page reads `page_findings`, BH over
every group's findings and the confirmatory capacity tests together): beats_stats (> STATS_MARGIN),
beats_permuted (> PERMUTED_MARGIN), selective_target and selective_edges (selectivity >
SELECTIVITY_MARGIN). AUROC intervals are t-intervals of logit(AUROC) over seeds mapped back;
differences get plain t-intervals. `hops` says which k the data can probe (in small fine-tuning
graphs k >= 3 is near-trivial and is not).
Also attention along graph edges per head and activation patching per layer and per head
(graphpath.analysis.patching). Per group every number is pooled over seeds: mean and 95%
t-interval. For the fine-tuned models (the study's off-path failure) graphpath.analysis.offpath
compares on-path and off-path targets and states a verdict that rests on corrected tests.
At the last stream point the same probes and control task run again at rising capacity (each fold's
probe reads only the top r principal directions of its training rows, r = 1, 2, 4, 8, 16 and the
full width; graphpath.analysis.probe_capacity says why this axis): the whole curve of task AUROC,
control AUROC and selectivity per r, and the test `selective_*` at some rank (Bonferroni over the
ranks, BH over the two positions). That axis was designed after the full-width selectivity findings
failed on this sample: on it the test is EXPLORATORY (`capacity.status`, `why`); the same test, rule
unchanged, on a fresh sample (draw CONFIRM_DRAW of the split, `capacity.confirm`; `--no-confirm`
skips it) is the finding.
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
from graphpath.analysis import probe_capacity as K
from graphpath.analysis import probe_controls as C
from graphpath.analysis import probe_fits as P
from graphpath.analysis.output import json_ready, write_json
from graphpath.analysis.intervals import over_seeds, over_seeds_logit
from graphpath.evaluation import statistics as S
from graphpath.analysis.interpret_figures import figures
from graphpath.analysis.patching import patching, stream_points
from graphpath.analysis.targets import Subject, add_arguments, subjects
from graphpath.core.checkpoint import CheckpointError

PROG = "python -m graphpath.interpret"
SCHEMA_VERSION = 6  # 5: `capacity` (the probe-capacity curve and its finding); 6: edge folds by graph, balanced
# accuracy at the training share, the source's degree and component in the statistics baseline, `capacity.status`
# (exploratory) and `capacity.confirm` (the capacity test on a fresh sample), the page-wide family `findings`
PATTERN = re.compile(r"^blocks\.(\d+)\.attn\.hook_pattern$")
DEFAULT_SIZE = 1024  # graphs per seed for the page (half the split), sized for the main job on 2 cores
PATCH_SIZE = 256  # graphs patched per seed (the first of the sample): 26 patched runs each
# The probe findings, one-sided t over seeds at the last stream point (the read-out's input),
# Benjamini-Hochberg corrected together per group. An out-of-fold AUROC on ~1000 graphs has a
# standard error of ~0.01-0.015 (Hanley and McNeil 1982, Radiology 143).
# STATS_MARGIN and PERMUTED_MARGIN were written first (schema 3) at 0.02, about two standard errors:
# weak. On runs/small (5 seeds) the observed gains were 0.16-0.50, so they could not realistically
# fail; they are kept as written, not re-tuned after seeing the data, and the page says they are weak.
STATS_MARGIN = 0.02  # reach AUROC - graph-statistics AUROC: the stream knows more than the target's counts
PERMUTED_MARGIN = 0.02  # reach AUROC - the label-permutation baseline's AUROC
# Written before any run of the control task (2026-12-01). Hewitt and Liang call a probe selective when its
# control-task accuracy is well below its task accuracy; their selective linear probes on ELMo part-of-speech
# tagging sit tens of accuracy points apart. 0.10 AUROC is a tenth of the AUROC scale, a fifth of the way from
# chance (0.5) to perfect, and 7-10 standard errors of one AUROC: a reader would accept a probe that beats
# memorising token identities by that much as reading the graph, and would not call a smaller gain selective.
SELECTIVITY_MARGIN = 0.10  # task AUROC - control-task AUROC (Hewitt and Liang 2019, section 2)
# Measured after it was fixed (2026-12-01, `python -m graphpath.interpret runs/small --threads 1`, 5 seeds, 2 cores
# shared, load ~6): selectivity at the last block -0.002 [-0.008, 0.003] at the fine-tuned target token (4 types),
# 0.018 [0.003, 0.034] and -0.010 [-0.016, -0.003] at the pre-trained and fine-tuned edge tokens (28 and 10 types):
# both findings fail. With no more types than the stream's width + 1 a linear probe fits any labelling of them
# (Cover 1965), so the control is solved (AUROC >= 0.95) whatever the stream holds: a ceiling, said on the page.
# The capacity finding (probe_capacity.capacity_findings: selectivity > SELECTIVITY_MARGIN at some rank r of the
# probe's input, Bonferroni over the ranks) uses this same margin, chosen (2026-12-01) before its first run: what
# makes 0.10 AUROC a meaningful gain over memorising types does not depend on the probe's capacity.
# Measured after it was fixed (2026-12-01, `python -m graphpath.interpret <copy of the main job's runs/small> --threads 1`,
# 5 seeds, 2 cores shared, load ~4; 97 s against 82 s without the curve): selectivity at r = 1 vs the full width 64 is
# 0.254 [0.195, 0.313] vs 0.018 at the pre-trained edge tokens (holds: Bonferroni p 0.0036), 0.282 [0.132, 0.431] vs
# -0.002 at the fine-tuned target token (not shown: p 0.084 before BH, 0.17 after) and -0.042 vs -0.010 at the
# fine-tuned edge tokens (no rank near the margin: there the types fill the dominant directions too).
# Schema 6 (2026-12-01, `python -m graphpath.interpret <copy of runs/small> --threads 1`, 5 seeds, 2 cores shared
# with one other job, load ~2): 98 s with the confirmatory sample, 79 s with --no-confirm, 64 s for schema 5 on the
# same copy and load. Folding the edge probes by graph moved little: at the last block edge AUROC 0.969 -> 0.967
# (pre-trained), 0.988 -> 0.987 (fine-tuned); selectivity 0.018 [0.003, 0.034] -> 0.018 [0.001, 0.034] and -0.010
# [-0.016, -0.003] -> -0.011 [-0.016, -0.005]. Exploratory capacity test (folded by graph): pre-trained edges r = 1
# 0.253 [0.199, 0.306], Bonferroni-then-BH p 0.0038; on the fresh sample 0.254 [0.213, 0.294], p 0.0014 (0.0034 in
# the page-wide family): holds. Fine-tuned target r = 1 0.282 -> 0.244 [0.035, 0.453] fresh, p 0.38: not shown.
# The source's features raise the statistics baseline from 0.866 to 0.959 (pre-trained) and 0.881 to 0.955
# (fine-tuned); beats_stats still holds (gains 0.041 [0.035, 0.046] and 0.043 [0.032, 0.054] over 0.02).

EXPLORATORY = ("the capacity axis (selectivity against the rank of the probe's input) was designed after the "
               "full-width selectivity findings failed, on these models and this sample of graphs: a finding on "
               "them is exploratory; `confirm` re-tests it, rule unchanged, on a fresh sample")
# The confirmatory sample: draw 1 of the sample-inspect row (draw 0 is the exploratory sample), the same size and key,
# so its graphs are drawn independently of the ones the capacity rule was designed on. The rule (margin, ranks,
# Bonferroni over ranks) was fixed before this sample was first drawn (2026-12-01).
CONFIRM_DRAW = 1


class InterpretError(ValueError):
    """Bad input (no checkpoint, unknown layer); one line, exit 2."""


def _mean(values: np.ndarray) -> float | None:
    return float(np.nanmean(values)) if np.isfinite(values).any() else None


def _labels(batch: GraphBatch, hops: int, seed: int, rng: np.random.Generator) -> dict:
    """Per position (target, edges): (real labels, their permutation baseline, control-task draws)."""
    target_y, target_types = P.target_reach_labels(batch, hops), batch.target.long()
    edge_y, edge_types = P.edge_reach_labels(batch, hops)
    return {"target": (target_y, C.permuted_labels(target_types, target_y, seed + 1),
                       C.control_task_labels(target_types, target_y, rng)),
            "edges": (edge_y, C.permuted_labels(edge_types, edge_y, seed + 1),
                      C.control_task_labels(edge_types, edge_y, rng)),
            "types": {"target": int(target_types.unique().numel()), "edges": int(edge_types.unique().numel())}}


def edge_graphs(batch: GraphBatch) -> np.ndarray:
    """(E,) the graph (row of the batch) of every real edge token, in `x[:, 1:][batch.edge_mask]` order:
    the groups the edge probes' folds keep whole."""
    mask = batch.edge_mask
    return torch.arange(len(batch))[:, None].expand_as(mask)[mask].numpy()


def graph_keys(batch: GraphBatch) -> list[tuple]:
    """One hashable key per graph: (n, target, its sorted edge list): equal keys, the same graph."""
    return [(int(n), int(t), tuple(sorted(map(tuple, e[e[:, 0] > 0].tolist()))))
            for n, t, e in zip(batch.num_vertices, batch.target, batch.edges)]


@torch.no_grad()
def measure(subject: Subject, size: int, seed: int, layers: list[str] | None, confirm: bool = True) -> dict:
    """One model's probes, attention and patching (per-layer lists follow `points`; per-k arrays
    follow k = 1..n-1, and at edge tokens the first endpoint's k then the second's). `confirm`: the
    capacity curve again on a fresh sample (draw CONFIRM_DRAW of the split: graphs drawn independently
    of the exploratory sample's), its own control draws."""
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
    rng = np.random.default_rng([seed, subject.seed or 0])  # each model seed draws its own control task
    labels = _labels(batch, hops, seed, rng)
    target_y = labels["target"][0]
    mask, graphs = batch.edge_mask, edge_graphs(batch)
    stats_probe = P.binary_probe(C.graph_statistics(batch), target_y, seed)
    out = {"points": points, "target": [], "edges": [], "distance_r2": [], "stats_auroc": stats_probe["auroc"],
           "hop_share": stats_probe["share"], "max_n": int(batch.num_vertices.max()), "width": int(cache[points[0]].shape[-1]),
           "types": labels["types"]}
    for point in points:
        x = cache[point]  # (B, T, D)
        pair = C.probe_with_controls(x[:, 0], *labels["target"], seed)
        pair["beyond_stats"] = pair["auroc"] - stats_probe["auroc"]
        out["target"].append(pair)
        out["edges"].append(C.probe_with_controls(x[:, 1:][mask], *labels["edges"], seed, groups=graphs))
        out["distance_r2"].append(P.scalar_probe(x[:, 0], batch.label, seed)["r2"])
    last, widths = cache[points[-1]], K.ranks(out["width"])
    out["capacity"] = {"ranks": widths, "point": points[-1],
                       "target": K.capacity_curve(last[:, 0], *labels["target"], seed, widths),
                       "edges": K.capacity_curve(last[:, 1:][mask], *labels["edges"], seed, widths, graphs)}
    if confirm:
        fresh = split_batch("sample-inspect", spec=subject.spec, size=size, seed=seed, key=subject.seed or 0,
                            draw=CONFIRM_DRAW).trim()
        _, fresh_cache = model.run_with_cache(fresh, names=[points[-1]])
        again = _labels(fresh, fresh.max_vertices, seed, np.random.default_rng([seed, subject.seed or 0, CONFIRM_DRAW]))
        x = fresh_cache[points[-1]]
        seen = set(graph_keys(batch))
        out["confirm"] = {"ranks": widths, "point": points[-1], "graphs": len(fresh),
                          "also_in_exploratory": sum(k in seen for k in graph_keys(fresh)),
                          "target": K.capacity_curve(x[:, 0], *again["target"], seed, widths),
                          "edges": K.capacity_curve(x[:, 1:][fresh.edge_mask], *again["edges"], seed, widths,
                                                    edge_graphs(fresh))}
    out["attention"] = {}
    for name in patterns:
        stats = P.edge_attention(cache[name], batch)
        out["attention"][name] = [a / u if u > 0 else None for a, u in zip(stats["along_edges"].tolist(),
                                                                           stats["uniform"].tolist())]
    out["patching"] = patching(model, batch[:PATCH_SIZE].trim(), seed)
    return out


SCORES = ("auroc", "balanced_accuracy", "permuted", "control", "control_balanced_accuracy")  # in (0, 1): logit
DIFFERENCES = ("beyond_permuted", "selectivity", "selectivity_balanced_accuracy")  # plain t-intervals


def _summary(metric: str):
    return over_seeds_logit if metric in SCORES else over_seeds


def pool(rows: list[dict]) -> dict:
    """Per group: every per-seed number as {mean, ci95, n} over seeds (per point, the mean over k;
    `by_k` per point and k)."""
    points = rows[0]["points"]
    pooled = {"points": points, "seeds": len(rows), "width": rows[0]["width"]}
    for where in ("target", "edges"):
        pooled[where] = {}
        metrics = SCORES + DIFFERENCES + (("beyond_stats",) if where == "target" else ())
        for metric in metrics:
            summary = _summary(metric)
            pooled[where][metric] = [summary([_mean(r[where][i][metric]) for r in rows]) for i in range(len(points))]
        per_k = len(rows[0][where][0]["auroc"])
        pooled[where]["by_k"] = {metric: [[_summary(metric)([r[where][i][metric][k] for r in rows])
                                           for k in range(per_k)] for i in range(len(points))]
                                 for metric in ("auroc", "control", "selectivity")
                                 + (("beyond_stats",) if where == "target" else ())}
        pooled[where]["types"] = [r["types"][where] for r in rows]
    pooled["distance_r2"] = [over_seeds([r["distance_r2"][i] for r in rows]) for i in range(len(points))]
    pooled["stats_auroc"] = over_seeds_logit([_mean(r["stats_auroc"]) for r in rows])
    pooled["stats_by_k"] = [over_seeds_logit([r["stats_auroc"][k] for r in rows])
                            for k in range(len(rows[0]["stats_auroc"]))]
    pooled["hops"] = hops_probed(rows)
    pooled["emergence"] = emergence(pooled)
    pooled["findings"] = probe_findings(rows)
    curves = [r["capacity"] for r in rows]
    pooled["capacity"] = {**K.pool_curve(curves), "findings": K.capacity_findings(curves, SELECTIVITY_MARGIN),
                          "status": "exploratory", "why": EXPLORATORY}
    if all("confirm" in r for r in rows):
        fresh = [r["confirm"] for r in rows]
        pooled["capacity"]["confirm"] = {
            **K.pool_curve(fresh), "findings": K.capacity_findings(fresh, SELECTIVITY_MARGIN), "status": "confirmatory",
            "sample": {"split": "sample-inspect", "draw": CONFIRM_DRAW, "graphs": [c["graphs"] for c in fresh],
                       "also_in_exploratory": [c["also_in_exploratory"] for c in fresh]}}
    pooled["attention"] = {name: [over_seeds([r["attention"][name][h] for r in rows]) for h in range(len(values))]
                           for name, values in rows[0]["attention"].items()}
    patch = [r["patching"] for r in rows]
    pooled["patching"] = {
        "layers": {p: {kind: over_seeds([q["layers"][p][kind] for q in patch]) for kind in ("target", "edges")}
                   for p in patch[0]["layers"]},
        "heads": {h: over_seeds([q["heads"][h] for q in patch]) for h in patch[0]["heads"]}}
    return pooled


def emergence(pooled: dict) -> list[dict]:
    """Per hop count k that every seed probed: the statistics baseline's AUROC, and the first stream
    point whose beyond_stats (probe AUROC - baseline AUROC for that k) has its whole 95% interval over
    seeds above 0 (null: none; descriptive, each point's interval uncorrected for the points and k
    looked at)."""
    out = []
    beyond = pooled["target"]["by_k"]["beyond_stats"]  # (points, K-1) cells
    for k, probed in enumerate(p["probed"] for p in pooled["hops"]["per_k"]):
        first = next((point for point, row in zip(pooled["points"], beyond)
                      if row[k]["ci95"] is not None and row[k]["ci95"][0] > 0), None)
        out.append({"k": k + 1, "probed": probed, "stats_auroc": pooled["stats_by_k"][k], "point": first if probed else None})
    return out


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
    """At the last stream point, one-sided t over seeds, BH together: `beats_stats` (reach AUROC -
    graph-statistics AUROC > STATS_MARGIN), `beats_permuted` (reach AUROC - permutation baseline >
    PERMUTED_MARGIN), `selective_target` and `selective_edges` (AUROC - control-task AUROC >
    SELECTIVITY_MARGIN, Hewitt and Liang 2019). A test with no p-value (one type: no control task;
    one seed) does not hold; `untestable` says why."""
    estimates = {"beats_stats": [_mean(r["target"][-1]["beyond_stats"]) for r in rows],
                 "beats_permuted": [_mean(r["target"][-1]["beyond_permuted"]) for r in rows],
                 "selective_target": [_mean(r["target"][-1]["selectivity"]) for r in rows],
                 "selective_edges": [_mean(r["edges"][-1]["selectivity"]) for r in rows]}
    margins = {"beats_stats": STATS_MARGIN, "beats_permuted": PERMUTED_MARGIN,
               "selective_target": SELECTIVITY_MARGIN, "selective_edges": SELECTIVITY_MARGIN}
    raw = {key: O.t_test(values, margins[key], "greater") for key, values in estimates.items()}
    adjusted = dict(zip(raw, S.adjust(list(raw.values()))))
    untestable = {}
    for key, values in estimates.items():
        finite = [v for v in values if v is not None]
        if raw[key] is None:
            untestable[key] = ("one type (every token the same id): no control task" if not finite
                               else f"{len(finite)} seed(s) with a value: no t-test")
    return {"p_values": raw, "p_adjusted": adjusted,
            "holds": {k: p is not None and p < S.ALPHA for k, p in adjusted.items()},
            "estimates": {key: over_seeds(values) for key, values in estimates.items()}, "untestable": untestable,
            "thresholds": {"stats_margin": STATS_MARGIN, "permuted_margin": PERMUTED_MARGIN,
                           "selectivity_margin": SELECTIVITY_MARGIN, "alpha": S.ALPHA}}


def page_findings(groups: dict) -> dict:
    """The family the page presents, Benjamini-Hochberg corrected together: every group's four probe
    findings (their raw one-sided p-values, `probe_findings`) and every group's confirmatory capacity
    tests (`capacity.confirm`, Bonferroni over ranks already). The exploratory capacity tests are
    not in it (a finding designed on its own data is not one). Keys "group/finding"; untestable
    tests (no p-value) stay None and do not hold."""
    raw = {}
    for name, g in groups.items():
        raw.update({f"{name}/{key}": p for key, p in g["findings"]["p_values"].items()})
        confirm = g.get("capacity", {}).get("confirm")
        if confirm:
            raw.update({f"{name}/capacity_{where}": p for where, p in confirm["findings"]["p_values"].items()})
    adjusted = dict(zip(raw, S.adjust(list(raw.values()))))
    return {"p_values": raw, "p_adjusted": adjusted, "alpha": S.ALPHA,
            "holds": {k: p is not None and p < S.ALPHA for k, p in adjusted.items()},
            "rule": "Benjamini-Hochberg over every group's probe findings and confirmatory capacity tests"}


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
        graphs = torch.arange(len(batch))[:, None].expand(len(batch), n).reshape(-1).numpy()  # folds by graph
        auroc.append(_mean(P.binary_probe(x.reshape(-1, x.shape[-1]), labels[..., k].reshape(-1, 1),
                                          groups=graphs)["auroc"]))
    final = model.stream(batch)[:, n]
    return {"reach_auroc": auroc, "distance_r2": P.scalar_probe(final, batch.label)["r2"]}


def interpret_run(run: str, stage: str | None, data: str | None, size: int, seed: int, layers,
                  confirm: bool = True) -> dict:
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
           "min_share": P.MIN_SHARE, "patch_size": PATCH_SIZE, "control_draws": C.CONTROL_DRAWS, "groups": {}}
    for name, members in groups.items():
        rows = [measure(s, size, seed, layers, confirm) for s in members]
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
    doc["findings"] = page_findings(doc["groups"])
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
    parser.add_argument("--no-confirm", dest="confirm", action="store_false",
                        help="skip the capacity test's confirmatory sample (then it stays exploratory)")
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
        doc = json_ready(interpret_run(args.run, args.stage, args.data, args.size, args.seed, args.layers,
                                             args.confirm))
        doc["provenance"] = provenance.finish(invocation, "finished")
        if args.figures:
            doc["figures"] = figures(doc, home.figures)
        write_json(out, doc)
    for name, g in doc["groups"].items():
        sel, edge = g["target"]["selectivity"][-1], g["edges"]["selectivity"][-1]
        print(f"{name} ({g['seeds']} seed(s)), last layer: target reach AUROC {g['target']['auroc'][-1]['mean']}, "
              f"selectivity {sel['mean']} {sel['ci95'] or ''}; edges selectivity {edge['mean']} {edge['ci95'] or ''}; "
              f"findings {g['findings']['holds']}")
        cap = g["capacity"]
        print(f"{name}: selectivity by probe rank at {cap['point']}: " + ", ".join(
            f"{where} r={r} {c['mean'] if c['mean'] is None else round(c['mean'], 3)}" for where in ("target", "edges")
            for r, c in zip(cap["ranks"], cap[where]["selectivity"]))
            + f"; at some rank (exploratory) {cap['findings']['holds']}")
        if "confirm" in cap:
            print(f"{name}: confirmatory sample: " + ", ".join(
                f"{where} r={r} {c['mean'] if c['mean'] is None else round(c['mean'], 3)}" for where in ("target", "edges")
                for r, c in zip(cap["ranks"], cap["confirm"][where]["selectivity"]))
                + f"; at some rank {cap['confirm']['findings']['holds']}")
        if "offpath" in g:
            print(f"{name}: off-path verdict {g['offpath']['verdict']}")
    print(f"page-wide family (BH): {doc['findings']['holds']}")
    print(f"wrote {out}")
    return 0


def main(argv=None) -> int:
    return run_cli(PROG, _main, argv, InterpretError)


if __name__ == "__main__":
    sys.exit(main())
