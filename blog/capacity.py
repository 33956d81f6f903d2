"""The probe-capacity curve of the "inside the models" section: interpret.json's `capacity` (schema 5;
graphpath.analysis.probe_capacity, docs/contracts.md).

    capacity_summary Text    selectivity at the lowest and the full rank per group and position, the
                             "selective at some rank" test (Bonferroni over ranks) labelled exploratory
                             on its own sample and, as the finding, on the fresh sample (schema 6:
                             `capacity.confirm`, p from the page-wide family), what the curves measured
    fig_capacity     plotly  per position: task, control and permutation AUROC, and selectivity on both
                             samples, against the rank r of the probe's input, 95% intervals over seeds

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


def _finding(where: str, found: dict, family: dict | None = None, key: str | None = None) -> str:
    """One position's verdict: from the page-wide family when given (its BH-adjusted p), else the
    capacity test's own."""
    if where in found["untestable"]:
        return f"{WHERE[where]} not testable: {found['untestable'][where]}"
    if family is not None and key in family["p_adjusted"]:
        p, holds = family["p_adjusted"][key], family["holds"][key]
    else:
        p, holds = found["p_adjusted"][where], found["holds"][where]
    return f"{WHERE[where]} {'holds' if holds else 'not shown'} (p {fmt(p)})"


def _span(values: list[int]) -> str:
    return str(min(values)) if min(values) == max(values) else f"{min(values)}–{max(values)}"


def _below(c: dict) -> bool:
    return bool(c.get("ci95")) and c["ci95"][1] < 0


def _reading(curves: dict) -> str:
    """What the curves measured, from the data alone: per group and position with a control task, the
    ranks whose selectivity interval lies wholly below 0 (the types are read better than the
    property there), and the ranks where the label-permutation baseline's mean AUROC is above the
    task's. No cause is claimed."""
    parts = []
    for name, cap in curves.items():
        for where in ("target", "edges"):
            cells = cap[where]
            if cells["selectivity"][0]["mean"] is None:
                continue
            label = f"{WHERE[where]} of the {GROUP_NAMES.get(name, name)} models"
            below = [f"r = {r}: {_cell(c)}" for r, c in zip(cap["ranks"], cells["selectivity"]) if _below(c)]
            if below:
                parts.append(f"at {label} selectivity lies wholly below 0 at " + ", ".join(below)
                             + " (the control task, types alone, is read better than the property)")
            if "permuted" in cells:
                over = [f"r = {r}: {_cell(p)} against the task's {_cell(t)}" for r, p, t in
                        zip(cap["ranks"], cells["permuted"], cells["auroc"])
                        if p["mean"] is not None and t["mean"] is not None and p["mean"] > t["mean"]]
                if over:
                    parts.append(f"at {label} the label-permutation baseline (the real labels shuffled within each "
                                 "type) reads a higher mean AUROC than the task at " + ", ".join(over))
    return "; ".join(parts)


