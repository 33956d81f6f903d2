"""The "inside the models" section: `interpret.json`, `llc.json` and `basin.json` of the run
(graphpath.analysis.interpret, graphpath.analysis.llc and graphpath.analysis.basin schemas, docs/contracts.md).

    interpret_summary Text    probes at the last layer against Hewitt and Liang's control task (selectivity)
                             and the label-permutation baseline, intervals over seeds, the findings (BH),
                             the hand-built reference, patching per layer and head
    fig_probes       plotly  probe AUROC per layer: task, control task, permutation baseline; selectivity
    hops_by_layer    Text    per hop count k, the first layer whose probe beats the graph-statistics baseline
    table_hops       Html    per k: the statistics baseline's AUROC beside the probe's at every layer
    fig_hops_heatmap plotly  probe AUROC minus the statistics baseline's, per layer and k
    (interpret.json schema 4; an older file is named as such and asked to be rerun)
    offpath_summary  Text    on-path vs off-path targets: the failure and the verdict, on
                             corrected tests with intervals
    llc_summary      Text    the calibration on models of known LLC, then the LLC per group at its
                             one setting with intervals over seeds, and the refused estimates
    basin_summary    Text    bracketed basin radius per group with Wilson intervals, censoring said,
                             each group's retraining lr and the unperturbed controls that chose it
    table_basin_llc  Html    per group: the bracketed radius beside the LLC
"""
from __future__ import annotations

import json
import re

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from graphpath_common.llc_rules import DIAGNOSTIC_RULE, ESS_MIN, ESTIMAND, RHAT_MAX  # schema 3's computation, in today's words
from graphpath_common.rundir import RunDir

from .figures import TEMPLATE
from .html import Html, Text, plotly_figure, table
from .rundir import Run
from .values import fmt


FILES = {"interpret": lambda run: RunDir(run.path).interpret, "llc": lambda run: RunDir(run.path).llc,
         "basin": lambda run: RunDir(run.path).basin}


def _read(run: Run, key: str) -> dict:
    path = FILES[key](run)
    if not path.is_file():
        raise LookupError(f"no {path.name}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is damaged ({err})") from None


def available(run: Run) -> dict[str, bool]:
    return {key: where(run).is_file() for key, where in FILES.items()}


def _mean(values: list) -> float:
    return sum(values) / len(values)


def _cell(c: dict) -> str:
    if c.get("mean") is None:
        return "—"
    ci = c.get("ci95")
    return fmt(c["mean"]) + (f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "")


def _final_group(doc: dict) -> tuple[str, dict]:
    name = "finetune" if "finetune" in doc["groups"] else next(iter(doc["groups"]))
    return name, doc["groups"][name]


SCHEMA = 4  # interpret.json with the control task, the per-hop statistics baseline and four findings
RERUN = ("interpret.json schema {schema} predates the control task and the per-hop statistics baseline: run "
         "python -m graphpath.interpret RUN_DIR again")


class _Old(Exception):
    """An interpret.json older than SCHEMA: its section says so instead of misreading the fields."""


def _interpret(run: Run) -> dict:
    doc = _read(run, "interpret")
    if doc.get("schema", 0) < SCHEMA:
        raise _Old(RERUN.format(schema=doc.get("schema")))
    return doc


def _or_rerun(builder):
    def wrapped(run: Run):
        try:
            return builder(run)
        except _Old as old:
            return Text(str(old)) if builder.__name__ not in FIGURE_BUILDERS else Html(f'<p class="not-run">{old}</p>')
    wrapped.__name__ = builder.__name__
    return wrapped


FIGURE_BUILDERS = {"fig_probes", "fig_hops_heatmap", "table_hops"}


def interpret_summary(run: Run) -> Text:
    doc = _interpret(run)
    name, g = _final_group(doc)
    last = -1
    heads = g["patching"]["heads"]
    top = max(heads, key=lambda h: heads[h]["mean"] if heads[h]["mean"] is not None else -1)
    hand = doc["handcrafted"]
    t, e = g["target"], g["edges"]
    return Text(
        f"for the {GROUP_NAMES.get(name, name)} models ({g['seeds']} seeds, each on the data it was trained on; "
        f"brackets: 95% intervals over seeds), a linear probe on the target token's residual stream after the last "
        f"block reads “the target is within k hops of vertex 1” with out-of-fold AUROC {_cell(t['auroc'][last])} "
        f"(balanced accuracy {_cell(t['balanced_accuracy'][last])}) and the distance with R² "
        f"{_cell(g['distance_r2'][last])}; at the edge tokens, “this endpoint is within k hops” reads with AUROC "
        f"{_cell(e['auroc'][last])}. Against Hewitt and Liang's control task (2019: each type — the target's id at the "
        f"target token, the (a, b) pair at an edge token — gets one random label drawn from the real labels' "
        f"distribution, so only a probe that memorises types can score; {doc['control_draws']} draws averaged), the "
        f"control scores AUROC {_cell(t['control'][last])} at the target token ({_types(t)}) and "
        f"{_cell(e['control'][last])} at the edge tokens ({_types(e)}): selectivity (task minus control) "
        f"{_cell(t['selectivity'][last])} and {_cell(e['selectivity'][last])} (in balanced accuracy "
        f"{_cell(t['selectivity_balanced_accuracy'][last])} and {_cell(e['selectivity_balanced_accuracy'][last])})"
        + _ceiling_note(g) + f". A label-permutation baseline (the real labels shuffled among tokens of one type, "
        f"which keeps what the type predicts of them) scores {_cell(t['permuted'][last])} and "
        f"{_cell(e['permuted'][last])}. The hand-built model's own vertex tokens give AUROC "
        f"{fmt(min(v for v in hand['reach_auroc'] if v is not None))} and R² {fmt(hand['distance_r2'])}. Patching the "
        f"clean target token's stream into a run that asks for another target restores, of the output gap, "
        + ", ".join(f"{_layer_label(p) if 'embed' in p else 'block ' + _layer_label(p)} {_cell(g['patching']['layers'][p]['target'])}"
                    for p in g["points"])
        + " (at the embedding and after the last block the whole gap by construction: the runs differ only in "
          "the target token, and the read-out reads that token; in between, what falls short of 1 has already "
          f"moved to other tokens); {_heads_note(heads, top)}" + _attention_note(g) + _controls_note(doc))


