"""A dataset's label-distribution figure: interactive plotly HTML, and a matplotlib PNG beside it.

The HTML embeds plotly.js (no network needed to view it); the PNG uses matplotlib's Agg
backend, which needs no browser or download (kaleido is not used).
"""
from __future__ import annotations

import os
from pathlib import Path


def _atomic_write(path: Path, write) -> None:
    temporary = path.with_name(f".tmp-{path.name}")
    write(temporary)
    os.replace(temporary, path)


def label_distribution(label_counts: list[int], unreachable: int, title: str, folder) -> list[Path]:
    """Write label_distribution.html and .png into `folder`; returns their paths.

    `label_counts[d]` graphs have label d; label `unreachable` is drawn as "unreachable".
    """
    import plotly.graph_objects as go

    folder = Path(folder)
    labels = [d for d, count in enumerate(label_counts) if count]
    names = ["unreachable" if d == unreachable else str(d) for d in labels]
    counts = [label_counts[d] for d in labels]
    total = max(sum(counts), 1)
    figure = go.Figure(go.Bar(x=names, y=counts, text=[f"{c / total:.1%}" for c in counts],
                              hovertemplate="label %{x}: %{y} graphs (%{text})<extra></extra>"))
    figure.update_layout(title=title, xaxis_title="label (BFS distance 1 -> target)",
                         yaxis_title="graphs", xaxis_type="category", template="plotly_white")
    html = folder / "label_distribution.html"
    _atomic_write(html, lambda p: figure.write_html(p, include_plotlyjs=True, full_html=True))

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6, 3.5), dpi=100)
    axis.bar(names, counts, color="#4c72b0")
    axis.set_xlabel("label (BFS distance 1 -> target)")
    axis.set_ylabel("graphs")
    axis.set_title(title, fontsize=10)
    fig.tight_layout()
    png = folder / "label_distribution.png"
    _atomic_write(png, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return [html, png]
