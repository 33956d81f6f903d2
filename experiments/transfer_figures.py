"""Figures of `python -m experiments.transfer`: the relative-transfer matrix at every fine-tuning
size (hover: intervals, BH q-values, the losses behind them), the clustering dendrogram and the
asymmetry matrix at the smallest size."""
from __future__ import annotations

from pathlib import Path


def ci_text(block: dict) -> str:
    return f"[{block['ci95'][0]:.3g}, {block['ci95'][1]:.3g}]" if block["ci95"] else "(one seed)"


def hover(cell: dict) -> str:
    r, s = cell["relative"], cell["specific"]
    q = (lambda b: "" if b.get("q") is None else f", q {b['q']:.2g}{' *' if b['finding'] else ''}")
    mark = "" if cell["converged"] else " (not converged: untested)"
    return (f"{cell['source']} -> {cell['target']}, D_B {cell['size']}{' (diagonal)' if cell['diagonal'] else ''}{mark}<br>"
            f"relative {r['mean']:+.3g} {ci_text(r)}{q(r)}<br>specific {s['mean']:+.3g} {ci_text(s)}{q(s)}<br>"
            f"fine-tuned {cell['transferred_loss']['mean']:.3g}, scratch {cell['baseline_loss']['mean']:.3g}, "
            f"control {cell['control_loss']['mean']:.3g}, zero-shot {cell['zero_shot_loss']['mean']:.3g}")


def write_figures(doc: dict, folder: Path) -> list[str]:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from graphpath_common.figures import write_html

    tasks, sizes = doc["tasks"], doc["sizes"]
    folder.mkdir(parents=True, exist_ok=True)
    by = {(c["source"], c["target"], c["size"]): c for c in doc["cells"]}
    heat = make_subplots(rows=1, cols=len(sizes), subplot_titles=[f"D_B = {d}" for d in sizes], shared_yaxes=True)
    for i, size in enumerate(sizes):
        z = [[None if a == b else by[(a, b, size)]["relative"]["mean"] for b in tasks] for a in tasks]
        text = [[hover(by[(a, b, size)]) for b in tasks] for a in tasks]
        heat.add_trace(go.Heatmap(z=z, x=tasks, y=tasks, text=text, hoverinfo="text", colorscale="RdBu", zmid=0,
                                  coloraxis="coloraxis"), row=1, col=i + 1)
    heat.update_layout(title="Relative transfer A -> B at each fine-tuning size (mean over seeds; hover: CIs, "
                             "BH q-values, * = finding)", coloraxis=dict(colorscale="RdBu", cmid=0),
                       yaxis=dict(title="A (pre-trained on)", autorange="reversed"))
    written = [write_html(heat, folder / "transfer-matrix.html")]
    tree = doc["clustering"]
    dendro = go.Figure()
    for xs, ys in zip(tree["icoord"], tree["dcoord"]):
        dendro.add_scatter(x=xs, y=ys, mode="lines", line=dict(color="#444"), showlegend=False, hoverinfo="skip")
    dendro.update_layout(title=f"Tasks clustered by symmetric transfer at D_B = {sizes[0]} (average linkage)",
                         xaxis=dict(tickvals=[5 + 10 * i for i in range(len(tree["order"]))], ticktext=tree["order"]),
                         yaxis=dict(title="distance"))
    written.append(write_html(dendro, folder / "transfer-dendrogram.html"))
    asym = go.Figure(go.Heatmap(z=doc["asymmetry"], x=tasks, y=tasks, colorscale="PuOr", zmid=0,
                                colorbar=dict(title="A->B minus B->A")))
    asym.update_layout(title=f"Asymmetry at D_B = {sizes[0]}: relative(A -> B) - relative(B -> A)",
                       xaxis=dict(title="B"), yaxis=dict(title="A", autorange="reversed"))
    written.append(write_html(asym, folder / "transfer-asymmetry.html"))
    return [str(p) for p in written]