def _types(where: dict) -> str:
    low, high = min(where["types"]), max(where["types"])
    count = str(low) if low == high else f"{low}–{high}"
    return f"{count} type{'' if high == 1 else 's'} in each seed's sample"


def _ceiling_note(g: dict) -> str:
    """Where a position has no more types than the stream is wide plus one, a linear probe can fit any
    labelling of them (Cover 1965, IEEE Trans. Electronic Computers EC-14: N <= D + 1 points in general
    position are linearly separable in every dichotomy), so the control task measures whether the
    type is linearly readable, not whether the probe reads the graph."""
    few = [where for where in ("target", "edges") if 1 < max(g[where]["types"]) <= g["width"] + 1]
    one = [where for where in ("target", "edges") if max(g[where]["types"]) == 1]
    parts = []
    if few:
        parts.append(f"; at the {' and '.join(w if w == 'target' else 'edge' for w in few)} token"
                     f"{'s' if len(few) > 1 else ''} there are no more types than the stream is wide ({g['width']}) "
                     "plus one, so a linear probe can fit any labelling of them wherever the type is linearly "
                     "readable (Cover 1965): the control task is then solved whatever the stream holds about the "
                     "graph, and a selectivity near 0 says the token's identity is still readable, not that the "
                     "probe reads no graph; the permutation baseline below, which keeps the real labels within "
                     "each type, is the comparison that shows whether the label is more than the type")
    if one:
        parts.append(f"; the {' and '.join(one)} token has one type (in pre-training the target is always t = 2), "
                     "so there is no control task and no selectivity there")
    return "".join(parts)


FINDING_LABELS = (("beats_stats", "beats the statistics baseline by > {stats_margin:g}"),
                  ("beats_permuted", "beats the label-permutation baseline by > {permuted_margin:g}"),
                  ("selective_target", "selective at the target token by > {selectivity_margin:g}"),
                  ("selective_edges", "selective at the edge tokens by > {selectivity_margin:g}"))


def _verdict(found: dict, key: str, label: str, family: dict | None = None, name: str = "") -> str:
    """One probe finding: its p from the page-wide family (interpret.json schema 6) when there is
    one, else the group's own BH."""
    if key in found.get("untestable", {}):
        return f"{label}: not testable ({found['untestable'][key]})"
    if family is not None and f"{name}/{key}" in family["p_adjusted"]:
        p, holds = family["p_adjusted"][f"{name}/{key}"], family["holds"][f"{name}/{key}"]
    else:
        p, holds = found["p_adjusted"][key], found["holds"][key]
    return f"{label} {'holds' if holds else 'not shown'} (BH p {fmt(p) if p is not None else '—'})"


def _controls_note(doc: dict) -> str:
    """Per group the graph-statistics baseline, the four probe findings and the hops the data cannot
    probe; then why the two 0.02 margins are weak."""
    parts = []
    family = doc.get("findings")
    for name, g in doc["groups"].items():
        found = g["findings"]
        th = found["thresholds"]
        chance = (" (one type at the target token: the permutation is a full permutation, so this is a test against "
                  "chance there)" if max(g["target"]["types"]) == 1 else "")
        verdicts = "; ".join(_verdict(found, key, label.format(**th), family, name)
                             + (chance if key == "beats_permuted" else "") for key, label in FINDING_LABELS)
        note = g["hops"]["note"]
        parts.append(f"{GROUP_NAMES.get(name, name)}: reach AUROC {_cell(g['target']['auroc'][-1])} against "
                     f"{_cell(g['stats_auroc'])} for a probe on graph statistics alone; gain "
                     f"{_cell(g['target']['beyond_stats'][-1])}; selectivity at the edge tokens "
                     f"{_cell(found['estimates']['selective_edges'])}; {verdicts}" + (f"; {note}" if note else ""))
    th = next(iter(doc["groups"].values()))["findings"]["thresholds"]
    if family is not None:
        tested = sum(p is not None for p in family["p_values"].values())
        correction = (f"the {tested} testable findings of this section — every group's four and the confirmatory "
                      "capacity tests below — Benjamini-Hochberg corrected together")
        baseline = ("the target's degree one-hot, whether it is isolated, the size of its connected component, the "
                    "edge count, n, and the source's (vertex 1's) degree one-hot and component size")
    else:
        correction = "the four Benjamini-Hochberg corrected together per group"
        baseline = "the target's degree one-hot, whether it is isolated, the size of its connected component, the edge count and n"
    return (f". Findings at the last block (AUROC intervals on the logit scale; each one-sided t over seeds, {correction}; "
            f"the statistics baseline is {baseline}) — "
            + " | ".join(parts) + f". The margins of the first two ({th['stats_margin']:g} and "
            f"{th['permuted_margin']:g} AUROC) are weak: about two standard errors of one AUROC, well below the gains "
            "measured above, so they can hardly fail; they were fixed before their first run and are kept as written "
            f"rather than re-tuned after seeing the data. The selectivity margin, {th['selectivity_margin']:g} AUROC "
            "(a fifth of the way from chance to perfect), was fixed in code before the control task's first run"
            + (". Edge-token probes are cross-validated by graph (no graph's tokens on both sides of a fold, the "
               "penalty chosen by leave-one-graph-out error), and balanced accuracy thresholds each probe at its "
               "training fold's positive share" if doc.get("schema", 0) >= 6 else ""))


