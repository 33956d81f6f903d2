"""The probe-capacity curve of the "inside the models" section: interpret.json's `capacity` (schema 5;
graphpath.analysis.probe_capacity, docs/contracts.md).

    capacity_summary Text    selectivity at the lowest and the full rank per group and position, the
                             "selective at some rank" finding (Bonferroni over ranks), what the curve shows
    fig_capacity     plotly  per position: task and control AUROC, and selectivity, against the rank r
                             of the probe's input, one line per group, 95% intervals over seeds

An interpret.json without `capacity` (schema 4) is named as such and asked to be rerun.
"""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .figures import TEMPLATE
from .html import Html, Text, plotly_figure
from .inside import GROUP_NAMES, _cell, _error_bars, _read
from .rundir import Run
from .values import fmt

SCHEMA = 5  # interpret.json with `capacity`
RERUN = ("interpret.json schema {schema} predates the probe-capacity curve: run python -m graphpath.interpret "
         "RUN_DIR again")
WHERE = {"target": "the target token", "edges": "the edge tokens"}


class _Old(Exception):
    pass


def _capacity(run: Run) -> tuple[dict, dict]:
    """(interpret.json, {group: its `capacity`}); _Old when the file has no curve."""
    doc = _read(run, "interpret")
    curves = {name: g["capacity"] for name, g in doc["groups"].items() if "capacity" in g}
    if doc.get("schema", 0) < SCHEMA or not curves:
        raise _Old(RERUN.format(schema=doc.get("schema")))
    return doc, curves


def _position(where: str, cap: dict) -> str:
    cells, ranks = cap[where]["selectivity"], cap["ranks"]
    if cells[0]["mean"] is None:
        return f"at {WHERE[where]} no control task (one type)"
    return (f"at {WHERE[where]} selectivity {_cell(cells[0])} at r = {ranks[0]} and {_cell(cells[-1])} at the full "
            f"width r = {ranks[-1]} (task AUROC {_cell(cap[where]['auroc'][0])} and {_cell(cap[where]['auroc'][-1])}, "
            f"control {_cell(cap[where]['control'][0])} and {_cell(cap[where]['control'][-1])})")


def _finding(where: str, found: dict) -> str:
    if where in found["untestable"]:
        return f"{WHERE[where]} not testable: {found['untestable'][where]}"
    p = found["p_adjusted"][where]
    return f"{WHERE[where]} {'holds' if found['holds'][where] else 'not shown'} (p {fmt(p)})"


def capacity_summary(run: Run) -> Text:
    try:
        doc, curves = _capacity(run)
    except _Old as old:
        return Text(str(old))
    first = next(iter(curves.values()))
    th = first["findings"]["thresholds"]
    parts = []
    for name, cap in curves.items():
        found = cap["findings"]
        parts.append(f"{GROUP_NAMES.get(name, name)} ({doc['groups'][name]['seeds']} seeds): "
                     + "; ".join(_position(w, cap) for w in ("target", "edges"))
                     + f"; selective by > {th['selectivity_margin']:g} at some rank: "
                     + ", ".join(_finding(w, found) for w in ("target", "edges")))
    shows = _shows(curves, th["selectivity_margin"])
    return Text(
        "Hewitt and Liang's own remedy for a control task that any probe solves is to limit the probe's capacity and "
        "read selectivity along that axis. Here the same probes read only the top r principal directions of each "
        f"fold's training rows (PCA on the training split only; r = {', '.join(map(str, first['ranks']))}; a single "
        "logit's weight is rank 1 already, so the dimension it reads is what bounds it: on r directions a probe can "
        "fit every labelling of at most r + 1 types, Cover 1965), at the last block, with the same folds and control "
        "draws. The whole curve is reported and no rank is singled out — "
        + " | ".join(parts)
        + f" (one-sided t over seeds per rank, Bonferroni over the {th['ranks']} ranks, Benjamini-Hochberg over the two "
        f"positions; the margin is the one fixed before the control task's first run). What it shows: {shows}. The "
        "principal directions are found without the labels, so a curve flat near 0 says the property is not among "
        "the stream's dominant directions — there the types are as readable as the property at every rank — not "
        "that the stream lacks it")


def _shows(curves: dict, margin: float) -> str:
    """What the curve shows, from the findings: where selectivity clears the margin at some rank, and
    whether the full-width probe's did not (then its ~0 was the control's ceiling)."""
    held = [(name, w) for name, cap in curves.items() for w in ("target", "edges") if cap["findings"]["holds"][w]]
    if not held:
        return "at no rank does selectivity clear the margin after the correction for choosing among ranks"
    where = ", ".join(f"{WHERE[w]} of the {GROUP_NAMES.get(n, n)} models" for n, w in held)
    ceiling = [w for n, w in held if (curves[n][w]["selectivity"][-1]["mean"] or 0) < margin]
    return (f"a probe held to fewer directions reads the property beyond the token's identity at {where}"
            + ("; there the full-width probe's small selectivity was the control task's ceiling, not a stream "
               "that holds only types" if ceiling else ""))


def fig_capacity(run: Run) -> Html:
    try:
        _, curves = _capacity(run)
    except _Old as old:
        return Html(f'<p class="not-run">{old}</p>')
    fig = make_subplots(rows=2, cols=2, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=("target token: AUROC", "edge tokens: AUROC",
                                        "target token: selectivity", "edge tokens: selectivity"))
    colours = dict(zip(curves, ("#1f77b4", "#d62728", "#2ca02c")))
    for col, where in enumerate(("target", "edges"), 1):
        for name, cap in curves.items():
            label, x = GROUP_NAMES.get(name, name), cap["ranks"]
            for metric, dash, what in (("auroc", "solid", "task"), ("control", "dot", "control task")):
                cells = cap[where][metric]
                fig.add_trace(go.Scatter(x=x, y=[c["mean"] for c in cells], name=f"{label}: {what}",
                                         legendgroup=f"{name}-{metric}", showlegend=col == 1,
                                         line=dict(dash=dash, color=colours[name]), error_y=_error_bars(cells)),
                              row=1, col=col)
            cells = cap[where]["selectivity"]
            fig.add_trace(go.Scatter(x=x, y=[c["mean"] for c in cells], name=f"{label}: selectivity",
                                     legendgroup=f"{name}-selectivity", showlegend=col == 1,
                                     line=dict(color=colours[name]), error_y=_error_bars(cells)), row=2, col=col)
        margin = next(iter(curves.values()))["findings"]["thresholds"]["selectivity_margin"]
        fig.add_hline(y=margin, line=dict(dash="dash", color="grey"), row=2, col=col)
    fig.update_xaxes(type="log", tickvals=next(iter(curves.values()))["ranks"], title_text="rank r of the probe's input",
                     row=2)
    fig.update_layout(template=TEMPLATE, height=560, margin=dict(t=40))
    return plotly_figure(fig, "capacity", "Probes that read only the top r principal directions of each fold's "
                                          "training rows, at the last block: out-of-fold AUROC on the task (solid) "
                                          "and on Hewitt and Liang's control task (dotted), and selectivity = task − "
                                          "control; the dashed line is the finding's margin. Bars are 95% intervals "
                                          "over seeds; the full width is the ordinary probe of the figure above.")


CAPACITY = {"capacity_summary": capacity_summary, "fig_capacity": fig_capacity}
