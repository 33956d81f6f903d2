"""The transfer section: `python -m experiments.transfer --out RUN_DIR/studies/transfer` writes
studies/*/transfer.json (docs/contracts.md, Transfer study); the page reads it as JSON only.

    table_transfer           Html    relative transfer A -> B (rows = source) with 95% CIs, diagonal marked
    fig_transfer_matrix      plotly  the same matrix as a heatmap, CIs and raw losses on hover
    fig_transfer_dendrogram  plotly  tasks clustered by the symmetric similarity
    transfer_findings        Text    the study's sentence of findings, seeds and test-set collisions
"""
from __future__ import annotations

import plotly.graph_objects as go

from .figures import TEMPLATE
from .html import Html, Text, plotly_figure, table
from .rundir import Run
from .values import fmt, fmt_ci


def _doc(run: Run) -> dict:
    if "transfer" not in run.studies:
        raise LookupError("no studies/*/transfer.json")
    return run.studies["transfer"]


def available(run: Run) -> dict[str, bool]:
    return {"transfer": "transfer" in run.studies}


def _cells(doc: dict) -> dict:
    return {(c["source"], c["target"]): c for c in doc["cells"]}


def table_transfer(run: Run) -> Html:
    doc = _doc(run)
    cells = _cells(doc)
    rows = [[a] + [fmt_ci(cells[(a, b)]["relative"]) + (" (same task)" if a == b else "") for b in doc["tasks"]]
            for a in doc["tasks"]]
    return table(["pre-trained on \\ fine-tuned on"] + list(doc["tasks"]), rows,
                 f"Relative transfer A -> B: (baseline loss - transferred loss) / B's constant-predictor loss, "
                 f"mean [95% CI] over {len(doc['seeds'])} seeds; the diagonal is kept apart")


def fig_transfer_matrix(run: Run) -> Html:
    doc = _doc(run)
    tasks, cells = doc["tasks"], _cells(doc)

    def hover(cell: dict) -> str:
        return (f"{cell['source']} -> {cell['target']}<br>relative {fmt_ci(cell['relative'])}<br>"
                f"transfer {fmt_ci(cell['transfer'])}<br>fine-tuned {fmt(cell['transferred_loss']['mean'])}, "
                f"baseline {fmt(cell['baseline_loss']['mean'])}, zero-shot {fmt(cell['zero_shot_loss']['mean'])}")

    z = [[None if a == b else cells[(a, b)]["relative"]["mean"] for b in tasks] for a in tasks]
    text = [[hover(cells[(a, b)]) for b in tasks] for a in tasks]
    fig = go.Figure(go.Heatmap(z=z, x=tasks, y=tasks, text=text, hoverinfo="text", colorscale="RdBu", zmid=0,
                               colorbar=dict(title="relative")))
    fig.update_layout(template=TEMPLATE, height=420, margin=dict(t=30),
                      xaxis=dict(title="fine-tuned on (B)"), yaxis=dict(title="pre-trained on (A)", autorange="reversed"))
    return plotly_figure(fig, "transfer-matrix", "Transfer from pre-training on A (rows) to fine-tuning on B "
                                                 "(columns), relative to B's constant-predictor loss: blue helps, "
                                                 "red hurts; the diagonal is blank (same task). Hover for 95% CIs.")


def fig_transfer_dendrogram(run: Run) -> Html:
    tree = _doc(run)["clustering"]
    fig = go.Figure()
    for xs, ys in zip(tree["icoord"], tree["dcoord"]):
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="#444"), showlegend=False,
                                 hoverinfo="skip"))
    fig.update_layout(template=TEMPLATE, height=320, margin=dict(t=30), yaxis=dict(title="distance"),
                      xaxis=dict(tickvals=[5 + 10 * i for i in range(len(tree["order"]))], ticktext=tree["order"]))
    return plotly_figure(fig, "transfer-dendrogram", f"Tasks clustered by symmetric transfer ({tree['method']} "
                                                     f"linkage on {tree['distance']}).")


def transfer_findings(run: Run) -> Text:
    doc = _doc(run)
    tests = doc["test_sets"]
    return Text(f"{doc['findings']} Test graphs were drawn apart from every training graph of their seed "
                f"({tests['collisions_total']} collisions by edge-set hash were dropped).")


TRANSFER = {"table_transfer": table_transfer, "fig_transfer_matrix": fig_transfer_matrix,
            "fig_transfer_dendrogram": fig_transfer_dendrogram, "transfer_findings": transfer_findings}