def _heads_note(heads: dict, top: str) -> str:
    """Single heads: the largest mean is a maximum over noisy means, so it is named only with the
    heads whose intervals exclude 0, and 'no single head stands out' when none does."""
    above = [h for h, v in heads.items() if (v.get("ci95") or [None])[0] is not None and v["ci95"][0] > 0]
    if not above:
        return (f"no single head's restoration is distinguishable from 0 (every 95% interval over seeds includes 0; "
                f"the largest mean, {top} {_cell(heads[top])}, is a maximum over {len(heads)} heads)")
    return (f"of {len(heads)} single heads, {len(above)} restore a share whose interval excludes 0 ("
            + ", ".join(f"{h} {_cell(heads[h])}" for h in above) + "); the largest mean is a maximum over noisy "
            f"means, so no ranking among them is claimed; the intervals are not corrected for the {len(heads)} heads")


def _attention_note(g: dict) -> str:
    """The head that attends most along the graph's edges, relative to uniform attention (absent in
    older interpret.json files)."""
    heads = [(hook, i, c) for hook, cells in (g.get("attention") or {}).items() for i, c in enumerate(cells)
             if c.get("mean") is not None]
    if not heads:
        return ""
    hook, i, c = max(heads, key=lambda h: h[2]["mean"])
    return (f". Attention along the graph's edges, as a multiple of uniform attention, is largest for head {i} of "
            f"block {_layer_label(hook)}: {_cell(c)}")


def fig_probes(run: Run) -> Html:
    doc = _interpret(run)
    name, g = _final_group(doc)
    x = ["embed" if "embed" in p else p.split(".")[1] for p in g["points"]]
    fig = make_subplots(rows=1, cols=3, subplot_titles=("target token: within k hops", "edge tokens: endpoint within k hops",
                                                        "selectivity (task − control task)"))
    for col, where in enumerate(("target", "edges"), 1):
        for metric, dash, label in (("auroc", "solid", "task"), ("control", "dot", "control task"),
                                    ("permuted", "dash", "label permutation")):
            cells = g[where][metric]
            fig.add_trace(go.Scatter(x=x, y=[c["mean"] for c in cells], name=label, legendgroup=metric,
                                     showlegend=col == 1, line=dict(dash=dash), error_y=_error_bars(cells)),
                          row=1, col=col)
        cells = g[where]["selectivity"]
        fig.add_trace(go.Scatter(x=x, y=[c["mean"] for c in cells], name=f"{where}", error_y=_error_bars(cells)),
                      row=1, col=3)
    fig.update_layout(template=TEMPLATE, height=360, margin=dict(t=40))
    return plotly_figure(fig, "probes", f"Out-of-fold AUROC of linear probes per block, {GROUP_NAMES.get(name, name)} "
                                        "models: the task (solid), Hewitt and Liang's control task (dotted: a random "
                                        "label per type) and the label-permutation baseline (dashed); right, "
                                        "selectivity = task − control task. Bars are 95% intervals over seeds.")


def _error_bars(cells: list[dict]) -> dict:
    """Plotly error bars from {mean, ci95} cells. An AUROC's interval is on the logit scale around the
    plain mean, so near 1 it can lie wholly below the mean: the arm on the mean's far side is then 0,
    not negative (plotly would draw a negative arm backwards)."""
    up = [max(0.0, c["ci95"][1] - c["mean"]) if c.get("ci95") else 0 for c in cells]
    down = [max(0.0, c["mean"] - c["ci95"][0]) if c.get("ci95") else 0 for c in cells]
    return dict(type="data", symmetric=False, array=up, arrayminus=down)


VERDICTS = {
    "no-failure": "so the failure itself is not shown at these intervals, and there is nothing for the probes to explain",
    "readout": "so the stream does hold the distance to an off-path target — a probe fitted on those graphs reads "
               "it — but the model's own read-out does not use it: the failure is in the read-out",
    "reach-not-distance": "so reachability of the target is as linearly readable at the read-out input on off-path "
                          "targets as on on-path ones{how}, but the distance is not",
    "reach-missing": "so reachability is less linearly readable at the read-out input on off-path targets{how}",
    "undetermined": "and none of the explanations' tests holds after correction: with these seeds the intervals are "
                    "too wide to say why (a single seed gives no interval over seeds at all)",
}


