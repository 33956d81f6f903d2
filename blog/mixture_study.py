"""The mixture study's part of the studies section (`python -m experiments.mixture --out
RUN_DIR/studies/mixture` writes studies/*/mixture.json; read as JSON only).

    table_mixture          Html    per mixture and test: input coverage, label support, unseen ids, MSE per size
    mixture_verdict        Text    the slopes of log MSE on coverage and log N with their intervals
    mixture_notes          Text    the convergence gate and what the preset can answer
    table_mixture_gate     Html    per pre-training job: the gate's two values, their change, the loss it is judged against
    fig_mixture_coverage   plotly  test MSE vs coverage per model size (95% CIs)
    fig_mixture_size       plotly  test MSE vs N per (mixture, test) cell, coloured by coverage
"""
from __future__ import annotations

import math

import plotly.graph_objects as go

from .figures import TEMPLATE
from .html import Html, Text, plotly_figure, table
from .rundir import Run
from .study_notes import answers_text, converged_mark, error_bars, gate_text
from .values import count, fmt, fmt_ci


def study(run: Run, kind: str) -> dict:
    if kind not in run.studies:
        raise LookupError(f"no studies/*/{kind}.json")
    return run.studies[kind]


def table_mixture(run: Run) -> Html:
    doc = study(run, "mixture")
    models = doc["models"]
    rows = []
    for mixture in doc["study"]["mixtures"]:
        for test in doc["study"]["tests"]:
            cells = {c["model"]: c for c in doc["cells"] if (c["mixture"], c["test"]) == (mixture, test)}
            first = cells[models[0]["index"]]
            rows.append([mixture, test, "yes" if first["families_in_mixture"] else "no", fmt(first["coverage"]),
                         fmt(first["label_support"]), fmt(first["unseen_ids"])]
                        + [fmt_ci(cells[m["index"]]["mse"]) + converged_mark(cells[m["index"]]["converged"])
                           for m in models])
    return table(["mixture", "test", "families in mixture", "input coverage", "label support", "unseen ids"]
                 + [f"MSE, N = {count(m['N'])}" for m in models], rows,
                 "Test error by pre-training mixture (one test sample per seed; 95% CIs over seeds)")


def mixture_verdict(run: Run) -> Text:
    a = study(run, "mixture")["analysis"]
    excluded = (f"{a.get('excluded_unconverged', 0)} cells left out as not converged, "
                f"{a.get('excluded_unseen_ids', 0)} as using vertex ids training never used")
    if not a.get("fit"):
        return Text(f"No regression was fitted ({a.get('reason')}; {excluded}).")
    parts = []
    for term, label in (("coverage", "input coverage"), ("log_N", "log N")):
        if term in a["fit"]:
            value = a["fit"][term]
            verdict = "excludes 0: a finding" if value["finding"] else "includes 0"
            parts.append(f"on {label} {fmt(value['value'])} [{fmt(value['ci'][0])}, {fmt(value['ci'][1])}] ({verdict})"
                         if value["ci"] else f"on {label} {fmt(value['value'])} (one seed: no interval)")
    size = "" if a["size_law"] else f" Model size is not in the regression: {a['size_law_reason']}."
    r2 = a.get("r2", {})
    return Text(f"Across {a['cells']} (mixture, test, model) cells ({excluded}), the slope of log test MSE "
                + "; ".join(parts) + f" (per-seed fits, t-intervals over {a['seeds']} seeds at the Bonferroni level "
                f"{1 - (1 - a['confidence']) / a['bonferroni']:.3g}). R² of coverage alone {fmt(r2.get('coverage'))}, "
                f"of log N alone {fmt(r2.get('log_N'))}, of both {fmt(r2.get('both'))}.{size}")


def mixture_notes(run: Run) -> Text:
    doc = study(run, "mixture")
    gate = doc.get("gate") or {}
    why = ""
    if gate.get("schedule"):
        why += f" Pre-training schedule: {gate['schedule']}."
    if gate.get("rationale"):
        why += f" Why this criterion: {gate['rationale']}"
    return Text(gate_text(doc) + why + " " + answers_text(doc))


