"""The studies section: results of `python -m experiments.edt / partial / mixture` written inside
the run directory (`--out RUN_DIR/studies/NAME`), read as JSON only (docs/contracts.md, Studies).

    table_edt          Html  per model size N and D_F: D_T and the multiplier with 95% CIs
    edt_fit            Text  alpha (and beta, with 4 sizes over a decade) with seed-bootstrap CIs
    edt_checks         Text  the doubling check, the convergence gate, what the preset can answer
    table_partial      Html  per pair and variant: trainable parameters, chosen lr, test and OOD MSE
    partial_tests      Html  pre-trained vs random body per (pair, mode), BH q-values
    partial_notes      Text  the convergence gate and what the preset can answer
    fig_edt_loss       plotly  test loss vs data, from scratch and fine-tuned, per N (95% CIs)
    fig_edt_transfer   plotly  D_T vs D_F with the fitted power law, and the multiplier
    fig_partial        plotly  test MSE vs trainable parameters, and every set's MSE per variant
and the mixture section's providers (blog.mixture_study).
"""
from __future__ import annotations


import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .figures import TEMPLATE
from .html import Html, Text, plotly_figure, table
from .mixture_study import MIXTURE, study as _study
from .rundir import Run
from .study_notes import answers_text, converged_mark, error_bars, gate_text
from .values import count, fmt, fmt_ci


def table_edt(run: Run) -> Html:
    doc = _study(run, "edt")
    rows = [[count(s["N"]), count(s["D_F"]) + converged_mark(s.get("converged", True)), fmt_ci(s["D_T"]),
             fmt_ci(s["multiplier"]), f"{s['ossified_seeds']} / {s['extrapolated_seeds']}"] for s in doc["summary"]]
    return table(["N (non-embedding)", "D_F", "D_T per seed [95% CI]", "(D_F + D_T) / D_F", "seeds ossified / extrapolated"],
                 rows, "Effective data transferred per model size and fine-tuning set size (test losses of final models)")


def edt_fit(run: Run) -> Text:
    doc = _study(run, "edt")
    fit_doc, paper = doc["fit"], doc["fit"]["paper"]
    reference = f"the paper's text-to-Python values are k = {fmt(paper['k'])}, α = {paper['alpha']}, β = {paper['beta']}"
    if not fit_doc.get("fit"):
        return Text(f"No power law was fitted: {fit_doc.get('reason', 'too few points')}; {reference}.")
    fit = fit_doc["fit"]
    parts = [f"α = {fmt_ci(dict(mean=fit['alpha']['value'], ci95=fit['alpha']['ci95']))}"]
    if fit["beta"]["value"] is not None:
        parts.append(f"β = {fmt_ci(dict(mean=fit['beta']['value'], ci95=fit['beta']['ci95']))}")
    else:
        parts.append(f"β not estimated ({fit_doc.get('size_law_reason')})")
    boot = fit_doc.get("bootstrap") or {}
    return Text(f"Fitting D_T = k·D_F^α·N^β to {fit_doc['points']} points of the seed-averaged curves "
                f"({fit_doc['rule']}; {fit_doc.get('excluded', 0)} points left out) gives {', '.join(parts)}; 95% "
                f"intervals from {boot.get('fitted', 0)} bootstrap resamples of whole seeds ({fit_doc.get('seeds')} seeds); "
                f"{reference}.")


def edt_checks(run: Run) -> Text:
    doc = _study(run, "edt")
    lines = []
    for check in doc.get("doubling", []):
        improvement = check["improvement"]
        lines.append(f"N = {count(check['N'])}: {fmt_ci(improvement)} ({'passed' if check['passed'] else 'failed'})")
    doubling = (f"Doubling the steps at the largest from-scratch rung (D = {doc['doubling'][0]['D']}) improves the test "
                f"loss by (share, 95% CI over seeds; passes when the upper bound is at most "
                f"{doc['doubling'][0]['tolerance']:g}): " + "; ".join(lines) + ". ") if doc.get("doubling") else ""
    return Text(doubling + gate_text(doc) + " " + answers_text(doc))


