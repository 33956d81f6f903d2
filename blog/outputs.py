"""What rounding hides: the raw-output histograms and the line-graph probe, from eval.json alone
(`models.<label>.results.<set>.raw_histogram` and `line_probe`, docs/contracts.md).

    fig_raw_outputs      plotly  raw output x true label per set (drop-down), each label's column
                                 normalized to 1, log colour: the study's `mkhist`
    fig_line_probe       plotly  answer on the path graph of every length vs the length, y = x
    line_probe_summary   Text    the answers on the longest path and how many lengths each model
                                 rounds to correctly
"""
from __future__ import annotations

import math

import plotly.graph_objects as go

from .figures import TEMPLATE, label_name, log_fraction_menu, max_vertices
from .html import Html, Text, escape, plotly_figure
from .rundir import Run
from .values import fmt

MODEL_NAMES = {"learned": "fine-tuned", "learned-pretrain": "pre-trained (not fine-tuned)", "handcrafted": "hand-built"}


def _histograms(run: Run) -> list[tuple[str, str, dict]]:
    """(model label, set, histogram) for the primary model's sets, then the pre-trained model's."""
    models = run.eval.get("models", {})
    primary = run.eval.get("primary", "learned")
    out = []
    for label in dict.fromkeys([primary, "learned-pretrain"]):
        for name, block in (models.get(label, {}).get("results") or {}).items():
            if block.get("raw_histogram"):
                out.append((label, name, block["raw_histogram"]))
    return out


def available(run: Run) -> dict[str, bool]:
    probe = run.eval.get("line_probe") or {}
    return {"raw_outputs": bool(_histograms(run)), "line_probe": bool(probe.get("models"))}


def fig_raw_outputs(run: Run) -> Html:
    histograms = _histograms(run)
    if not histograms:
        raise LookupError("eval.json has no raw_histogram")
    mv = max_vertices(run)
    panels = []
    for label, name, hist in histograms:
        keep = [k for k, n in enumerate(hist["count"]) if n]
        labels = [hist["labels"][k] for k in keep]
        centres = hist["bins"]["centres"]
        z = [[math.log10(hist["fraction"][k][j]) if hist["fraction"][k][j] > 0 else None for k in keep]
             for j in range(len(centres))]  # (bins, labels)
        text = [[f"{hist['fraction'][k][j]:.3g} of {hist['count'][k]} graphs" for k in keep]
                for j in range(len(centres))]
        ticks = [label_name(str(v), mv).replace("unreachable", "unr.") for v in labels]
        panels.append(dict(title=f"{MODEL_NAMES.get(label, label)} model: {name}", x=ticks, y=centres, z=z, text=text))
    fig = log_fraction_menu(panels, "true distance", "raw (unrounded) output",
                            "true %{x}<br>raw output ≈ %{y}<br>%{text}<extra></extra>")
    per_hop = histograms[0][2]["bins"]["per_hop"]
    return plotly_figure(fig, "raw-outputs", "The model's raw output against the true distance, per "
                         f"evaluation set (choose above; {per_hop} bins per hop, each true distance's column "
                         "sums to 1, log colour). Horizontal bands at whole numbers mean the model answers "
                         "with integers; mass off the diagonal at an integer is a confident wrong answer.")


def fig_line_probe(run: Run) -> Html:
    probe = run.eval["line_probe"]
    lengths = probe["lengths"]
    fig = go.Figure(go.Scatter(x=lengths, y=lengths, mode="lines", name="true length (y = x)",
                               line=dict(color="gray", dash="dash")))
    for label, entry in probe["models"].items():
        fig.add_trace(go.Scatter(x=lengths, y=entry["answers"], mode="lines+markers",
                                 name=escape(MODEL_NAMES.get(label, label)),
                                 hovertemplate="path of %{x} hops: answer %{y:.4g}<extra></extra>"))
    fig.update_layout(template=TEMPLATE, height=420, xaxis_title="path length (hops)",
                      yaxis_title="the model's answer", xaxis=dict(dtick=1), margin=dict(t=30))
    return plotly_figure(fig, "line-probe", "The line-graph probe: on the path 1 – (L+1) – L – … – 3 – 2 "
                         "of every length L, the distance from vertex 1 to vertex 2 is L (dashed line).")


def probe_counts(probe: dict, entry: dict) -> list[int]:
    """Per seed, the lengths whose own answer rounds to L (eval.json `answers` are seed means)."""
    labels = probe.get("label") or probe["lengths"]
    return [sum(round(a) == y for a, y in zip(answers, labels)) for answers in (entry.get("per_run") or [entry["answers"]])]


def line_probe_summary(run: Run) -> Text:
    probe = run.eval["line_probe"]
    longest, total = probe["lengths"][-1], len(probe["lengths"])
    parts = []
    for label, entry in probe["models"].items():
        counts = probe_counts(probe, entry)
        name = MODEL_NAMES.get(label, label)
        if len(counts) > 1:
            parts.append(f"the {name} model answers {fmt(entry['answers'][-1])} (mean of {len(counts)} seeds) and "
                         f"rounds to the right length on {', '.join(map(str, counts))} of {total} (per seed)")
        else:
            parts.append(f"the {name} model answers {fmt(entry['answers'][-1])} and rounds to the right length on "
                         f"{counts[0]} of {total}")
    return Text(f"on the {longest}-hop path " + "; ".join(parts))


OUTPUTS = {"fig_raw_outputs": fig_raw_outputs, "fig_line_probe": fig_line_probe,
           "line_probe_summary": line_probe_summary}
