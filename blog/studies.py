"""The studies section: results of `python -m experiments.edt / partial / mixture` written inside
the run directory (`--out RUN_DIR/studies/NAME`), read as JSON only (docs/contracts.md, Studies).

    table_edt          Html  per model size N and D_F: D_T and the multiplier with 95% CIs
    edt_fit            Text  the fitted k, alpha, beta with CIs beside the paper's values
    table_partial      Html  per fine-tuning variant: trainable parameters, fine-tune MSE, OOD MSE
    table_mixture      Html  per mixture and test: coverage and MSE per model size
    mixture_verdict    Text  rank correlations of log MSE with coverage and with log N
    fig_edt_loss       plotly  held-out loss vs data, from scratch and fine-tuned, per N (95% CIs)
    fig_edt_transfer   plotly  D_T vs D_F with the fitted power law, and the multiplier
    fig_partial        plotly  fine-tune MSE vs trainable parameters, and every set's MSE per variant
    fig_mixture_coverage plotly  test MSE vs coverage per model size (95% CIs)
    fig_mixture_size   plotly  test MSE vs log N per (mixture, test) cell, coloured by coverage
"""
from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .figures import TEMPLATE
from .html import Html, Text, plotly_figure, table
from .rundir import Run
from .values import count, fmt, fmt_ci


def _study(run: Run, kind: str) -> dict:
    if kind not in run.studies:
        raise LookupError(f"no studies/*/{kind}.json")
    return run.studies[kind]


def table_edt(run: Run) -> Html:
    doc = _study(run, "edt")
    rows = [[count(s["N"]), count(s["D_F"]), fmt_ci(s["D_T"]), fmt_ci(s["multiplier"]),
             f"{s['ossified_seeds']} / {s['extrapolated_seeds']}"] for s in doc["summary"]]
    return table(["N (non-embedding)", "D_F", "D_T [95% CI]", "(D_F + D_T) / D_F", "seeds ossified / extrapolated"],
                 rows, "Effective data transferred per model size and fine-tuning set size")


def edt_fit(run: Run) -> Text:
    doc = _study(run, "edt")["fit"]
    paper = doc["paper"]
    if not doc.get("fit"):
        return Text(f"No power law could be fitted ({doc.get('reason', 'too few points')}); the paper's "
                    f"text-to-Python values are k = {fmt(paper['k'])}, α = {paper['alpha']}, β = {paper['beta']}.")
    fit = doc["fit"]
    parts = [f"{name} = {fmt_ci(dict(mean=fit[key]['value'], ci95=fit[key]['ci95']))}"
             for name, key in (("k", "k"), ("α", "alpha"), ("β", "beta"))]
    return Text(f"Fitting D_T = k·D_F^α·N^β to {doc['points']} points in the low-data regime "
                f"({doc['rule']}) gives {', '.join(parts)}; the paper's text-to-Python values are "
                f"k = {fmt(paper['k'])}, α = {paper['alpha']}, β = {paper['beta']}.")


def table_partial(run: Run) -> Html:
    doc = _study(run, "partial")
    sets = [name for name in doc["study"]["sets"] if name != "finetune"]
    rows = [[v["name"], count(v["trainable"]), fmt_ci(v["finetune_loss"])]
            + [fmt_ci(v["sets"][name]["mse"]) for name in sets] for v in doc["variants"]]
    return table(["variant", "trainable", "fine-tune MSE"] + [f"{name} MSE" for name in sets], rows,
                 f"Partial fine-tuning ({count(doc['total_parameters'])} parameters in all; 95% CIs over seeds)")


def table_mixture(run: Run) -> Html:
    doc = _study(run, "mixture")
    models = doc["models"]
    rows = []
    for mixture in doc["study"]["mixtures"]:
        for test in doc["study"]["tests"]:
            cells = {c["model"]: c for c in doc["cells"] if (c["mixture"], c["test"]) == (mixture, test)}
            first = cells[models[0]["index"]]
            rows.append([mixture, test, "yes" if first["families_in_mixture"] else "no", fmt(first["coverage"])]
                        + [fmt_ci(cells[m["index"]]["mse"]) for m in models])
    return table(["mixture", "test", "families in mixture", "coverage"] + [f"MSE, N = {count(m['N'])}" for m in models],
                 rows, "Test error by pre-training mixture (95% CIs over seeds)")


