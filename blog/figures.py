"""The post's figures, each built from the run directory alone.

Every builder takes a `Run` and returns an `Html` fragment (html.plotly_figure / mpld3_figure).
A builder raises LookupError / TypeError / ValueError when the run lacks what it draws; the
renderer turns that into "missing placeholder" rather than a blank figure.

    fig_loss_curves    plotly  pre-training loss per label vs examples, phase changes marked
    fig_finetune       plotly  fine-tuning loss vs step, before/after from phases.json
    fig_sets           plotly  MSE per evaluation set with its CI, the study's value beside it
    fig_confusion      plotly  true label x rounded prediction, per set (drop-down), log colour
    fig_grid           plotly  MSE over (graph size n, target t), training range marked
    fig_per_label      mpld3   MSE per true distance, one line per set (matplotlib)
(The perturbation figures live in blog/perturbation.py.)
"""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import plotly.graph_objects as go  # noqa: E402

from .html import Html, escape, mpld3_figure, plotly_figure  # noqa: E402
from .rundir import Run  # noqa: E402

TEMPLATE = "plotly_white"
FLOOR = 1e-6  # an exact 0 on a log axis is drawn here (and labelled as 0)
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]


def label_name(label: str, max_vertices: int | None) -> str:
    """'3' -> 'd = 3'; the unreachable label reads as such."""
    if max_vertices is not None and str(label) == str(max_vertices):
        return f"unreachable ({label})"
    return f"d = {label}"


def max_vertices(run: Run) -> int | None:
    value = run.eval.get("max_vertices", run.config.get("data", {}).get("n_max"))
    return int(value) if value is not None else None


def _sorted_labels(labels) -> list[str]:
    return sorted(labels, key=lambda s: (not str(s).isdigit(), int(s) if str(s).isdigit() else 0, str(s)))


def fig_loss_curves(run: Run) -> Html:
    rows = run.stage_metrics("pretrain")
    if not rows:
        raise LookupError("metrics.jsonl has no pretrain rows")
    mv = max_vertices(run)
    x = [row["examples"] for row in rows]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=[row["loss"] for row in rows], name="total", mode="lines",
                             line=dict(color="black", width=3)))
    held_out = [row for row in rows if row.get("eval_loss") is not None]
    if held_out:
        fig.add_trace(go.Scatter(x=[row["examples"] for row in held_out],
                                 y=[row["eval_loss"] for row in held_out], name="total, held-out",
                                 mode="lines+markers", line=dict(color="black", width=2, dash="dash")))
    labels = _sorted_labels({k for row in rows for k in row.get("label_loss", {})})
    for i, label in enumerate(labels):
        fig.add_trace(go.Scatter(
            x=[row["examples"] for row in rows if label in row.get("label_loss", {})],
            y=[row["label_loss"][label] for row in rows if label in row.get("label_loss", {})],
            name=label_name(label, mv), mode="lines", line=dict(color=PALETTE[i % len(PALETTE)])))
        curve = [row for row in rows if label in (row.get("curve_label_loss") or {})]
        if curve:  # the held-out points the phase detector reads (graphpath.training.phases)
            fig.add_trace(go.Scatter(
                x=[row["examples"] for row in curve], y=[row["curve_label_loss"][label] for row in curve],
                name=f"{label_name(label, mv)}, held-out", mode="markers", legendgroup=label,
                marker=dict(color=PALETTE[i % len(PALETTE)], size=5, symbol="circle-open")))
    changes = [pc for pc in run.phases["phase_changes"] if pc["stage"] == "pretrain"]
    if changes:
        fig.add_trace(go.Scatter(
            x=[pc["examples"] for pc in changes], y=[pc["loss_after"] for pc in changes],
            mode="markers", name="phase change", marker=dict(symbol="x", size=12, color="crimson"),
            text=[f"{label_name(pc['label'], mv) if pc['label'] != 'all' else 'total'}: "
                  f"{pc['loss_before']:.3g} → {pc['loss_after']:.3g} at step {pc['step']}"
                  for pc in changes], hoverinfo="text"))
        for pc in changes:
            fig.add_vline(x=pc["examples"], line=dict(color="crimson", width=1, dash="dot"))
    fig.update_layout(template=TEMPLATE, height=460, xaxis_title="training examples seen",
                      yaxis_title="MSE (log)", yaxis_type="log", legend_title_text="label",
                      margin=dict(t=30))
    who = f" ({run.model_dir.name}, the first of the seeds)" if run.seed_runs else ""
    return plotly_figure(fig, "loss-curves", f"Pre-training loss{who}, total and per true distance: lines are "
                         "training batches, open circles the held-out points the phase detector reads. "
                         "Crosses and dotted lines mark the detected phase changes.")