def offpath_summary(run: Run) -> Text:
    doc = _read(run, "interpret")
    off = (doc["groups"].get("finetune") or {}).get("offpath")
    if not off or "mse_ratio" not in off:
        return Text("the off-path comparison was not measured (no fine-tuned models, too few off-path graphs, or a "
                    "named data set)")
    ratio = off["mse_ratio"]
    ci = ratio.get("ci95")
    matched = off.get("reach_matched", False)  # interpret.json before it: the AUROCs were not matched
    how = " (matched on n and distance)" if matched else " (unmatched on n and distance)"
    reach_how = ("both scored with the MSE's matched weights, over the same k" if matched else
                 "these two unmatched on n and distance: only the MSE is matched")
    if "matching" in off:  # interpret.json schema 3: on-path t != 2 against reachable off-path, matched on (n, d)
        m, raw = off["matching"], off["mse_ratio_unmatched"]
        apart = "; ".join(f"{kind} targets ({a['count']} graphs) MSE {_cell(a['mse'])}, "
                          f"{fmt(a['ratio_to_matched_on']['value'])} times the matched on-path MSE"
                          for kind, a in off.get("apart", {}).items())
        head = (f"On-path targets other than t = 2 ({m['on_kept']} of {m['on_count']} graphs kept) against reachable "
                f"off-path targets ({m['off_kept']} of {m['off_count']} kept), matched on vertex count and distance "
                f"({m['cells']} shared cells; the on-path graphs reweighted to the off-path mix), the same graphs for "
                f"every fine-tuned seed: the MSE off path is {fmt(ratio['value'])} times that on path (95% interval "
                f"over seeds and graphs {fmt(ci[0]) if ci else '—'}–{fmt(ci[1]) if ci else '—'}; unmatched, "
                f"{fmt(raw['value'])}). Reported apart, outside the tests: " + (apart or "none") + ".")
    else:
        head = (f"On the same {off['on_count']} on-path and {off['off_count']} off-path graphs for every fine-tuned "
                f"seed, the MSE off path is {fmt(ratio['value'])} times that on path (95% interval over seeds and "
                f"graphs {fmt(ci[0]) if ci else '—'}–{fmt(ci[1]) if ci else '—'}).")
    return Text(
        head + f" At the last block (fixed in advance), the target's "
        f"reach reads with AUROC {_cell(off['reach_on'])} on path and {_cell(off['reach_off'])} off path ({reach_how}), "
        f"and a distance "
        f"probe fitted off path reaches R² {_cell(off['distance_r2_off'])}. Tested against thresholds fixed in code "
        f"(off/on ratio > {off['thresholds']['fail_ratio']:g}, R² > {off['thresholds']['readout_r2']:g}, AUROC within "
        f"{off['thresholds']['reach_margin']:g}), Benjamini-Hochberg corrected at {off['thresholds']['alpha']:g}: the "
        f"failure {'holds' if off['holds']['fails'] else 'is not shown'}, "
        + VERDICTS.get(off["verdict"], f"verdict {off['verdict']}").format(how=how))


def _layer_label(name: str) -> str:
    return "embed" if "embed" in name else name.split(".")[1]


def _where(point: str | None) -> str:
    return "never" if point is None else ("the embedding" if "embed" in point else f"block {_layer_label(point)}")


def hops_by_layer(run: Run) -> Text:
    """interpret.json's `emergence`: per probed k the first point whose AUROC beats the statistics
    baseline for that k with its whole 95% interval (graphpath.analysis.interpret.emergence)."""
    doc = _interpret(run)
    name, g = _final_group(doc)
    probed = [e for e in g["emergence"] if e["probed"]]
    per_k = "; ".join(f"k = {e['k']}: {_where(e['point'])} (baseline AUROC {_cell(e['stats_auroc'])})" for e in probed)
    note = "; one seed gives no interval over seeds, so “never”" if g["seeds"] < 2 else ""
    skipped = [e["k"] for e in g["emergence"] if not e["probed"]]
    return Text(f"for the {GROUP_NAMES.get(name, name)} models the first stream point whose probe for “the target is "
                f"within k hops” beats the statistics baseline for the same k, with the whole 95% interval over seeds "
                f"of the difference above 0, is — {per_k or 'no k could be probed'}{note}"
                + (f" (k = {', '.join(map(str, skipped))} near-trivial in this data, not probed)" if skipped else "")
                + ". Each point's interval is uncorrected for the points and k looked at, so read this as a "
                "description, not a finding. At large k “within k hops” is nearly “reachable at all”, so an early "
                "point there reads connectivity, not hop counting; the hand-built model needs block k for k hops")