def table_mixture_gate(run: Run) -> Html:
    """Each pre-training job's verdict: the two values the gate compared (the half-length run's and
    the full run's final validation loss under method "halving", else the two windows), the change,
    the constant predictor's loss the `learned` ratio divides by, and the reason."""
    doc = study(run, "mixture")
    verdicts = (doc.get("gate") or {}).get("verdicts") or {}
    rows = []
    for key, v in sorted(verdicts.items()):
        constant = v["last"] / v["ratio"] if v.get("ratio") else None
        rows.append([key + converged_mark(v["converged"]), count(v["half_steps"]) if v.get("half_steps") else "—",
                     fmt(v.get("previous")), fmt(v.get("last")),
                     f"{v['change']:.1%}" if v.get("change") is not None else "—", fmt(constant), v.get("reason", "")])
    return table(["job (mixture-model-seed)", "half-length steps", "compared value (half run or earlier window)",
                  "final value", "improvement", "constant-predictor loss", "verdict"], rows,
                 "The convergence gate per pre-training job (improvement = earlier / final - 1)")


def fig_mixture_coverage(run: Run) -> Html:
    doc = study(run, "mixture")
    fig = go.Figure()
    for model in doc["models"]:
        mine = [c for c in doc["cells"] if c["model"] == model["index"]]
        fig.add_trace(go.Scatter(x=[c["coverage"] for c in mine], y=[c["mse"]["mean"] for c in mine],
                                 error_y=error_bars([c["mse"] for c in mine]), mode="markers", name=f"N = {count(model['N'])}",
                                 marker=dict(symbol=["circle" if c["converged"] else "x" for c in mine]),
                                 text=[f"{c['mixture']} → {c['test']}" for c in mine]))
    fig.update_layout(template=TEMPLATE, height=400, margin=dict(t=30),
                      xaxis=dict(title="input coverage of the test set by the pre-training data", range=[-0.03, 1.03]),
                      yaxis=dict(type="log", title="test MSE"))
    return plotly_figure(fig, "mixture-coverage", "Test error against input coverage, one point per (mixture, test) "
                                                  "cell and model size; mean and 95% CI over seeds; x = not converged.")


def fig_mixture_size(run: Run) -> Html:
    doc = study(run, "mixture")
    models = sorted(doc["models"], key=lambda m: m["N"])
    mixtures, tests = list(doc["study"]["mixtures"]), list(doc["study"]["tests"])
    fig = go.Figure()
    for mixture in mixtures:
        for test in tests:
            cells = {c["model"]: c for c in doc["cells"] if (c["mixture"], c["test"]) == (mixture, test)}
            row = [cells[m["index"]] for m in models]
            fig.add_trace(go.Scatter(x=[math.log10(m["N"]) for m in models], y=[c["mse"]["mean"] for c in row],
                                     error_y=error_bars([c["mse"] for c in row]), mode="lines+markers", showlegend=False,
                                     name=f"{mixture} → {test}", hovertemplate="%{y:.3g}",
                                     marker=dict(color=[c["coverage"] for c in row], cmin=0, cmax=1, colorscale="Viridis",
                                                 showscale=(mixture, test) == (mixtures[0], tests[0]),
                                                 colorbar=dict(title="coverage")),
                                     line=dict(color="rgba(120,120,120,0.35)")))
    fig.update_layout(template=TEMPLATE, height=400, margin=dict(t=30),
                      xaxis=dict(title="log10 N (non-embedding parameters)", tickvals=[math.log10(m["N"]) for m in models],
                                 ticktext=[count(m["N"]) for m in models]),
                      yaxis=dict(type="log", title="test MSE"))
    return plotly_figure(fig, "mixture-size", "The same cells against model size: one line per (mixture, test), "
                                              "markers coloured by coverage. If error followed size, lines would "
                                              "fall left to right; if it follows coverage, colours sort the lines.")


MIXTURE = {"table_mixture": table_mixture, "mixture_verdict": mixture_verdict, "mixture_notes": mixture_notes,
           "table_mixture_gate": table_mixture_gate,
           "fig_mixture_coverage": fig_mixture_coverage, "fig_mixture_size": fig_mixture_size}