def fig_finetune(run: Run) -> Html:
    rows = run.stage_metrics("finetune")
    if not rows:
        raise LookupError("metrics.jsonl has no finetune rows")
    before, after = run.phases["finetune"]["loss_before"], run.phases["finetune"]["loss_after"]
    fig = go.Figure(go.Scatter(x=[r["step"] for r in rows], y=[r["loss"] for r in rows],
                               mode="lines+markers", name="fine-tuning batch loss"))
    fig.add_hline(y=before, line=dict(dash="dash", color="gray"),
                  annotation_text=f"before: {before:.4g}", annotation_position="top right")
    fig.add_hline(y=after, line=dict(dash="dash", color="green"),
                  annotation_text=f"after: {after:.4g}", annotation_position="bottom right")
    fig.update_layout(template=TEMPLATE, height=360, xaxis_title="fine-tuning step",
                      yaxis_title="MSE (log)", yaxis_type="log", margin=dict(t=30))
    who = f" ({run.model_dir.name}, the first of the seeds; the trainer's held-out set)" if run.seed_runs else ""
    return plotly_figure(fig, "finetune", f"Fine-tuning on on-path targets in small graphs{who}: "
                         "loss on the fine-tuning set before and after.")


def eval_sets(run: Run) -> dict[str, dict]:
    sets = run.eval["sets"]
    if not isinstance(sets, dict) or not sets:
        raise ValueError("eval.json has no sets")
    return sets


def _bar_values(scores: dict[str, dict], names: list[str]) -> tuple[list, list, list, list]:
    """MSE bars on a log axis: an exact 0 is drawn at FLOOR and labelled as 0."""
    mse = [scores[n]["mse"] if n in scores else None for n in names]
    shown = [None if m is None else max(m, FLOOR) for m in mse]
    text = ["" if m is None else ("0" if m == 0 else f"{m:.3g}") for m in mse]
    ci = [scores[n].get("mse_ci95") if n in scores else None for n in names]
    up = [c[1] - m if c and m is not None and m > 0 else 0 for c, m in zip(ci, mse)]
    down = [m - c[0] if c and m is not None and m > 0 else 0 for c, m in zip(ci, mse)]
    return shown, text, up, down



def fig_sets(run: Run) -> Html:
    sets = eval_sets(run)
    names = [n for n in sets if sets[n].get("kind", "study") != "grid"]
    shown = [escape(n) for n in names]  # plotly reads <b>, <a> in labels: run text is escaped
    fig = go.Figure()
    y, text, up, down = _bar_values(sets, names)
    fig.add_trace(go.Bar(x=shown, y=y, text=text, name="learned, final (this run)",
                         error_y=dict(type="data", symmetric=False, array=up, arrayminus=down)))
    pretrained = run.eval.get("models", {}).get("learned-pretrain", {}).get("results") or {}
    if pretrained:  # the study's pre-train number is of the model before fine-tuning
        y, text, up, down = _bar_values(pretrained, names)
        fig.add_trace(go.Bar(x=shown, y=y, text=text, name="learned, pre-training checkpoint",
                             marker_color="#9467bd",
                             error_y=dict(type="data", symmetric=False, array=up, arrayminus=down)))
    handcrafted = run.eval.get("models", {}).get("handcrafted", {}).get("results") or {}
    if handcrafted:
        y, text, _, _ = _bar_values(handcrafted, names)
        fig.add_trace(go.Bar(x=shown, y=y, text=text, name="hand-built", marker_color="#2ca02c"))
    study = {row["set"]: row.get("study_mse") for row in run.eval.get("reproduction", [])
             if row.get("key", row["set"]) != "finetune-before"}
    if any(study.get(n) is not None for n in names):
        fig.add_trace(go.Scatter(x=shown, y=[study.get(n) for n in names], mode="markers",
                                 name="the study (learned)",
                                 marker=dict(symbol="diamond", size=12, color="black")))
    fig.update_layout(template=TEMPLATE, height=460, yaxis_type="log", yaxis_title="MSE (log)",
                      barmode="group", margin=dict(t=30), legend=dict(orientation="h", y=1.08))
    fig.update_traces(selector=dict(type="bar"), textposition="outside", cliponaxis=False)
    return plotly_figure(fig, "sets", "MSE on every evaluation set: the learned model (with 95% "
                         "CI; on the pre-train and fine-tune sets also its pre-training checkpoint, "
                         "which the study's pre-train number describes), the hand-built model where "
                         "it was scored (an exact 0 is drawn at "
                         f"{FLOOR:g}), and the study's reported value (diamonds).")