def table_hops(run: Run) -> Html:
    """Per probed k: the statistics baseline's AUROC beside the probe's at every stream point."""
    doc = _interpret(run)
    name, g = _final_group(doc)
    auroc = g["target"]["by_k"]["auroc"]  # (points, K-1) cells
    rows = [[f"k = {e['k']}", _cell(e["stats_auroc"])] + [_cell(auroc[i][e["k"] - 1]) for i in range(len(g["points"]))]
            + [_where(e["point"])] for e in g["emergence"] if e["probed"]]
    return table(["hops", "statistics baseline"] + [_layer_label(p) for p in g["points"]] + ["first above baseline"], rows,
                 caption=f"“Target within k hops” at the target token, {GROUP_NAMES.get(name, name)} models: "
                         "out-of-fold AUROC of the probe on graph statistics alone (the target's degree one-hot, "
                         "isolated, component size, edge count, n"
                         + (", and the source's degree one-hot and component size" if doc.get("schema", 0) >= 6 else "")
                         + ") and of the stream probe per point, 95% intervals "
                         "over seeds (logit scale).")


def fig_hops_heatmap(run: Run) -> Html:
    doc = _interpret(run)
    name, g = _final_group(doc)
    z = [[c["mean"] for c in row] for row in g["target"]["by_k"]["beyond_stats"]]  # (points, k)
    fig = go.Figure(go.Heatmap(z=[list(col) for col in zip(*z)], x=[_layer_label(p) for p in g["points"]],
                               y=[f"k = {k + 1}" for k in range(len(z[0]))], colorscale="RdBu", zmid=0,
                               colorbar=dict(title="AUROC − baseline")))
    fig.update_layout(template=TEMPLATE, height=320, margin=dict(t=20), xaxis_title="stream point (block)",
                      yaxis_title="hops")
    return plotly_figure(fig, "hops-heatmap", "The “target within k hops” probe at the target token: its AUROC "
                                              "minus the graph-statistics baseline's for the same k, per block and k, "
                                              "mean over seeds (blank: k near-trivial in this data).")


GROUP_NAMES = {"pretrain": "learned, pre-trained", "finetune": "learned, fine-tuned", "handcrafted": "hand-built"}


def _groups_and_refused(doc: dict) -> tuple[list[str], list[str]]:
    """llc.json's groups in words ('pre-trained: 406 [321, 490], 3 of 3 estimates passed') and the
    models the chain diagnostics refused, each with its reasons."""
    parts = []
    for name, g in doc["groups"].items():
        value = _interval(g) if g["mean"] is not None else "none"
        parts.append(f"{GROUP_NAMES.get(name, name)}: {value}, {g['passed']} of {g['models']} estimates passed")
    refused = [f"{m['key']} ({'; '.join(m['estimate']['failed']) if m['estimate'] else m.get('diverged')})"
               for m in doc["models"] if not (m["estimate"] and m["estimate"]["ok"])]
    return parts, refused


def _interval(g: dict) -> str:
    ci = g.get("ci95")
    return f"{fmt(g['mean'])}" + (f" (95% interval over seeds {fmt(ci[0])}–{fmt(ci[1])})" if ci else "")


CHECK_NAMES = {"whitened_regular": "(a) whitened regular read-out", "whitened_degenerate": "(b) whitened two-layer "
               "read-out with exactly flat directions", "own_features": "(c) regular read-out on the raw features"}


def _production(doc: dict) -> str:
    """llc.json's production settings in words: 'MSE, batch 64, 4 chains of 800 steps (100 burn-in), n = 2048'."""
    prod = doc["production"]
    return (f"MSE, batch {prod['batch_size']}, {prod['chains']} chains of {prod['steps']} steps "
            f"({prod['burn_in']} burn-in), n = {doc['data_size']}")


def _why_failed(check: dict) -> str:
    """'' for a passing calibration check, else ' — fails' and why: off its target, and/or the chain
    diagnostics it failed (a reading near its target still fails when its chains do)."""
    if check["passes"]:
        return ""
    reasons = [] if check.get("near_truth", True) or check["llc"] is None else ["off its target"]
    reasons += check.get("failed") or []
    return " — fails" + (f" ({'; '.join(reasons)})" if reasons else "")