def capacity_summary(run: Run) -> Text:
    try:
        doc, curves = _capacity(run)
    except _Old as old:
        return Text(str(old))
    first = next(iter(curves.values()))
    th = first["findings"]["thresholds"]
    family = doc.get("findings")  # interpret.json schema 6: the page-wide BH family
    confirmed = all("confirm" in cap for cap in curves.values())
    parts = []
    for name, cap in curves.items():
        found = cap["findings"]
        parts.append(f"{GROUP_NAMES.get(name, name)} ({doc['groups'][name]['seeds']} seeds): "
                     + "; ".join(_position(w, cap) for w in ("target", "edges"))
                     + f"; selective by > {th['selectivity_margin']:g} at some rank (exploratory, its own "
                     "correction): " + ", ".join(_finding(w, found) for w in ("target", "edges")))
    text = (
        "Hewitt and Liang's own remedy for a control task that any probe solves is to limit the probe's capacity and "
        "read selectivity along that axis. Here the same probes read only the top r principal directions of each "
        f"fold's training rows (PCA on the training split only; r = {', '.join(map(str, first['ranks']))}; a single "
        "logit's weight is rank 1 already, so the dimension it reads is what bounds it: on r directions a probe can "
        "fit every labelling of at most r + 1 types, Cover 1965), at the last block, with the same folds and control "
        "draws. EXPLORATORY: this rank axis was chosen after the full-width selectivity test failed, on these models "
        "and this sample of graphs, so a result on this sample is not a finding; a confirmation on fresh graphs is "
        "needed. The whole curve is reported — " + " | ".join(parts)
        + f" (one-sided t over seeds per rank, Bonferroni over the {th['ranks']} ranks, Benjamini-Hochberg over the two "
        "positions; the margin is the one fixed before the control task's first run)")
    if confirmed:
        sample = first["confirm"]["sample"]
        confirm = []
        for name, cap in curves.items():
            again = cap["confirm"]
            drawn = again["sample"]
            confirm.append(f"{GROUP_NAMES.get(name, name)} ({_span(drawn['graphs'])} graphs per seed, "
                           f"{_span(drawn['also_in_exploratory'])} of them also in the first sample): "
                           + "; ".join(_position(w, again) for w in ("target", "edges"))
                           + "; selective at some rank: " + ", ".join(
                               _finding(w, again["findings"], family, f"{name}/capacity_{w}") for w in ("target", "edges")))
        text += (
            f". The confirmation, which is the finding: the same test, rule unchanged, on a fresh sample (draw "
            f"{sample['draw']} of the {sample['split']} split, drawn independently of the first; the space of small "
            "graphs is small, so some of its graphs also occur in the first sample: it is kept as drawn rather than "
            "filtered, so that it comes from the same distribution) — " + " | ".join(confirm)
            + (" (p: Benjamini-Hochberg over every finding of this section, both groups together)" if family else ""))
    else:
        text += (". No confirmatory sample was scored (interpret ran with --no-confirm or predates it): the result "
                 "above stays exploratory; what is missing is the same test on graphs drawn apart from these")
    readings = [(what, _reading(picked)) for what, picked in
                (("on the first (exploratory) sample", curves),
                 ("on the fresh sample", {n: c["confirm"] for n, c in curves.items()} if confirmed else {}))]
    reading = " — ".join(f"{what}: {said}" for what, said in readings if said)
    return Text(text + (f". What the curves measured, {reading}" if reading else "")
                + ". The principal directions are found without the labels: a selectivity near or "
                "below 0 at a rank says that there the probe reads the token types as well as or better than the "
                "property, not that the stream lacks the property")


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
            for metric, dash, what in (("auroc", "solid", "task"), ("control", "dot", "control task"),
                                       ("permuted", "dash", "label permutation")):
                cells = cap[where].get(metric)
                if cells is None:
                    continue
                fig.add_trace(go.Scatter(x=x, y=[c["mean"] for c in cells], name=f"{label}: {what}",
                                         legendgroup=f"{name}-{metric}", showlegend=col == 1,
                                         line=dict(dash=dash, color=colours[name]), error_y=_error_bars(cells)),
                              row=1, col=col)
            for sample, dash, what in ((cap, "solid", "selectivity (exploratory)"),
                                       (cap.get("confirm"), "dashdot", "selectivity (fresh sample)")):
                if sample is None:
                    continue
                cells = sample[where]["selectivity"]
                fig.add_trace(go.Scatter(x=x, y=[c["mean"] for c in cells], name=f"{label}: {what}",
                                         legendgroup=f"{name}-{what}", showlegend=col == 1,
                                         line=dict(color=colours[name], dash=dash), error_y=_error_bars(cells)),
                              row=2, col=col)
        margin = next(iter(curves.values()))["findings"]["thresholds"]["selectivity_margin"]
        fig.add_hline(y=margin, line=dict(dash="dash", color="grey"), row=2, col=col)
    fig.update_xaxes(type="log", tickvals=next(iter(curves.values()))["ranks"], title_text="rank r of the probe's input",
                     row=2)
    fig.update_layout(template=TEMPLATE, height=560, margin=dict(t=40))
    return plotly_figure(fig, "capacity", "Probes that read only the top r principal directions of each fold's "
                                          "training rows, at the last block: out-of-fold AUROC on the task (solid), "
                                          "on Hewitt and Liang's control task (dotted) and on the label-permutation "
                                          "baseline (dashed), on the exploratory sample; below, selectivity = task − "
                                          "control on the exploratory sample (solid; the rank axis was chosen after "
                                          "the full-width test failed on it) and on the fresh confirmatory sample "
                                          "(dash-dot); the dashed line is the finding's margin. Bars are 95% "
                                          "intervals over seeds; the full width is the ordinary probe of the figure "
                                          "above.")


CAPACITY = {"capacity_summary": capacity_summary, "fig_capacity": fig_capacity}
