"""Figures from an eval.json document: interactive plotly HTML, a matplotlib PNG beside each.

Every figure is drawn from the document alone (no model, no graphs), so any reader of eval.json
can redraw them. HTML files share one `plotly.min.js` in the figures folder (works offline).
PNGs come from matplotlib because plotly's static export (kaleido >= 1) needs a Chrome binary.

| file | what |
|---|---|
| confusion-<model>-<set> | true label x rounded prediction, each row normalized, log colour |
| grid-nt-<model>, grid-nd-<model> | MSE per (graph size n, target t) and per (n, true distance d), log colour |
| mse-by-set | MSE per set, one bar per model, 95% CI error bars, the study's values as markers |
| raw-<model>-<set> | raw (unrounded) output x true label, each label's column normalized, log colour |
| line-probe | answer on the path graph of every length vs the length, one line per model, y = x |
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from graphpath_common.figures import write_html, write_png  # noqa: E402

FLOOR = 1e-7  # MSE bars are drawn on a log axis; below this they are drawn at it


def _save(fig: go.Figure, mpl_fig, out_dir: Path, stem: str) -> list[str]:
    """Write stem.html (plotly) and stem.png (matplotlib) atomically; return their names."""
    html = write_html(fig, out_dir / f"{stem}.html")
    png = write_png(mpl_fig, out_dir / f"{stem}.png")  # no bbox "tight": it draws the figure twice
    plt.close(mpl_fig)
    return [html.name, png.name]


def _table(values) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in values], dtype=np.float64)


def confusion_figure(block: dict, title: str, out_dir: Path, stem: str) -> list[str]:
    labels = block["confusion"]["labels"]
    counts = np.asarray(block["confusion"]["counts"], dtype=np.float64)  # (L true, L predicted)
    present = counts.sum(axis=1) > 0
    rows = counts[present] / counts[present].sum(axis=1, keepdims=True)
    true_labels = [lab for lab, keep in zip(labels, present) if keep]
    fraction = np.where(rows > 0, rows, np.nan)
    exponent = np.log10(fraction)
    text = [[f"true {t}, predicted {p}: {int(c)} graphs ({f:.3g} of row)" for p, c, f in zip(labels, crow, frow)]
            for t, crow, frow in zip(true_labels, counts[present], rows)]
    ticks = list(range(-4, 1))
    fig = go.Figure(go.Heatmap(z=exponent, x=labels, y=true_labels, zmin=-4, zmax=0, colorscale="Viridis",
                               hoverinfo="text", text=text,
                               colorbar=dict(title="fraction of row", tickvals=ticks,
                                             ticktext=[f"1e{k}" for k in ticks])))
    fig.update_layout(title=title, xaxis_title="rounded prediction (clipped)", yaxis_title="true distance",
                      xaxis=dict(dtick=1), yaxis=dict(dtick=1, autorange="reversed"), width=620, height=540)
    mpl, ax = plt.subplots(figsize=(5.6, 4.8))
    image = ax.imshow(np.where(rows > 0, rows, np.nan), norm=LogNorm(1e-4, 1), cmap="viridis", aspect="auto",
                      extent=(labels[0] - 0.5, labels[-1] + 0.5, len(true_labels) - 0.5, -0.5))
    ax.set_yticks(range(len(true_labels)), true_labels)
    ax.set(xlabel="rounded prediction (clipped)", ylabel="true distance", title=title)
    mpl.colorbar(image, ax=ax, label="fraction of row").minorticks_off()  # minor log ticks cost seconds
    mpl.subplots_adjust(left=0.12, right=0.98, bottom=0.11, top=0.93)
    return _save(fig, mpl, out_dir, stem)


def raw_histogram_figure(histogram: dict, title: str, out_dir: Path, stem: str) -> list[str]:
    """The study's `mkhist`: label on x, raw output on y, each label's column sums to 1, log colour."""
    labels, centres = histogram["labels"], histogram["bins"]["centres"]
    fraction = np.asarray(histogram["fraction"], dtype=np.float64).T  # (K bins, L labels)
    present = np.asarray(histogram["count"]) > 0
    fraction, shown = fraction[:, present], [lab for lab, keep in zip(labels, present) if keep]
    counts = [c for c in histogram["count"] if c]
    exponent = np.log10(np.where(fraction > 0, fraction, np.nan))
    text = [[f"label {lab} ({n} graphs): output in [{y - 0.5 / histogram['bins']['per_hop']:.3g}, "
             f"{y + 0.5 / histogram['bins']['per_hop']:.3g}) for {f:.3g} of them" for lab, n, f in zip(shown, counts, row)]
            for y, row in zip(centres, fraction)]
    ticks = list(range(-4, 1))
    fig = go.Figure(go.Heatmap(z=exponent, x=shown, y=centres, zmin=-4, zmax=0, colorscale="Viridis",
                               hoverinfo="text", text=text,
                               colorbar=dict(title="fraction of label", tickvals=ticks,
                                             ticktext=[f"1e{k}" for k in ticks])))
    fig.add_scatter(x=shown, y=shown, mode="lines", line=dict(color="white", dash="dot", width=1),
                    name="output = label", hoverinfo="skip", showlegend=False)
    fig.update_layout(title=title, xaxis_title="true distance (label)", yaxis_title="raw model output",
                      xaxis=dict(dtick=1), width=620, height=540)
    mpl, ax = plt.subplots(figsize=(5.6, 4.8))
    step = 1 / histogram["bins"]["per_hop"]
    image = ax.imshow(np.where(fraction > 0, fraction, np.nan), norm=LogNorm(1e-4, 1), cmap="viridis",
                      origin="lower", aspect="auto", interpolation="nearest",
                      extent=(-0.5, len(shown) - 0.5, centres[0] - step / 2, centres[-1] + step / 2))
    ax.set_xticks(range(len(shown)), shown)
    ax.set(xlabel="true distance (label)", ylabel="raw model output", title=title)
    mpl.colorbar(image, ax=ax, label="fraction of label").minorticks_off()
    mpl.subplots_adjust(left=0.12, right=0.98, bottom=0.11, top=0.93)
    return _save(fig, mpl, out_dir, stem)


def line_probe_figure(probe: dict, out_dir: Path) -> list[str]:
    """Answer on the path graph of each length, one line per model, and the line y = x."""
    lengths = probe["lengths"]
    fig = go.Figure()
    fig.add_scatter(x=lengths, y=lengths, mode="lines", name="true length (y = x)",
                    line=dict(color="gray", dash="dash"))
    mpl, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(lengths, lengths, "--", color="gray", label="true length (y = x)")
    for name, entry in probe["models"].items():
        fig.add_scatter(x=lengths, y=entry["answers"], mode="lines+markers", name=name,
                        hovertemplate="path of %{x} hops: answer %{y:.4g}<extra>" + name + "</extra>")
        ax.plot(lengths, entry["answers"], marker="o", label=name)
    title = "Line-graph probe: the path 1 - ... - 2 of every length (target 2)"
    fig.update_layout(title=title, xaxis_title="path length (hops)", yaxis_title="model's answer",
                      xaxis=dict(dtick=1), width=640, height=480)
    ax.set(xlabel="path length (hops)", ylabel="model's answer", title=title)
    ax.set_xticks(lengths)
    ax.legend(fontsize=8)
    mpl.subplots_adjust(left=0.11, right=0.98, bottom=0.11, top=0.92)
    return _save(fig, mpl, out_dir, "line-probe")


def grid_figure(table: dict, row_key: str, col_key: str, col_title: str, title: str, out_dir: Path, stem: str,
                box: tuple[int, int] | None = None) -> list[str]:
    """MSE heatmap over (n, col); `box` = (n_max, col_max) outlines the fine-tuning range."""
    mse = _table(table["mse"])  # (n, col)
    floor = 1e-4
    z = np.log10(np.maximum(mse, floor))
    count = np.asarray(table["count"])
    text = [[f"n {n}, {col_key} {c}: MSE {m:.3g} over {k} graphs" if k else "no graphs"
             for c, m, k in zip(table[col_key], mrow, krow)] for n, mrow, krow in zip(table[row_key], mse, count)]
    ticks = list(range(-4, 3))
    fig = go.Figure(go.Heatmap(z=z, x=table[col_key], y=table[row_key], zmin=-4, zmax=2, colorscale="Magma",
                               hoverinfo="text", text=text,
                               colorbar=dict(title="MSE", tickvals=ticks, ticktext=[f"1e{k}" for k in ticks])))
    if box:
        fig.add_shape(type="rect", x0=min(table[col_key]) - 0.5, x1=box[1] + 0.5, y0=2.5, y1=box[0] + 0.5,
                      line=dict(color="cyan", width=2))
    fig.update_layout(title=title, xaxis_title=col_title, yaxis_title="graph size n", xaxis=dict(dtick=1),
                      yaxis=dict(dtick=1), width=680, height=560)
    mpl, ax = plt.subplots(figsize=(6.2, 5.0))
    cols, rows = table[col_key], table[row_key]
    image = ax.imshow(np.where(np.isnan(mse), np.nan, np.maximum(mse, floor)), norm=LogNorm(floor, 100),
                      cmap="magma", origin="lower", aspect="auto",
                      extent=(cols[0] - 0.5, cols[-1] + 0.5, rows[0] - 0.5, rows[-1] + 0.5))
    if box:
        ax.add_patch(plt.Rectangle((cols[0] - 0.5, 2.5), box[1] - cols[0] + 1, box[0] - 2, fill=False,
                                   edgecolor="cyan", linewidth=2))
    ax.set(xlabel=col_title, ylabel="graph size n", title=title)
    mpl.colorbar(image, ax=ax, label="MSE").minorticks_off()
    mpl.subplots_adjust(left=0.11, right=0.98, bottom=0.11, top=0.93)
    return _save(fig, mpl, out_dir, stem)


def mse_bars(doc: dict, out_dir: Path) -> list[str]:
    models = doc["models"]
    names = [n for n in doc["set_data"] if any(n in m.get("results", {}) for m in models.values())]
    pretrain_drawn = "pretrain" in models.get("learned-pretrain", {}).get("results", {})
    study = {r["set"]: r["study_mse"] for r in doc.get("reproduction", [])  # pretrain: beside learned-pretrain's bar
             if r["key"] != "finetune-before" and (r["key"] != "pretrain" or pretrain_drawn)}
    fig = go.Figure()
    mpl, ax = plt.subplots(figsize=(max(7, 0.7 * len(names)), 5.5))
    width = 0.8 / max(len(models), 1)
    for index, (label, model) in enumerate(models.items()):
        results = model.get("results", {})
        mse = [results[n]["mse"] if n in results else None for n in names]
        low = [(m - results[n]["mse_ci95"][0]) if n in results and results[n].get("mse_ci95") else 0
               for n, m in zip(names, mse)]
        high = [(results[n]["mse_ci95"][1] - m) if n in results and results[n].get("mse_ci95") else 0
                for n, m in zip(names, mse)]
        shown = [None if m is None else max(m, FLOOR) for m in mse]  # an exact 0 has no place on a log axis
        fig.add_bar(name=label, x=names, y=shown, error_y=dict(type="data", array=high, arrayminus=low),
                    customdata=mse, hovertemplate="%{x}: MSE %{customdata:.4g}<extra>" + label + "</extra>")
        x = np.arange(len(names)) + (index - (len(models) - 1) / 2) * width
        y = np.array([np.nan if m is None else max(m, FLOOR) for m in mse])
        ax.bar(x, y, width, label=label, yerr=[np.minimum(low, y - FLOOR), high], capsize=2)
    marked = [n for n in names if n in study]
    fig.add_scatter(name="study", x=marked, y=[study[n] for n in marked], mode="markers",
                    marker=dict(symbol="x", size=11, color="black"))
    ax.scatter([names.index(n) for n in marked], [study[n] for n in marked], marker="x", color="black",
               zorder=3, label="study")
    fig.update_layout(title=f"MSE per evaluation set (95% CI; MSE below {FLOOR:g} drawn at {FLOOR:g})", yaxis_type="log", yaxis_title="MSE",
                      barmode="group", width=max(700, 60 * len(names)), height=480)
    ax.set_yscale("log")
    ax.minorticks_off()
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set(ylabel="MSE", title=f"MSE per evaluation set (95% CI; MSE below {FLOOR:g} drawn at {FLOOR:g})")
    ax.legend(fontsize=8)
    mpl.subplots_adjust(left=0.08, right=0.99, bottom=0.33, top=0.92)
    return _save(fig, mpl, out_dir, "mse-by-set")


def write_figures(doc: dict, out_dir: Path, models: list[str] | None = None) -> list[str]:
    """Every figure for `doc` under out_dir (confusion and grid maps for `models`, default the
    primary one); returns paths relative to out_dir's parent."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = mse_bars(doc, out_dir)
    data = doc.get("data") or {}
    if doc.get("line_probe", {}).get("models"):
        written += line_probe_figure(doc["line_probe"], out_dir)
    raw = [label for label in models or [doc["primary"], "learned-pretrain"] if label in doc["models"]]
    for label in raw:  # the pre-trained model's raw outputs are the study's "just guesses integers"
        for name, block in doc["models"][label].get("results", {}).items():
            if "raw_histogram" in block:
                written += raw_histogram_figure(block["raw_histogram"], f"{label}: {name}, raw outputs",
                                                out_dir, f"raw-{label}-{name}")
    for label in models or [doc["primary"]]:  # the others appear beside it in mse-by-set
        for name, block in doc["models"][label].get("results", {}).items():
            written += confusion_figure(block, f"{label}: {name}", out_dir, f"confusion-{label}-{name}")
            if "cells" in block:
                box = (data.get("finetune_n_max", 7), data.get("finetune_n_max", 7))
                written += grid_figure(block["cells"], "n", "t", "target t",
                                       f"{label}: MSE by n and target (cyan: fine-tuning sizes)",
                                       out_dir, f"grid-nt-{label}", box)
                written += grid_figure(block["by_distance"], "n", "d", "true distance d",
                                       f"{label}: MSE by n and true distance", out_dir, f"grid-nd-{label}")
    return [f"{out_dir.name}/{name}" for name in written]