def table_partial(run: Run) -> Html:
    doc = _study(run, "partial")
    sets = sorted({name for v in doc["variants"] for name in v["sets"]})
    rows = [[v["pair"], v["name"] + converged_mark(v["converged"]), count(v["trainable"]), fmt(v["lr"]),
             fmt_ci(v["test"]["loss"])] + [fmt_ci(v["sets"][name]["mse"]) if name in v["sets"] else "—" for name in sets]
            for v in doc["variants"]]
    return table(["pre-training -- fine-tuning task", "variant", "trainable", "lr (validation)", "test MSE"]
                 + [f"{name} MSE" for name in sets], rows,
                 f"Partial fine-tuning ({count(doc['total_parameters'])} parameters in all; final models on each seed's "
                 "test sample, the lr chosen on a separate validation sample; 95% CIs over seeds)")


def partial_tests(run: Run) -> Html:
    doc = _study(run, "partial")
    rows = [[t["pair"], t["mode"] + converged_mark(t["converged"]), fmt_ci(t["log_ratio"]),
             "—" if t["q"] is None else fmt(t["q"]), "yes" if t["finding"] else "no"] for t in doc["body_tests"]]
    return table(["pair", "mode", "log(random-body MSE / pre-trained-body MSE) [95% CI]", "BH q", "finding"], rows,
                 "Does the pre-trained body beat a random one under each mode? (Benjamini-Hochberg across the tests)")


def partial_notes(run: Run) -> Text:
    doc = _study(run, "partial")
    edge = doc["gate"].get("lr_at_edge") or []
    edge = (f" {len(edge)} variants chose the smallest or largest lr of their grid, so their lr is not tuned "
            f"(the best may lie outside it): {', '.join(edge)}." if edge else "")
    fitted = sorted(mode for mode, keys in doc["study"].get("finetune_by_mode", {}).items()
                    if keys.get("readout_init") == "lstsq")
    fitted = (f" Mode{'s' if len(fitted) > 1 else ''} {', '.join(fitted)} start{'' if len(fitted) > 1 else 's'} from "
              "the least-squares read-out on graphs of the fine-tuning task (for the read-out mode: the exact optimum "
              "of its linear probe, a departure from training it by gradient steps alone); the steps after it check "
              "that it is a plateau." if fitted else "")
    return Text(gate_text(doc, "variants") + edge + fitted + " " + answers_text(doc))


def fig_edt_loss(run: Run) -> Html:
    doc = _study(run, "edt")
    fig = go.Figure()
    for curve in doc["curves"]:
        blocks = [p["loss"] for p in curve["points"]]
        fig.add_trace(go.Scatter(x=[p["D"] for p in curve["points"]], y=[b["mean"] for b in blocks],
                                 error_y=error_bars(blocks), mode="lines+markers", name=f"N = {count(curve['N'])}, {curve['arm']}",
                                 line=dict(dash="dot" if curve["arm"] == "scratch" else "solid"),
                                 marker=dict(symbol=["circle" if p.get("converged", True) else "x" for p in curve["points"]])))
    fig.update_layout(template=TEMPLATE, height=380, margin=dict(t=30), xaxis=dict(type="log", title="graphs of the fine-tuning task"),
                      yaxis=dict(type="log", title="test MSE"))
    return plotly_figure(fig, "edt-loss", "Test MSE of final models on the fine-tuning task against data: from scratch "
                                          "(dotted, D graphs) and pre-trained then fine-tuned (solid, D_F graphs), "
                                          "mean and 95% CI over seeds; x marks a cell whose jobs did not all converge.")


