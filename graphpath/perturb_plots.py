"""Figures for `perturb.json`: recovery curves, loss right after perturbing vs sigma, recovery rate.

Each figure is interactive plotly HTML (plotly.js written once beside them, so the pages work
offline). Input is the perturb.json document itself, so the blog can redraw them from the file.
"""
from __future__ import annotations

import os
from pathlib import Path

import plotly.graph_objects as go
from plotly.colors import sample_colorscale


def _colour(sigmas: list[float], sigma: float) -> str:
    position = sigmas.index(sigma) / max(1, len(sigmas) - 1)
    return sample_colorscale("Viridis", [0.9 * position])[0]


def _title(doc: dict) -> str:
    settings = doc["settings"]
    return f"{doc['target']['model']} · {settings['kind']} perturbation"


def curves_figure(doc: dict) -> go.Figure:
    sigmas = sorted({run["sigma"] for run in doc["runs"]})
    fig = go.Figure()
    shown = set()
    for run in doc["runs"]:
        steps = [s for s, v in run["curve"] if v is not None]
        losses = [max(v, 1e-12) for s, v in run["curve"] if v is not None]
        fig.add_trace(go.Scatter(x=steps, y=losses, mode="lines+markers", legendgroup=str(run["sigma"]),
                                 name=f"σ = {run['sigma']:g}", showlegend=run["sigma"] not in shown,
                                 line=dict(color=_colour(sigmas, run["sigma"])),
                                 hovertemplate=f"σ {run['sigma']:g}, seed {run['seed']}<br>step %{{x}}: %{{y:.3g}}"
                                               f"<br>{', '.join(run['parameters'][:3])}<extra></extra>"))
        shown.add(run["sigma"])
    fig.add_hline(y=doc["threshold"], line_dash="dash", annotation_text="recovery threshold")
    fig.update_layout(title=f"Recovery under gradient descent — {_title(doc)}", xaxis_title="step",
                      yaxis_title="held-out MSE", yaxis_type="log", template="plotly_white")
    return fig


def after_figure(doc: dict) -> go.Figure:
    runs = [run for run in doc["runs"] if run["loss_after"] is not None]
    fig = go.Figure(go.Scatter(x=[r["sigma"] for r in runs], y=[max(r["loss_after"], 1e-12) for r in runs],
                               mode="markers", name="right after", text=[f"seed {r['seed']}" for r in runs]))
    fig.add_trace(go.Scatter(x=[r["sigma"] for r in runs], y=[max(r["loss_best"], 1e-12) for r in runs],
                             mode="markers", name="best after recovery", marker_symbol="x"))
    fig.add_hline(y=max(doc["loss_before"], 1e-12), line_dash="dot", annotation_text="before")
    fig.update_layout(title=f"Loss right after perturbing — {_title(doc)}", xaxis_title="σ (relative)",
                      yaxis_title="held-out MSE", yaxis_type="log", template="plotly_white")
    return fig


def rate_figure(doc: dict) -> go.Figure:
    rates = {float(sigma): rate for sigma, rate in doc["recovery_rate"].items()}
    fig = go.Figure(go.Scatter(x=list(rates), y=list(rates.values()), mode="lines+markers", name="recovered"))
    if doc["basin_radius"] is not None:
        fig.add_vline(x=doc["basin_radius"], line_dash="dash", annotation_text=f"basin radius {doc['basin_radius']:g}")
    fig.update_layout(title=f"Recovery rate within {doc['settings']['steps']} steps — {_title(doc)}",
                      xaxis_title="σ (relative)", yaxis_title="fraction of seeds recovered",
                      yaxis_range=[-0.05, 1.05], template="plotly_white")
    return fig


def write_figures(doc: dict, out_dir: Path) -> list[str]:
    """Write the three figures; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, fig in (("perturb_curves", curves_figure(doc)), ("perturb_after", after_figure(doc)),
                      ("perturb_rate", rate_figure(doc))):
        if len({float(r["sigma"]) for r in doc["runs"]}) > 1 and stem != "perturb_curves":
            fig.update_xaxes(type="log" if min(float(r["sigma"]) for r in doc["runs"]) > 0 else "linear")
        path = out_dir / f"{stem}.html"
        tmp = out_dir / f".{stem}.tmp{os.getpid()}.html"
        fig.write_html(tmp, include_plotlyjs="directory", full_html=True)
        os.replace(tmp, path)
        paths.append(str(path))
    return paths