def mixture_verdict(run: Run) -> Text:
    a = _study(run, "mixture")["analysis"]
    return Text(f"Across {a['cells']} (mixture, test, model) cells, the rank correlation of log MSE with "
                f"coverage is {fmt(a['spearman_log_mse_vs_coverage'])} and with log N "
                f"{fmt(a['spearman_log_mse_vs_log_N'])}; coverage alone explains R² = {fmt(a['r2_coverage'])} "
                f"of the variance in log MSE, model size alone {fmt(a['r2_log_N'])}, both {fmt(a['r2_both'])}. "
                + _mixture_answer(a))


def _mixture_answer(a: dict) -> str:
    cov, size = a.get("r2_coverage"), a.get("r2_log_N")
    if cov is None or size is None:
        return "With no spread in the error there is nothing to attribute."
    if cov > size:
        return (f"In this run off-distribution error tracks coverage more than model size "
                f"(R² {fmt(cov)} against {fmt(size)}).")
    return (f"In this run coverage does not explain the error better than model size "
            f"(R² {fmt(cov)} against {fmt(size)}).")


def _error(blocks: list[dict]) -> dict:
    """Asymmetric plotly error bars from {mean, ci95} blocks (no bar where there is no CI)."""
    means = [b["mean"] for b in blocks]
    cis = [b.get("ci95") or [m, m] for b, m in zip(blocks, means)]
    return dict(type="data", symmetric=False,
                array=[None if m is None else c[1] - m for c, m in zip(cis, means)],
                arrayminus=[None if m is None else m - c[0] for c, m in zip(cis, means)])


def fig_edt_loss(run: Run) -> Html:
    doc = _study(run, "edt")
    fig = go.Figure()
    for curve in doc["curves"]:
        blocks = [p["loss"] for p in curve["points"]]
        fig.add_trace(go.Scatter(x=[p["D"] for p in curve["points"]], y=[b["mean"] for b in blocks],
                                 error_y=_error(blocks), mode="lines+markers", name=f"N = {count(curve['N'])}, {curve['arm']}",
                                 line=dict(dash="dot" if curve["arm"] == "scratch" else "solid")))
    fig.update_layout(template=TEMPLATE, height=380, margin=dict(t=30), xaxis=dict(type="log", title="graphs of the fine-tuning task"),
                      yaxis=dict(type="log", title="best held-out MSE"))
    return plotly_figure(fig, "edt-loss", "Best held-out MSE on the fine-tuning task against data: from scratch "
                                          "(dotted, D graphs) and pre-trained then fine-tuned (solid, D_F graphs), "
                                          "mean and 95% CI over seeds.")


def fig_edt_transfer(run: Run) -> Html:
    doc = _study(run, "edt")
    fit = (doc.get("fit") or {}).get("fit")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("D_T vs D_F", "(D_F + D_T) / D_F"))
    ladder = sorted({s["D_F"] for s in doc["summary"]})
    for n in sorted({s["N"] for s in doc["summary"]}):
        mine = [s for s in doc["summary"] if s["N"] == n and s["D_T"]["mean"] is not None]
        fig.add_trace(go.Scatter(x=[s["D_F"] for s in mine], y=[s["D_T"]["mean"] for s in mine], mode="markers",
                                 error_y=_error([s["D_T"] for s in mine]), name=f"N = {count(n)}",
                                 legendgroup=str(n)), row=1, col=1)
        fig.add_trace(go.Scatter(x=[s["D_F"] for s in mine], y=[s["multiplier"]["mean"] for s in mine],
                                 error_y=_error([s["multiplier"] for s in mine]), mode="lines+markers",
                                 name=f"N = {count(n)}", legendgroup=str(n), showlegend=False), row=1, col=2)
        if fit and ladder:
            grid = [ladder[0] * (ladder[-1] / ladder[0]) ** (i / 29) for i in range(30)]
            fig.add_trace(go.Scatter(x=grid, y=[fit["k"]["value"] * d ** fit["alpha"]["value"] * n ** fit["beta"]["value"]
                                                for d in grid], mode="lines", line=dict(dash="dash"),
                                     name=f"fit, N = {count(n)}", legendgroup=str(n)), row=1, col=1)
    fig.update_xaxes(type="log", title="D_F")
    fig.update_yaxes(type="log", row=1, col=1, title="D_T (negative values: ossified, not drawn on a log axis)")
    fig.update_layout(template=TEMPLATE, height=400, margin=dict(t=40))
    return plotly_figure(fig, "edt-transfer", "Data transferred D_T against fine-tuning data D_F with the fitted "
                                              "D_T = k·D_F^α·N^β (dashed), and the effective data multiplier (below 1: "
                                              "pre-training hurt); 95% CIs over seeds.")


