"""A dataset's label-distribution figure (interactive HTML and a PNG beside it)."""
from __future__ import annotations

from pathlib import Path

from graphpath_common.figures import write_html, write_png


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
    html = write_html(figure, folder / "label_distribution.html")

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6, 3.5), dpi=100)
    axis.bar(names, counts, color="#4c72b0")
    axis.set_xlabel("label (BFS distance 1 -> target)")
    axis.set_ylabel("graphs")
    axis.set_title(title, fontsize=10)
    fig.tight_layout()
    png = write_png(fig, folder / "label_distribution.png", dpi=100)
    plt.close(fig)
    return [html, png]
