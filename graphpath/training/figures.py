"""Training figures: total loss, per-label losses with detected phase changes, confusion heatmap.

Each figure is interactive plotly HTML (using figures/plotly.min.js, so it opens offline) with a PNG
beside it, drawn again with matplotlib and written by graphpath_common.figures.write_png (the one PNG
writer: plotly's own static export, kaleido, needs a Chrome binary).
Files: figures/loss.html, figures/label_loss-<stage>.html, figures/confusion-<stage>.html.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from graphpath_common.figures import write_html, write_png
from graphpath_common.rundir import RunDir, read_json

from graphpath.evaluation.predict import predict
from graphpath.evaluation.scores import confusion_matrix
from graphpath.training.stage import Runtime, heldout_set

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"]


def loss_figure(metrics: list[dict]) -> go.Figure:
    fig = go.Figure()
    offset = max((m["step"] for m in metrics if m["stage"] == "pretrain"), default=0)
    for stage in ("pretrain", "finetune"):
        shift = offset if stage == "finetune" else 0  # fine-tuning continues the step axis
        rows = [m for m in metrics if m["stage"] == stage and m["step"] > 0]
        if rows:
            fig.add_scatter(x=[m["step"] + shift for m in rows], y=[m["loss"] for m in rows], mode="lines",
                            name=f"{stage} (train batches)")
        held = [m for m in metrics if m["stage"] == stage and "eval_loss" in m]
        if held:
            fig.add_scatter(x=[m["step"] + shift for m in held], y=[m["eval_loss"] for m in held],
                            mode="lines+markers", name=f"{stage} (held-out {stage} set)")
    if offset and any(m["stage"] == "finetune" for m in metrics):
        fig.add_vline(x=offset, line_dash="dot", line_color="grey")
    fig.update_layout(title="Mean squared error (dotted: fine-tuning starts)", xaxis_title="step",
                      yaxis_title="MSE", yaxis_type="log", template="plotly_white")
    return fig


def label_loss_figure(metrics: list[dict], phase_changes: list[dict], stage: str) -> go.Figure:
    rows = [m for m in metrics if m["stage"] == stage]
    labels = sorted({label for m in rows for label in m.get("label_loss", {})}, key=int)
    fig = go.Figure()
    for k, label in enumerate(labels):
        points = [(m["step"], m["label_loss"][label]) for m in rows if label in m["label_loss"]]
        colour = PALETTE[k % len(PALETTE)]
        fig.add_scatter(x=[p[0] for p in points], y=[max(p[1], 1e-8) for p in points], mode="lines",
                        name=f"label {label}", line={"color": colour})
        marks = [c for c in phase_changes if c["stage"] == stage and c["label"] == label]
        if marks:
            fig.add_scatter(x=[c["step"] for c in marks], y=[np.sqrt(c["loss_before"] * c["loss_after"]) for c in marks],
                            mode="markers", marker={"symbol": "x", "size": 12, "color": colour},
                            name=f"phase change, label {label}", showlegend=False,
                            hovertext=[f"label {label}: {c['loss_before']:.3g} -> {c['loss_after']:.3g} at step {c['step']}"
                                       for c in marks])
    for c in phase_changes:
        if c["stage"] == stage and c["label"] == "all":
            fig.add_vline(x=c["step"], line_dash="dot", line_color="grey")
    fig.update_layout(title=f"{stage}: MSE per label (x = detected phase change; dotted = overall)",
                      xaxis_title="step", yaxis_title="MSE", yaxis_type="log", template="plotly_white")
    return fig


def confusion_figure(counts: np.ndarray, title: str, lowest: int = 1) -> go.Figure:
    """Heatmap of `metrics.confusion_matrix` counts (L, L) over labels lowest..: rows are the labels
    that occur."""
    present = np.nonzero(counts.sum(axis=1))[0]
    rows = counts[present] / counts[present].sum(axis=1, keepdims=True)  # normalized per label
    with np.errstate(divide="ignore"):
        z = np.where(rows > 0, np.log10(rows), np.nan)
    ticks = [0, -1, -2, -3, -4]
    fig = go.Figure(go.Heatmap(
        z=z, x=[str(c + lowest) for c in range(counts.shape[1])], y=[str(r + lowest) for r in present],
        colorscale="Viridis",
        zmin=-4, zmax=0, colorbar={"title": "fraction", "tickvals": ticks, "ticktext": [f"{10 ** t:g}" for t in ticks]},
        customdata=counts[present], hovertemplate="label %{y}, predicted %{x}: %{customdata} graphs<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="prediction, rounded and clipped to the labels", yaxis_title="label", template="plotly_white")
    return fig


def matplotlib_copy(fig: go.Figure):
    """A matplotlib figure drawing the same lines, markers or heatmap as the plotly `fig`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for trace in fig.data:
        if trace.type == "heatmap":
            image = axes.imshow(np.asarray(trace.z, dtype=float), aspect="auto", origin="lower", vmin=-4, vmax=0)
            axes.set_xticks(range(len(trace.x)), trace.x)
            axes.set_yticks(range(len(trace.y)), trace.y)
            figure.colorbar(image, ax=axes, label="log10 fraction")
        elif trace.type == "scatter":
            style = "x" if trace.mode == "markers" else "-"
            axes.plot(trace.x, trace.y, style, label=trace.name if trace.showlegend is not False else None)
    if fig.layout.yaxis.type == "log":
        axes.set_yscale("log")
    axes.set_title(fig.layout.title.text or "", fontsize=9)
    axes.set_xlabel(fig.layout.xaxis.title.text or "")
    axes.set_ylabel(fig.layout.yaxis.title.text or "")
    if any(t.type == "scatter" for t in fig.data):
        axes.legend(fontsize=7)
    figure.tight_layout()
    return figure


def write_figure(fig: go.Figure, path: Path, png: bool = True) -> None:
    """`path`.html and, if `png`, `path`.png beside it (both atomic)."""
    write_html(fig, path.with_suffix(".html"))
    if not png:
        return
    import matplotlib.pyplot as plt

    figure = matplotlib_copy(fig)
    try:
        write_png(figure, path.with_suffix(".png"))
    finally:
        plt.close(figure)


def write_stage_figures(run_dir: Path, model, config, stage: str, runtime: Runtime) -> None:
    """All figures a finished stage contributes, from metrics.jsonl, phases.json and its held-out set."""
    from graphpath.core.config import stage_specs

    png = os.environ.get("GRAPHPATH_NO_PNG") is None
    run = RunDir(run_dir)
    figures = run.figures
    metrics = run.read_metrics()
    phases = read_json(run.phases)["phase_changes"]
    write_figure(loss_figure(metrics), figures / "loss", png)
    write_figure(label_loss_figure(metrics, phases, stage), figures / f"label_loss-{stage}", png)
    spec = stage_specs(config)[stage]
    stage_config = config.train if stage == "pretrain" else config.finetune
    heldout = heldout_set(config, spec, stage, stage_config)
    pred = predict(model, heldout, runtime.device, autocast=runtime.autocast, buckets=stage_config.buckets,
                   pack=stage_config.pack)
    lowest = 1 if spec.task == "distance" else 0  # data_gen.tasks: other tasks' labels start at 0
    counts = confusion_matrix(pred, heldout.label.numpy(), spec.max_vertices, lowest)
    write_figure(confusion_figure(counts, f"{stage}: held-out labels vs predictions (row-normalized, log colour)",
                                  lowest),
                 figures / f"confusion-{stage}", png)