def llc_summary(run: Run) -> Text:
    doc = _read(run, "llc")
    if doc.get("schema", 2) < 3:
        return _llc_summary_v2(doc)
    cal = doc["calibration"]
    setting = f"{_production(doc)}, nβ = {fmt(cal['nbeta'])} ({doc['nbeta_rule']})"
    rows = []
    for row in cal["rows"]:
        parts = []
        for name, c in row["checks"].items():
            reading = "diverged" if c["llc"] is None else fmt(c["llc"])
            mixed = (f", and the expected reading at this ε and chain length is {c['share_mixed']:.0%} of that"
                     if name == "own_features" and c.get("share_mixed") is not None else "")
            target = (f"SGLD's expected reading from the Hessian spectrum {fmt(c['target'])}; the localisation sees "
                      f"{c['share_seen']:.0%} of its LLC {fmt(c['rank_half'])}{mixed}{_reading_share(c)}"
                      if name == "own_features" else f"known {fmt(c['target'])}")
            parts.append(f"{CHECK_NAMES.get(name, name)} {reading} ({target}){_why_failed(c)}")
        rows.append(f"ε {row['eps']:g}, γ {row['gamma']:g}: " + "; ".join(parts))
    head = (f"Every LLC here is {ESTIMAND}. Calibration at the production settings ({setting}) on the "
            f"read-out features of {cal['features_of']}, tolerance {doc['known_tolerance']:.0%} of the known LLC for "
            f"(a) and (b), {doc['sampler_tolerance']:.0%} of SGLD's expected reading for (c), with passing "
            f"chain diagnostics: " + " | ".join(rows) + ". Check (c) validates the sampler's implementation "
            f"(its reading matches what SGLD should read in these steps), not the estimate's accuracy"
            + _chosen_share(cal) + ". ")
    if cal["chosen"] is None:
        return Text(head + "No setting passed all three checks, so no model's LLC is reported"
                    + _mixing_note(cal.get("mixing")))
    parts, refused = _groups_and_refused(doc)
    each = [f"{m['key']} {fmt(m['estimate']['llc'])} (R-hat {m['estimate']['rhat']:.3f}, ESS {m['estimate']['ess']:.0f}, "
            f"MCSE {fmt(m['estimate']['mcse'])})" for m in doc["models"] if m["estimate"] and m["estimate"]["ok"]]
    return Text(head + f"Every model at the one chosen setting (ε {cal['chosen']['eps']:g}, γ {cal['chosen']['gamma']:g}, "
                f"the smallest passing γ): " + "; ".join(parts) + (" — " + ", ".join(each) if each else "")
                + (". Refused by the chain diagnostics: " + "; ".join(refused) if refused else "")
                + _old_rule_note(doc) + _data_note(doc["models"]))


def _old_rule_note(doc: dict) -> str:
    """A file judged by an older diagnostic rule: which of its passing estimates today's rule would refuse."""
    if doc.get("diagnostic_rule") in (None, DIAGNOSTIC_RULE):
        return ""
    stale = [m["key"] for m in doc["models"] if m["estimate"] and m["estimate"]["ok"]
             and not (m["estimate"]["rhat"] <= RHAT_MAX and m["estimate"]["ess"] >= ESS_MIN)]
    return (f". These estimates were judged by the file's older rule ({doc['diagnostic_rule']}); by today's (split "
            f"R-hat <= {RHAT_MAX}, bulk ESS >= {ESS_MIN}) " + (f"{len(stale)} of those passing would be refused "
            f"({', '.join(stale)}): rerun with the current defaults before reading them" if stale else
            "every one of them still passes"))


def _reading_share(check: dict) -> str:
    """The raw read-out's reading as a share of its true LLC rank / 2 (computed for files before `reading_share`)."""
    share = check.get("reading_share")
    if share is None and check.get("llc") is not None and check.get("rank_half"):
        share = check["llc"] / check["rank_half"]
    return f"; the reading is {share:.0%} of that LLC" if share is not None else ""


def _chosen_share(cal: dict) -> str:
    """The raw read-out's reading at the chosen setting as a share of its true LLC rank / 2."""
    chosen = cal["chosen"]
    row = next((r for r in cal["rows"] if chosen and (r["eps"], r["gamma"]) == (chosen["eps"], chosen["gamma"])), None)
    check = row["checks"].get("own_features") if row else None
    if not check or check.get("llc") is None or not check.get("rank_half"):
        return ""
    share = check.get("reading_share", check["llc"] / check["rank_half"])
    return (f": at the chosen setting the raw read-out reads {share:.0%} of its true LLC {fmt(check['rank_half'])} "
            f"(rank / 2), so a reading here can be well below the LLC it stands for")


def _data_note(models: list[dict]) -> str:
    """Which data each group was measured on: readings on different data are not comparable."""
    losses = {}
    for m in models:
        if m.get("estimate"):
            losses.setdefault(m["group"], []).append(m["estimate"]["init_loss"])
    if len(losses) < 2:
        return ". Compare models only on the same data at this one setting"
    spans = "; ".join(f"{GROUP_NAMES.get(g, g)} on {'its' if g == 'handcrafted' else 'their'} "
                      f"{'pre-training' if g in ('pretrain', 'handcrafted') else 'fine-tuning'} data, "
                      f"L_n(w*) {fmt(min(v))}–{fmt(max(v))}" for g, v in losses.items())
    return (f". The groups are measured on different data ({spans}), so their readings are not comparable with "
            f"each other: compare models only within a group, on the same data at this one setting")


def _llc_summary_v2(doc: dict) -> Text:
    """An llc.json before schema 3 (calibration on unwhitened features, rows with `models`)."""
    cal = doc["calibration"]
    setting = _production(doc)
    checks = []
    for row in cal["rows"]:
        reads = ", ".join(f"{name} {fmt(m['llc']) if m['llc'] is not None else 'diverged'}"
                          for name, m in row["models"].items())
        truth = next(iter(row["models"].values()))["truth"]
        checks.append(f"ε {row['eps']:g}, γ {row['gamma']:g}: {reads} (known {fmt(truth)}; a perfectly mixed chain "
                      f"at this γ reads {fmt(row['localised_truth'])}){' — passes' if row['passes'] else ''}")
    head = (f"Calibration at the production settings ({setting}) on two models of known LLC built on the "
            f"read-out features of {cal['features_of']} — a regular linear read-out and the same as a two-layer "
            f"linear network, whose extra directions are exactly flat: " + "; ".join(checks) + ". ")
    if cal["chosen"] is None:
        return Text(head + "No setting read both known LLCs within the tolerance with passing chain diagnostics, so "
                    "no model's LLC is reported and no setting was chosen" + _infeasible_note(cal, _tolerance(doc))
                    + _mixing_note(cal.get("mixing")))
    parts, refused = _groups_and_refused(doc)
    return Text(head + f"Every model at the one chosen setting (ε {cal['chosen']['eps']:g}, γ {cal['chosen']['gamma']:g}): "
                + "; ".join(parts) + (". Refused by the chain diagnostics: " + "; ".join(refused) if refused else ""))