def log_fraction_menu(panels: list[dict], xaxis_title: str, yaxis_title: str, hovertemplate: str,
                      reverse_y: bool = False) -> go.Figure:
    """Heatmaps of log10 fractions (colour 1e-4 .. 1), one per panel and a drop-down that shows one
    at a time. A panel is {"title", "x", "y", "z", "text"}; z holds log10 fractions (None = 0)."""
    fig = go.Figure()
    for i, panel in enumerate(panels):
        fig.add_trace(go.Heatmap(
            z=panel["z"], x=panel["x"], y=panel["y"], text=panel["text"], visible=(i == 0), zmin=-4, zmax=0,
            colorscale="Viridis", name=escape(panel["title"]),
            colorbar=dict(title="fraction", tickvals=[-4, -3, -2, -1, 0],
                          ticktext=["1e-4", "0.001", "0.01", "0.1", "1"]),
            hovertemplate=hovertemplate))
    buttons = [dict(label=escape(panel["title"]), method="update",
                    args=[{"visible": [j == i for j in range(len(panels))]}, {"title.text": escape(panel["title"])}])
               for i, panel in enumerate(panels)]
    fig.update_layout(template=TEMPLATE, height=520, title=dict(text=escape(panels[0]["title"])),
                      xaxis_title=xaxis_title, yaxis_title=yaxis_title,
                      updatemenus=[dict(buttons=buttons, x=1.0, xanchor="right", y=1.12)])
    if reverse_y:
        fig.update_layout(yaxis_autorange="reversed")
    return fig


def fig_confusion(run: Run) -> Html:
    sets = eval_sets(run)
    mv = max_vertices(run)
    panels = []
    for name, scores in sets.items():
        labels, counts = scores["confusion"]["labels"], scores["confusion"]["counts"]
        z, text = [], []  # (true label, prediction): log10 of the fraction of that true label
        for row in counts:
            total = sum(row)
            z.append([math.log10(c / total) if total and c else None for c in row])
            text.append([f"{c} of {total}" for c in row])
        tick = [label_name(str(v), mv).replace("unreachable", "unr.") for v in labels]
        panels.append(dict(title=name, x=tick, y=tick, z=z, text=text))
    fig = log_fraction_menu(panels, "rounded prediction", "true distance",
                            "true %{y}<br>predicted %{x}<br>%{text}<extra></extra>", reverse_y=True)
    return plotly_figure(fig, "confusion", "Confusion counts per evaluation set (choose the set "
                         "above), normalized per true label, log colour.")


def fig_grid(run: Run) -> Html:
    grid = run.eval["grid"]
    ns, ts, mse = grid["n"], grid["t"], grid["mse"]
    accuracy = grid.get("accuracy")
    z = [[math.log10(v) if v is not None and v > 0 else (-8 if v == 0 else None) for v in row]
         for row in mse]
    text = [[("—" if v is None else f"MSE {v:.3g}" + (f", accuracy {accuracy[i][j]:.2f}"
                                                     if accuracy and accuracy[i][j] is not None else ""))
             for j, v in enumerate(row)] for i, row in enumerate(mse)]
    fig = go.Figure(go.Heatmap(z=z, x=ts, y=ns, text=text, colorscale="Magma", reversescale=True,
                               colorbar=dict(title="log10 MSE"),
                               hovertemplate="n = %{y}, t = %{x}<br>%{text}<extra></extra>"))
    if grid.get("train_n_max") is not None:
        fig.add_hline(y=grid["train_n_max"] + 0.5, line=dict(color="deepskyblue", width=3),
                      annotation_text="largest fine-tuning graph", annotation_position="top left")
    fig.update_layout(template=TEMPLATE, height=460, xaxis_title="target t",
                      yaxis_title="graph size n", margin=dict(t=30), xaxis=dict(dtick=1),
                      yaxis=dict(dtick=1))
    return plotly_figure(fig, "grid", "MSE over graph size n and target t (hover for accuracy), each cell the "
                         "pooled mixture of every kind of target its graphs hold: on a shortest 1-2 path, reachable "
                         "off it, unreachable, and (t > n) not in the graph; not an on-path number (the on-path grid "
                         "above splits those by distance). Empty cells were not sampled.")


def fig_per_label(run: Run) -> Html:
    sets = eval_sets(run)
    mv = max_vertices(run)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    study_sets = {n: s for n, s in sets.items() if s.get("kind", "study") == "study"}
    lowest, highest = math.inf, -math.inf
    for i, (name, scores) in enumerate(study_sets.items()):
        per = scores["per_label"]
        labels = [label for label in _sorted_labels(per) if label.isdigit()]
        mse = [max(per[label]["mse"], FLOOR) for label in labels]
        lowest, highest = min(lowest, *mse), max(highest, *mse)
        ax.plot([int(label) for label in labels], mse, marker="o",
                color=PALETTE[i % len(PALETTE)], label=name)
    ax.set_yscale("log")
    decades = range(math.floor(math.log10(lowest)), math.ceil(math.log10(highest)) + 1)
    ax.set_yticks([10.0 ** d for d in decades])  # mpld3 keeps fixed ticks and their labels
    ax.set_yticklabels([f"{10.0 ** d:g}" for d in decades])
    ax.set_xlabel("true distance" + (f" ({mv} = unreachable)" if mv else ""))
    ax.set_ylabel("MSE (log)")
    ax.xaxis.grid(True, alpha=0.3)  # mpld3 would draw a y grid line at every minor log tick
    ax.minorticks_off()
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return mpld3_figure(fig, "per-label", "MSE per true distance on each of the study's sets "
                        "(matplotlib, via mpld3: drag to pan, use the buttons to zoom).")


FIGURES = {name: builder for name, builder in globals().items() if name.startswith("fig_")}
