"""Figures for perturb.json documents: recovery curves, loss right after perturbing vs sigma, and
recovery rate vs sigma, with one or more models (e.g. learned and hand-built) on the same axes.

Each figure is interactive plotly HTML with plotly.js written once beside them (offline). Input
is the list of perturb.json documents themselves, so anything reading the files can redraw them.
"""
from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from graphpath_common.figures import write_html

DASHES = ("solid", "dash", "dot", "dashdot")


def _colour(sigmas: list[float], sigma: float) -> str:
    return sample_colorscale("Viridis", [0.9 * sigmas.index(sigma) / max(1, len(sigmas) - 1)])[0]


def _title(docs: list[dict]) -> str:
    return f"{' vs '.join(doc['name'] for doc in docs)} · {docs[0]['kind']} perturbation"


def curves_figure(docs: list[dict]) -> go.Figure:
    """One line per (model, sigma, seed): held-out loss during recovery; colour = sigma, dash = model."""
    sigmas = sorted({run["sigma"] for doc in docs for run in doc["runs"]})
    fig, shown = go.Figure(), set()
    for index, doc in enumerate(docs):
        for run in doc["runs"]:
            points = [(s, max(v, 1e-12)) for s, v in run["curve"] if v is not None]
            group = (doc["name"], run["sigma"])
            fig.add_trace(go.Scatter(
                x=[s for s, _ in points], y=[v for _, v in points], mode="lines+markers",
                legendgroup=str(group), name=f"{doc['name']} σ = {run['sigma']:g}", showlegend=group not in shown,
                line=dict(color=_colour(sigmas, run["sigma"]), dash=DASHES[index % len(DASHES)]),
                hovertemplate=f"{doc['name']} σ {run['sigma']:g}, seed {run['seed']}<br>step %{{x}}: %{{y:.3g}}"
                              f"<br>{', '.join(run['parameters'][:3])}<extra></extra>"))
            shown.add(group)
    fig.add_hline(y=docs[0]["threshold"], line_dash="dash", annotation_text="recovery threshold")
    fig.update_layout(title=f"Recovery under gradient descent — {_title(docs)}", xaxis_title="step",
                      yaxis_title="held-out MSE", yaxis_type="log", template="plotly_white")
    return fig


def after_figure(docs: list[dict]) -> go.Figure:
    """Loss right after perturbing (and the best loss reached while recovering) against sigma."""
    fig = go.Figure()
    for doc in docs:
        runs = [r for r in doc["runs"] if r["loss_after"] is not None]
        for key, label, symbol in (("loss_after", "right after", "circle"), ("loss_best", "best during recovery", "x")):
            fig.add_trace(go.Scatter(x=[r["sigma"] for r in runs], y=[max(r[key] or 1e-12, 1e-12) for r in runs],
                                     mode="markers", marker_symbol=symbol, name=f"{doc['name']}: {label}",
                                     text=[f"seed {r['seed']}" for r in runs]))
        if doc["loss_before"] is not None:
            fig.add_hline(y=max(doc["loss_before"], 1e-12), line_dash="dot", annotation_text=f"{doc['name']} before")
    fig.update_layout(title=f"Loss right after perturbing — {_title(docs)}", xaxis_title="σ (relative)",
                      yaxis_title="held-out MSE", yaxis_type="log", template="plotly_white")
    return fig


def rate_figure(docs: list[dict]) -> go.Figure:
    """Share of runs recovered against sigma, per model, with 95% Wilson intervals."""
    fig = go.Figure()
    for index, doc in enumerate(docs):
        rows = {float(sigma): r for sigma, r in doc["recovery"].items()}
        fig.add_trace(go.Scatter(
            x=list(rows), y=[r["rate"] for r in rows.values()], mode="lines+markers", name=doc["name"],
            line=dict(dash=DASHES[index % len(DASHES)]),
            error_y=dict(type="data", symmetric=False, array=[r["ci95"][1] - r["rate"] for r in rows.values()],
                         arrayminus=[r["rate"] - r["ci95"][0] for r in rows.values()])))
    fig.update_layout(title=f"Recovered within {docs[0]['steps']} steps (95% Wilson intervals) — {_title(docs)}",
                      xaxis_title="σ", yaxis_title="share of runs recovered",
                      yaxis_range=[-0.05, 1.05], template="plotly_white")
    return fig


def write_figures(docs: list[dict], out_dir: Path, prefix: str = "perturb") -> list[str]:
    """Write `{prefix}_curves.html`, `{prefix}_after.html`, `{prefix}_rate.html`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sigmas = {float(r["sigma"]) for doc in docs for r in doc["runs"]}
    paths = []
    for stem, fig in (("curves", curves_figure(docs)), ("after", after_figure(docs)), ("rate", rate_figure(docs))):
        if stem != "curves" and len(sigmas) > 1 and min(sigmas) > 0:
            fig.update_xaxes(type="log")
        paths.append(str(write_html(fig, out_dir / f"{prefix}_{stem}.html")))
    return paths