def _tolerance(doc: dict) -> float | None:
    """llc.json's `known_tolerance`; older files state it only in `calibration_rule` ("within 25%")."""
    if doc.get("known_tolerance") is not None:
        return float(doc["known_tolerance"])
    found = re.search(r"within (\d+(?:\.\d+)?)%", doc.get("calibration_rule") or "")
    return float(found.group(1)) / 100 if found else None


def _infeasible_note(cal: dict, tolerance: float | None) -> str:
    """Whether the grid could have passed at all: a row whose perfectly mixed chain (the localised
    truth at its gamma) already lies outside the tolerance band around the known LLC cannot pass,
    however long its chains run; then the failure says as much about the grid as the estimator."""
    if tolerance is None:
        return ""
    rows = [r for r in cal.get("rows") or [] if r.get("localised_truth") is not None]
    if not rows:
        return ""
    truth = next(iter(rows[0]["models"].values()))["truth"]
    feasible = [r for r in rows if abs(r["localised_truth"] - truth) <= tolerance * truth]
    if feasible:
        return (f" (at {len(feasible)} of {len(rows)} settings a perfectly mixed chain would pass: there the chains "
                f"were too short or unstable)")
    return (f". The grid could not pass as built: at every γ tried even a perfectly mixed chain reads "
            f"{fmt(max(r['localised_truth'] for r in rows))} or less, outside {tolerance:.0%} of the known "
            f"{fmt(truth)} (localisation at these γ hides the flat directions the known LLC counts); a fair "
            f"calibration needs γ below 1, whitened features or a target at the localised truth, and longer chains")


def _mixing_note(mix: dict | None) -> str:
    """Why, from the regular model's Hessian spectrum (graphpath.analysis.llc_known.mixing)."""
    if not mix or not mix.get("by_gamma"):
        return ""
    parts = [f"at γ {fmt(r['gamma'])} a perfectly mixed chain reads {fmt(r['localised_truth'])}, the largest stable ε "
             f"is {fmt(r['eps_stable'])} and the flattest direction takes {fmt(r['relax_steps'])} steps to relax"
             for r in mix["by_gamma"]]
    return (f". The regular model's MSE Hessian on these features spans {fmt(mix['hessian_min'])} to "
            f"{fmt(mix['hessian_max'])} (d / 2 = {fmt(mix['d'] / 2)}, nβ = {fmt(mix['nbeta'])}): " + "; ".join(parts)
            + ". A small γ leaves the flat directions too slow to explore, a large one hides them; the stiffest "
              "direction caps ε")


def _bracket(g: dict) -> str:
    if g.get("no_radius"):  # schema 4: no lr on the grid kept the unperturbed model within its bar
        return "no radius: " + g["no_radius"]
    if not g.get("trials"):
        return "not measured (every model refused)" if g.get("refused") else "not measured"
    if g.get("complete") is False:  # basin.json written before the search finished (interrupted or failed)
        tried = ", ".join(f"σ {fmt(t['sigma'])}: {t['recovered']} of {t['runs']}" for t in g["trials"])
        return f"the search did not finish; measured so far {tried}"
    if g["censored"]:
        return g["censored_note"]
    lo, hi = g["lo"], g["hi"]
    return (f"σ in [{fmt(lo['sigma'])}, {fmt(hi['sigma'])}]: {lo['recovered']} of {lo['runs']} runs recovered at "
            f"{fmt(lo['sigma'])} (95% Wilson {fmt(lo['ci95'][0])}–{fmt(lo['ci95'][1])}), {hi['recovered']} of "
            f"{hi['runs']} at {fmt(hi['sigma'])} ({fmt(hi['ci95'][0])}–{fmt(hi['ci95'][1])})"
            + ("" if g["resolved"] else "; not resolved at 95%: an end's interval includes one half")
            + ("" if g.get("closed", True) else "; the search's trial budget ran out before the bracket closed"))


def _recovery_bar(doc: dict) -> str:
    """basin.json's recovery bar: relative to each model's own loss (schema 3), or an older absolute one."""
    if doc.get("recovery_rule"):
        models = [m for g in doc["groups"].values() for m in g.get("models", [])]
        bars = ", ".join(f"{m['key']} {fmt(m['threshold'])} (own {fmt(m['loss_before'])})" for m in models)
        return (f"that after the retraining the held-out MSE is within {fmt(doc['recovery_factor'])}× the model's own "
                f"unperturbed held-out MSE (floored at "
                f"{fmt(doc['recovery_floor'])}), the same multiple for every row, so the radii compare"
                + (f": the bars were {bars}" if bars else ""))
    return (f"back to {doc['threshold_rule'].split('is at or below ')[-1]} — an absolute level, a different multiple of "
            f"each model's own loss, so these radii do not compare across rows")


