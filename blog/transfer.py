"""The transfer section: `python -m experiments.transfer --out RUN_DIR/studies/transfer` writes
studies/*/transfer.json (docs/contracts.md, Transfer study); the page reads it as JSON only.

    table_transfer           Html    relative transfer A -> B per fine-tuning size, 95% CIs, BH findings
    table_transfer_specific  Html    the same beyond the shuffled-label control
    fig_transfer_matrix      plotly  the relative matrix at every size, CIs and losses on hover
    fig_transfer_dendrogram  plotly  tasks clustered by the symmetric similarity
    transfer_findings        Text    the findings after BH, the samples, the gate, what the preset can answer
"""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .figures import TEMPLATE
from .html import Html, Text, plotly_figure, table
from .rundir import Run
from .study_notes import answers_text, gate_text
from .values import fmt, fmt_ci


def _doc(run: Run) -> dict:
    if "transfer" not in run.studies:
        raise LookupError("no studies/*/transfer.json")
    return run.studies["transfer"]


def available(run: Run) -> dict[str, bool]:
    return {"transfer": "transfer" in run.studies}


def _cells(doc: dict) -> dict:
    return {(c["source"], c["target"], c["size"]): c for c in doc["cells"]}


def _entry(cell: dict, family: str) -> str:
    block = cell[family]
    mark = " *" if block.get("finding") else ""
    if cell["diagonal"]:
        mark += " (same task)"
    elif not cell["converged"]:
        mark += " (not converged)"
    return fmt_ci(block) + mark


def _matrix_table(run: Run, family: str, what: str) -> Html:
    doc = _doc(run)
    cells = _cells(doc)
    rows = [[f"{a} (D_B = {d})"] + [_entry(cells[(a, b, d)], family) for b in doc["tasks"]]
            for d in doc["sizes"] for a in doc["tasks"]]
    return table(["pre-trained on \\ fine-tuned on"] + list(doc["tasks"]), rows,
                 f"{what}, mean [95% CI] over {len(doc['seeds'])} seeds (each with its own test sample); * = a "
                 f"finding after Benjamini-Hochberg at q <= {doc['study']['fdr']:g} across the off-diagonal cells")


def table_transfer(run: Run) -> Html:
    return _matrix_table(run, "relative", "Relative transfer A -> B: (from-scratch loss - transferred loss) / B's "
                                          "constant-predictor loss")


def table_transfer_specific(run: Run) -> Html:
    return _matrix_table(run, "specific", "Specific transfer A -> B: (shuffled-label control's loss - transferred "
                                          "loss) / B's constant-predictor loss")


def fig_transfer_matrix(run: Run) -> Html:
    doc = _doc(run)
    tasks, sizes, cells = doc["tasks"], doc["sizes"], _cells(doc)

    def hover(cell: dict) -> str:
        return (f"{cell['source']} -> {cell['target']}, D_B {cell['size']}<br>relative {_entry(cell, 'relative')}<br>"
                f"specific {_entry(cell, 'specific')}<br>fine-tuned {fmt(cell['transferred_loss']['mean'])}, "
                f"scratch {fmt(cell['baseline_loss']['mean'])}, control {fmt(cell['control_loss']['mean'])}, "
                f"zero-shot {fmt(cell['zero_shot_loss']['mean'])}")

    fig = make_subplots(rows=1, cols=len(sizes), subplot_titles=[f"D_B = {d}" for d in sizes], shared_yaxes=True)
    for i, d in enumerate(sizes):
        z = [[None if a == b else cells[(a, b, d)]["relative"]["mean"] for b in tasks] for a in tasks]
        text = [[hover(cells[(a, b, d)]) for b in tasks] for a in tasks]
        fig.add_trace(go.Heatmap(z=z, x=tasks, y=tasks, text=text, hoverinfo="text", coloraxis="coloraxis"),
                      row=1, col=i + 1)
    fig.update_layout(template=TEMPLATE, height=420, margin=dict(t=40), coloraxis=dict(colorscale="RdBu", cmid=0),
                      yaxis=dict(title="pre-trained on (A)", autorange="reversed"))
    return plotly_figure(fig, "transfer-matrix", "Transfer from pre-training on A (rows) to fine-tuning on B "
                                                 "(columns) at each fine-tuning size, relative to B's constant-predictor "
                                                 "loss: blue helps, red hurts; the diagonal is blank (same task). Hover "
                                                 "for 95% CIs, BH findings and the shuffled-label control.")


def fig_transfer_dendrogram(run: Run) -> Html:
    doc = _doc(run)
    tree = doc["clustering"]
    fig = go.Figure()
    for xs, ys in zip(tree["icoord"], tree["dcoord"]):
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="#444"), showlegend=False,
                                 hoverinfo="skip"))
    fig.update_layout(template=TEMPLATE, height=320, margin=dict(t=30), yaxis=dict(title="distance"),
                      xaxis=dict(tickvals=[5 + 10 * i for i in range(len(tree["order"]))], ticktext=tree["order"]))
    return plotly_figure(fig, "transfer-dendrogram", f"Tasks clustered by symmetric transfer at D_B = {doc['sizes'][0]} "
                                                     f"({tree['method']} linkage on {tree['distance']}).")


def transfer_findings(run: Run) -> Text:
    doc = _doc(run)
    tests = doc["test_sets"]
    lrs = sorted({c["lr"] for c in doc["lr_choices"].values()})
    edge = sum(bool(c.get("lr_at_edge")) for c in doc["lr_choices"].values())
    edge = f", {edge} of {len(doc['lr_choices'])} arms at the grid's smallest or largest lr, not tuned" if edge else ""
    frozen = sum(c["lr"] == 0 for c in doc["lr_choices"].values())
    frozen = (f"; {frozen} pre-trained arms chose no fine-tuning at all (lr 0: the pre-trained model as it is, an "
              f"option of every pre-trained arm)" if frozen else "")
    return Text(f"{doc['findings']} Every fine-tuning arm ran at each learning rate of {doc['study']['lrs']} and kept "
                f"the one best on a validation sample of B (chosen: {', '.join(fmt(v) for v in lrs)}{edge}{frozen}); test and validation "
                f"samples were drawn apart from every training graph of their seed ({tests['collisions_total']} test "
                f"graphs dropped as collisions). " + gate_text(doc) + " " + answers_text(doc))


TRANSFER = {"table_transfer": table_transfer, "table_transfer_specific": table_transfer_specific,
            "fig_transfer_matrix": fig_transfer_matrix, "fig_transfer_dendrogram": fig_transfer_dendrogram,
            "transfer_findings": transfer_findings}