def fig_partial(run: Run) -> Html:
    doc = _study(run, "partial")
    sets = [name for name in doc["study"]["sets"] if name != "finetune"]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.4, 0.6],
                        subplot_titles=("fine-tune MSE vs trainable parameters", "MSE on every set"))
    for body in doc["study"]["bodies"]:
        rows = sorted((r for r in doc["variants"] if r["body"] == body), key=lambda r: r["trainable"])
        fig.add_trace(go.Scatter(x=[r["trainable"] for r in rows], y=[r["finetune_loss"]["mean"] for r in rows],
                                 error_y=_error([r["finetune_loss"] for r in rows]), mode="markers",
                                 text=[r["name"] for r in rows], name=f"{body} body"), row=1, col=1)
    for name in sets:
        blocks = [v["sets"][name]["mse"] for v in doc["variants"]]
        fig.add_trace(go.Bar(x=[v["name"] for v in doc["variants"]], y=[b["mean"] for b in blocks],
                             error_y=_error(blocks), name=name), row=1, col=2)
    fig.update_xaxes(type="log", row=1, col=1, title="trainable parameters")
    fig.update_yaxes(type="log", title="MSE")
    fig.update_layout(template=TEMPLATE, height=420, barmode="group", margin=dict(t=40))
    return plotly_figure(fig, "partial", "Partial fine-tuning: the fine-tune loss against how many parameters "
                                         "each mode trains (pre-trained and random bodies), and every test set's "
                                         "MSE per variant; 95% CIs over seeds.")


def fig_mixture_coverage(run: Run) -> Html:
    doc = _study(run, "mixture")
    fig = go.Figure()
    for model in doc["models"]:
        mine = [c for c in doc["cells"] if c["model"] == model["index"]]
        fig.add_trace(go.Scatter(x=[c["coverage"] for c in mine], y=[c["mse"]["mean"] for c in mine],
                                 error_y=_error([c["mse"] for c in mine]), mode="markers", name=f"N = {count(model['N'])}",
                                 text=[f"{c['mixture']} → {c['test']}" for c in mine]))
    fig.update_layout(template=TEMPLATE, height=400, margin=dict(t=30),
                      xaxis=dict(title="coverage of the test set by the pre-training data", range=[-0.03, 1.03]),
                      yaxis=dict(type="log", title="test MSE"))
    return plotly_figure(fig, "mixture-coverage", "Test error against coverage, one point per (mixture, test) "
                                                  "cell and model size; mean and 95% CI over seeds.")


def fig_mixture_size(run: Run) -> Html:
    doc = _study(run, "mixture")
    models = sorted(doc["models"], key=lambda m: m["N"])
    fig = go.Figure()
    for mixture in doc["study"]["mixtures"]:
        for test in doc["study"]["tests"]:
            cells = {c["model"]: c for c in doc["cells"] if (c["mixture"], c["test"]) == (mixture, test)}
            row = [cells[m["index"]] for m in models]
            fig.add_trace(go.Scatter(x=[math.log10(m["N"]) for m in models], y=[c["mse"]["mean"] for c in row],
                                     error_y=_error([c["mse"] for c in row]), mode="lines+markers", showlegend=False,
                                     name=f"{mixture} → {test}", hovertemplate="%{y:.3g}",
                                     marker=dict(color=[c["coverage"] for c in row], cmin=0, cmax=1,
                                                 colorscale="Viridis", showscale=mixture == next(iter(doc["study"]["mixtures"]))
                                                 and test == next(iter(doc["study"]["tests"])),
                                                 colorbar=dict(title="coverage")),
                                     line=dict(color="rgba(120,120,120,0.35)")))
    fig.update_layout(template=TEMPLATE, height=400, margin=dict(t=30),
                      xaxis=dict(title="log10 N (non-embedding parameters)", tickvals=[math.log10(m["N"]) for m in models],
                                 ticktext=[count(m["N"]) for m in models]),
                      yaxis=dict(type="log", title="test MSE"))
    return plotly_figure(fig, "mixture-size", "The same cells against model size: one line per (mixture, test), "
                                              "markers coloured by coverage. If error followed size, lines would "
                                              "fall left to right; if it follows coverage, colours sort the lines.")


STUDIES = {name: provider for name, provider in list(globals().items())
           if name.startswith(("table_", "edt_", "mixture_", "fig_"))}