def _lr_note(g: dict) -> str:
    """basin.json's `retraining_lr` (schema 4): the lr the group was retrained at, and every
    unperturbed control tried on the way to it."""
    record = g["retraining_lr"]
    tried = ", ".join(f"{c['recovered']} of {c['runs']} at lr {fmt(c['lr'])}" for c in record["controls"])
    if record["source"] == "given":
        return (f" (retrained at lr {fmt(record['lr'])}, given, not calibrated)"
                + (_control_note({"control": record["controls"][-1]}) if record["controls"] else ""))
    if record["lr"] is None:
        return f" (unperturbed control within the bar: {tried})"
    return f" (retrained at lr {fmt(record['lr'])}, calibrated: unperturbed control within the bar {tried})"


def _control_note(g: dict) -> str:
    """basin.json's `control`: the same retraining unperturbed; when it misses the bar the radius says
    more about the retraining than about the basin. Schema 4 says the calibrated lr instead (_lr_note)."""
    if g.get("retraining_lr") and g["retraining_lr"].get("controls"):
        return _lr_note(g)
    c = g.get("control")
    if not c or not c.get("runs"):
        return ""
    note = (f" (control: unperturbed, the same retraining ends within the bar in {c['recovered']} of {c['runs']} runs"
            + (f"; {c['within_at_start']} were within it before retraining" if "within_at_start" in c else "") + ")")
    if c["recovered"] / c["runs"] < 0.5:
        note += (" — the retraining itself does not keep this model within its bar, so this radius measures the "
                 "retraining protocol, not the basin")
    return note


def basin_summary(run: Run) -> Text:
    doc = _read(run, "basin")
    s = doc["settings"]
    parts = [f"{GROUP_NAMES.get(name, name)}: {_bracket(g)}{_control_note(g)}" for name, g in doc["groups"].items()]
    refused = [f"{r['key']} ({r['refused']})" for g in doc["groups"].values() for r in g["refused"]]
    if s.get("lr") is not None:
        lr = f"at lr {s['lr']:g}" + (" (given, not calibrated)" if doc.get("lr_rule") == "given" else "")
        why = ""
    else:  # schema 4: calibrated per group on the unperturbed control (graphpath.analysis.basin.LR_RULE)
        grid = ", ".join(fmt(lr) for lr in doc.get("lr_grid") or [])
        lr = "at each group's calibrated lr"
        why = (f"Each group's lr is the largest of {grid} at which every unperturbed control run (the same "
               f"retraining, no perturbation) ends within its bar, chosen before any σ on unperturbed runs only, so "
               f"the radius is not selected on the perturbed data. ")
    return Text(f"every parameter perturbed by σ × its tensor's RMS ({s['kind']}), {len(s['seeds'])} draws per model "
                f"and σ, then {s['steps']} Adam steps {lr} on fresh graphs of the model's own data; "
                f"recovered means {_recovery_bar(doc)}. {why}"
                + "; ".join(parts) + (". Refused: " + "; ".join(refused) if refused else "")
                + ". The Wilson intervals treat runs as independent, though runs of one seed share its model")


def table_basin_llc(run: Run) -> Html:
    doc = _read(run, "basin")
    basin = doc["groups"]
    llc = _read(run, "llc") if available(run)["llc"] else {}
    groups = llc.get("groups", {})
    rows = []
    for name, g in basin.items():
        models = g["models"] + g["refused"]
        before = [m["loss_before"] for m in models]
        l = groups.get(name)
        value = _interval(l) if l and l.get("mean") is not None else (
            "calibration failed" if llc and not llc["calibration"]["chosen"] else "—")
        record = g.get("retraining_lr") or {}
        lr = (fmt(record["lr"]) + (" (given)" if record.get("source") == "given" else "") if record.get("lr")
              else "none on the grid passes" if record else fmt(doc["settings"].get("lr")))
        rows.append([GROUP_NAMES.get(name, name), _bracket(g), lr, len(g.get("trials", [])),
                     f"{fmt(min(before))}–{fmt(max(before))}" if len(before) > 1 else fmt(before[0]), value])
    chosen = llc["calibration"]["chosen"] if llc.get("schema", 2) >= 3 else None
    llc_head = f"localised LLC at γ {chosen['gamma']:g}, ε {chosen['eps']:g}" if chosen else "LLC (one calibrated setting)"
    radius_head = "basin radius σ (holds, fails)" + (
        f", recovered within {fmt(doc['recovery_factor'])}× own loss" if doc.get("recovery_rule") else "")
    return table(["model", radius_head, "retraining lr", "σ tried", "loss before", llc_head],
                 rows, "The bracketed basin radius beside the localised learning coefficient, per model group")


INSIDE = {"interpret_summary": _or_rerun(interpret_summary), "fig_probes": _or_rerun(fig_probes),
          "llc_summary": llc_summary, "basin_summary": basin_summary, "offpath_summary": offpath_summary,
          "table_basin_llc": table_basin_llc, "hops_by_layer": _or_rerun(hops_by_layer),
          "table_hops": _or_rerun(table_hops), "fig_hops_heatmap": _or_rerun(fig_hops_heatmap)}