def fig_edt_transfer(run: Run) -> Html:
    doc = _study(run, "edt")
    fit_doc = doc.get("fit") or {}
    fit = fit_doc.get("fit")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("D_T vs D_F (seed-averaged curves)", "(D_F + D_T) / D_F"))
    rows = fit_doc.get("rows", [])
    for n in sorted({r["N"] for r in rows}):
        mine = [r for r in rows if r["N"] == n and r["D_T"] is not None]
        positive = [r for r in mine if r["D_T"] > 0]
        fig.add_trace(go.Scatter(x=[r["D_F"] for r in positive], y=[r["D_T"] for r in positive], mode="markers",
                                 name=f"N = {count(n)}", legendgroup=str(n)), row=1, col=1)
        fig.add_trace(go.Scatter(x=[r["D_F"] for r in mine], y=[r["multiplier"] for r in mine], mode="lines+markers",
                                 name=f"N = {count(n)}", legendgroup=str(n), showlegend=False), row=1, col=2)
        if fit and positive:
            low, high = min(r["D_F"] for r in positive), max(r["D_F"] for r in positive)
            grid = [low * (high / low) ** (i / 29) for i in range(30)]
            scale = fit["k"]["value"] * (n ** fit["beta"]["value"] if fit["beta"]["value"] is not None else 1.0)
            fig.add_trace(go.Scatter(x=grid, y=[scale * d ** fit["alpha"]["value"] for d in grid], mode="lines",
                                     line=dict(dash="dash"), name=f"fit, N = {count(n)}", legendgroup=str(n)), row=1, col=1)
    fig.update_xaxes(type="log", title="D_F")
    fig.update_yaxes(type="log", row=1, col=1, title="D_T (negative values: ossified, not drawn on a log axis)")
    fig.update_layout(template=TEMPLATE, height=400, margin=dict(t=40))
    return plotly_figure(fig, "edt-transfer", "Data transferred D_T against fine-tuning data D_F on the seed-averaged "
                                              "curves, with the fitted D_T = k·D_F^α·N^β (dashed), and the effective "
                                              "data multiplier (below 1: pre-training hurt).")


def fig_partial(run: Run) -> Html:
    doc = _study(run, "partial")
    sets = sorted({name for v in doc["variants"] for name in v["sets"]})
    fig = make_subplots(rows=1, cols=2, column_widths=[0.4, 0.6],
                        subplot_titles=("test MSE vs trainable parameters", "MSE on every out-of-distribution set"))
    for pair in dict.fromkeys(v["pair"] for v in doc["variants"]):
        for body in doc["study"]["bodies"]:
            rows = sorted((r for r in doc["variants"] if r["body"] == body and r["pair"] == pair),
                          key=lambda r: r["trainable"])
            fig.add_trace(go.Scatter(x=[r["trainable"] for r in rows], y=[r["test"]["loss"]["mean"] for r in rows],
                                     error_y=error_bars([r["test"]["loss"] for r in rows]), mode="markers",
                                     text=[r["name"] for r in rows], name=f"{pair}, {body} body",
                                     marker=dict(symbol=["circle" if r["converged"] else "x" for r in rows])),
                          row=1, col=1)
    with_sets = [v for v in doc["variants"] if v["sets"]]
    for name in sets:
        blocks = [v["sets"][name]["mse"] for v in with_sets]
        fig.add_trace(go.Bar(x=[f"{v['pair']}/{v['name']}" for v in with_sets], y=[b["mean"] for b in blocks],
                             error_y=error_bars(blocks), name=name), row=1, col=2)
    fig.update_xaxes(type="log", row=1, col=1, title="trainable parameters")
    fig.update_yaxes(type="log", title="MSE")
    fig.update_layout(template=TEMPLATE, height=420, barmode="group", margin=dict(t=40))
    return plotly_figure(fig, "partial", "Partial fine-tuning: the test MSE on the fine-tuning task against how many "
                                         "parameters each mode trains (pre-trained and random bodies, each pair; x = "
                                         "not converged), and every out-of-distribution set's MSE per variant; 95% CIs "
                                         "over seeds.")


STUDIES = {**{name: provider for name, provider in list(globals().items())
              if name.startswith(("table_", "edt_", "partial_", "fig_"))}, **MIXTURE}
