"""Figures of `python -m experiments.mixture`: test MSE against input coverage per model size
(x = a cell whose jobs did not all converge, diamond = a test using vertex ids training never
used), the mixtures x tests matrix for the largest model, and MSE against N per cell."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_figures(doc: dict, folder: Path) -> list[str]:
    import plotly.graph_objects as go

    from graphpath_common.figures import write_html

    folder.mkdir(parents=True, exist_ok=True)
    scatter = go.Figure()
    for model in doc["models"]:
        mine = [c for c in doc["cells"] if c["model"] == model["index"]]
        symbols = ["x" if not c["converged"] else "diamond" if c["unseen_ids"] > 0 else "circle" for c in mine]
        scatter.add_scatter(x=[c["coverage"] for c in mine], y=[c["mse"]["mean"] for c in mine], mode="markers",
                            name=f"N={model['N']:,}", marker=dict(symbol=symbols),
                            text=[f"{c['mixture']} -> {c['test']}, label support {c['label_support']:.2f}" for c in mine],
                            error_y=dict(type="data", symmetric=False,
                                         array=[(c["mse"]["ci95"] or [0, c["mse"]["mean"]])[1] - c["mse"]["mean"] for c in mine],
                                         arrayminus=[c["mse"]["mean"] - (c["mse"]["ci95"] or [c["mse"]["mean"], 0])[0]
                                                     for c in mine]))
    scatter.update_layout(title="Test MSE vs input coverage (x: not converged; diamond: unseen vertex ids)",
                          xaxis=dict(title="coverage of the test inputs by the training mixture"),
                          yaxis=dict(type="log", title="MSE (mean, 95% CI over seeds)"))
    largest = max(doc["models"], key=lambda m: m["N"])["index"]
    mixtures, tests = list(doc["study"]["mixtures"]), list(doc["study"]["tests"])
    by = {(c["mixture"], c["test"], c["model"]): c for c in doc["cells"]}
    z = [[by[(mix, t, largest)]["mse"]["mean"] for t in tests] for mix in mixtures]
    matrix = go.Figure(go.Heatmap(z=np.log10(np.maximum(np.array(z), 1e-12)).tolist(), x=tests, y=mixtures,
                                  colorbar=dict(title="log10 MSE")))
    matrix.update_layout(title="log10 test MSE, largest model (rows: pre-training mixture)")
    size = go.Figure()
    ordered = sorted(doc["models"], key=lambda m: m["N"])
    for mix in mixtures:
        for t in tests:
            row = [by[(mix, t, m["index"])] for m in ordered]
            size.add_scatter(x=[m["N"] for m in ordered], y=[c["mse"]["mean"] for c in row], mode="lines+markers",
                             name=f"{mix} -> {t}", text=[f"coverage {c['coverage']:.2f}" for c in row],
                             marker=dict(color=[c["coverage"] for c in row], cmin=0, cmax=1, colorscale="Viridis"))
    size.update_layout(title="Test MSE vs model size per (mixture, test); markers coloured by coverage",
                       xaxis=dict(type="log", title="N (non-embedding parameters)"), yaxis=dict(type="log", title="MSE"))
    return [str(write_html(scatter, folder / "mixture-coverage.html")), str(write_html(matrix, folder / "mixture-matrix.html")),
            str(write_html(size, folder / "mixture-size.html"))]
