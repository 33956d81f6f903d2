"""Figures of `python -m experiments.partial`: test MSE on the fine-tuning task against trainable
parameters (per pair and body; x = a variant whose jobs did not all converge), and every
out-of-distribution set's MSE per variant."""
from __future__ import annotations

from pathlib import Path


def error_bars(blocks: list[dict]) -> dict:
    means = [b["mean"] for b in blocks]
    return dict(type="data", symmetric=False,
                array=[(b["ci95"] or [m, m])[1] - m for b, m in zip(blocks, means)],
                arrayminus=[m - (b["ci95"] or [m, m])[0] for b, m in zip(blocks, means)])


def write_figures(doc: dict, folder: Path) -> list[str]:
    import plotly.graph_objects as go

    from graphpath_common.figures import write_html

    folder.mkdir(parents=True, exist_ok=True)
    loss = go.Figure()
    for pair in dict.fromkeys(r["pair"] for r in doc["variants"]):
        for body in doc["study"]["bodies"]:
            rows = sorted((r for r in doc["variants"] if r["pair"] == pair and r["body"] == body),
                          key=lambda r: r["trainable"])
            loss.add_scatter(x=[r["trainable"] for r in rows], y=[r["test"]["loss"]["mean"] for r in rows],
                             error_y=error_bars([r["test"]["loss"] for r in rows]), mode="markers+text",
                             text=[f"{r['name'].rsplit('-', 1)[0]} (lr {r['lr']:g})" for r in rows],
                             textposition="top center", name=f"{pair}, {body} body",
                             marker=dict(symbol=["circle" if r["converged"] else "x" for r in rows]))
    loss.update_layout(title="Test MSE on the fine-tuning task vs trainable parameters (lr chosen on validation; "
                             "95% CI over seeds; x = not converged)",
                       xaxis=dict(type="log", title="trainable parameters"), yaxis=dict(type="log", title="test MSE"))
    sets = go.Figure()
    with_sets = [r for r in doc["variants"] if r["sets"]]
    for name in sorted({s for r in with_sets for s in r["sets"]}):
        blocks = [r["sets"][name]["mse"] for r in with_sets]
        sets.add_bar(x=[f"{r['pair']}/{r['name']}" for r in with_sets], y=[b["mean"] for b in blocks],
                     error_y=error_bars(blocks), name=name)
    sets.update_layout(barmode="group", title="MSE on every out-of-distribution set per variant (95% CI over seeds)",
                       yaxis=dict(type="log", title="MSE"))
    return [str(write_html(loss, folder / "partial-finetune.html")), str(write_html(sets, folder / "partial-sets.html"))]
