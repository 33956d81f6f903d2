"""The studies section: results of `python -m experiments.edt / partial / mixture` written inside
the run directory (`--out RUN_DIR/studies/NAME`), read as JSON only (docs/contracts.md, Studies).

    table_edt          Html  per model size N and D_F: D_T and the multiplier with 95% CIs
    edt_fit            Text  the fitted k, alpha, beta with CIs beside the paper's values
    table_partial      Html  per fine-tuning variant: trainable parameters, fine-tune MSE, OOD MSE
    table_mixture      Html  per mixture and test: coverage and MSE per model size
    mixture_verdict    Text  rank correlations of log MSE with coverage and with log N
"""
from __future__ import annotations

from .html import Html, Text, table
from .rundir import Run
from .values import count, fmt


def _study(run: Run, kind: str) -> dict:
    if kind not in run.studies:
        raise LookupError(f"no studies/*/{kind}.json")
    return run.studies[kind]


def _ci(block: dict) -> str:
    if block.get("mean") is None:
        return "—"
    ci = block.get("ci95")
    return fmt(block["mean"]) + (f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "")


def table_edt(run: Run) -> Html:
    doc = _study(run, "edt")
    rows = [[count(s["N"]), count(s["D_F"]), _ci(s["D_T"]), _ci(s["multiplier"]),
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
    parts = [f"{name} = {_ci(dict(mean=fit[key]['value'], ci95=fit[key]['ci95']))}"
             for name, key in (("k", "k"), ("α", "alpha"), ("β", "beta"))]
    return Text(f"Fitting D_T = k·D_F^α·N^β to {doc['points']} points in the low-data regime "
                f"({doc['rule']}) gives {', '.join(parts)}; the paper's text-to-Python values are "
                f"k = {fmt(paper['k'])}, α = {paper['alpha']}, β = {paper['beta']}.")


def table_partial(run: Run) -> Html:
    doc = _study(run, "partial")
    sets = [name for name in doc["study"]["sets"] if name != "finetune"]
    rows = [[v["name"], count(v["trainable"]), _ci(v["finetune_loss"])]
            + [_ci(v["sets"][name]["mse"]) for name in sets] for v in doc["variants"]]
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
                        + [_ci(cells[m["index"]]["mse"]) for m in models])
    return table(["mixture", "test", "families in mixture", "coverage"] + [f"MSE, N = {count(m['N'])}" for m in models],
                 rows, "Test error by pre-training mixture (95% CIs over seeds)")


def mixture_verdict(run: Run) -> Text:
    a = _study(run, "mixture")["analysis"]
    return Text(f"Across {a['cells']} (mixture, test, model) cells, the rank correlation of log MSE with "
                f"coverage is {fmt(a['spearman_log_mse_vs_coverage'])} and with log N "
                f"{fmt(a['spearman_log_mse_vs_log_N'])}; coverage alone explains R² = {fmt(a['r2_coverage'])} "
                f"of the variance in log MSE, model size alone {fmt(a['r2_log_N'])}, both {fmt(a['r2_both'])}.")


STUDIES = {name: provider for name, provider in list(globals().items())
           if name.startswith(("table_", "edt_", "mixture_"))}
