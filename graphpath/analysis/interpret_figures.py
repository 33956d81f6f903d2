"""Figures of interpret.json (graphpath.analysis.interpret): interactive HTML, one file each.

    interpret_probes.html    AUROC per layer at the target and edge tokens, with the control task (Hewitt
                             and Liang 2019) and the label-permutation baseline
    interpret_patching.html  share of the output gap restored, per layer and per head
"""
from __future__ import annotations

from pathlib import Path

from plotly.subplots import make_subplots

from graphpath_common.figures import write_html


def _errors(cells: list[dict]) -> dict:
    """Plotly asymmetric error bars from {mean, ci95} cells (no bar where there is no interval)."""
    up = [c["ci95"][1] - c["mean"] if c.get("ci95") and c["mean"] is not None else 0 for c in cells]
    down = [c["mean"] - c["ci95"][0] if c.get("ci95") and c["mean"] is not None else 0 for c in cells]
    return dict(type="data", symmetric=False, array=up, arrayminus=down)


NAMES = {"auroc": "task", "control": "control task (random label per type)",
         "permuted": "label-permutation baseline"}


def label(point: str) -> str:
    return "embed" if "embed" in point else f"block {point.split('.')[1]}"


def figures(doc: dict, directory: Path) -> list[str]:
    paths = []
    for name, g in doc["groups"].items():
        x = [label(p) for p in g["points"]]
        fig = make_subplots(rows=1, cols=2, subplot_titles=("target token: target within k hops",
                                                            "edge tokens: endpoint within k hops"))
        for col, where in enumerate(("target", "edges"), 1):
            for metric, dash in (("auroc", "solid"), ("control", "dot"), ("permuted", "dash")):
                cells = g[where][metric]
                fig.add_scatter(x=x, y=[c["mean"] for c in cells], error_y=_errors(cells), line_dash=dash,
                                name=NAMES[metric], showlegend=col == 1, row=1, col=col)
        fig.update_yaxes(range=[0.4, 1.02], title_text="out-of-fold AUROC (mean over k, 95% over seeds)")
        fig.update_layout(title=f"Linear probes, {name} models ({g['seeds']} seeds)", height=380)
        paths.append(write_html(fig, directory / f"interpret_probes_{name}.html"))
        patch = g["patching"]
        pfig = make_subplots(rows=1, cols=2, subplot_titles=("per layer", "per head"))
        for kind in ("target", "edges"):
            cells = [patch["layers"][p][kind] for p in patch["layers"]]
            pfig.add_bar(x=[label(p) for p in patch["layers"]], y=[c["mean"] for c in cells], error_y=_errors(cells),
                         name=f"{kind} tokens", row=1, col=1)
        heads = list(patch["heads"])
        pfig.add_bar(x=heads, y=[patch["heads"][h]["mean"] for h in heads],
                     error_y=_errors([patch["heads"][h] for h in heads]), name="head output", row=1, col=2)
        pfig.update_layout(title=f"Activation patching (clean target into another target), {name} models",
                           yaxis_title="share of the output gap restored", height=360, barmode="group")
        paths.append(write_html(pfig, directory / f"interpret_patching_{name}.html"))
    return [str(p) for p in paths]
