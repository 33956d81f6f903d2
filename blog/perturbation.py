"""The perturbation section: every `perturb*.json` of the run (graphpath.analysis.perturb's schema).

One document per kind of perturbed model (`target.model` is "handcrafted" or the checkpoint path;
the seeds of a group pooled, each listed in `models`), each with `settings` (kind, steps, ...),
`threshold`, `loss_before` (the largest over `models`), `runs` [{model, sigma, seed, curve
[[step, held-out loss], ...], loss_after, recovered, parameters}], `recovery` {repr(sigma):
{recovered, runs, rate, ci95 (Wilson)}}, and `protocol`: "study" only for the study's own
experiment (experiments/perturb-study.toml), else "package".

    perturb_method     Text    what was perturbed, in words
    perturb_summary    Text    per model: runs recovered, threshold, budget, basin radius
    fig_perturb        plotly  recovery curves, one panel per model, one colour per sigma
    fig_perturb_sigma  plotly  loss right after perturbing, and recovery rate, against sigma
"""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .figures import FLOOR, PALETTE, TEMPLATE
from .html import Html, Text, escape, plotly_figure
from .rundir import Run
from .values import fmt

DASHES = ["solid", "dash", "dot", "dashdot"]


def _documents(run: Run) -> list[dict]:
    if not run.perturb:
        raise LookupError("no perturb.json")
    for doc in run.perturb:
        if not doc["runs"]:
            raise ValueError("a perturb.json has no runs")
    return run.perturb


def target_name(doc: dict) -> str:
    target = doc["target"]
    if target["model"] == "handcrafted":
        return f"hand-built (n = {target['n']})"
    return f"learned ({target.get('stage') or 'final'} checkpoint, step {target.get('step')})"


def perturb_method(run: Run) -> Text:
    kinds = {"replace": "replace one randomly chosen weight matrix by Gaussian noise of scale σ",
             "all": "add Gaussian noise of scale σ to every parameter",
             "group": "add Gaussian noise of scale σ to the parameters named {group}"}
    methods = []
    for doc in _documents(run):
        settings = doc["settings"]
        method = kinds[settings["kind"]].format(group=settings.get("group"))
        if settings.get("scale") == "absolute":
            method += " (σ absolute, not relative to the tensor's RMS)"
        methods.append(f"{method} ({settings.get('optimizer', 'gradient descent')}, "
                       f"lr {fmt(settings['lr'])}, {settings['steps']} steps)")
    unique = list(dict.fromkeys(methods))
    return Text(unique[0] if len(unique) == 1 else "; ".join(
        f"{target_name(doc)}: {m}" for doc, m in zip(_documents(run), methods)))


def perturb_protocol(run: Run) -> Text:
    """Whose experiment this is: the study's own protocol is named as such, anything else is not."""
    protocols = {doc.get("protocol", "package") for doc in _documents(run)}
    if protocols == {"study"}:
        return Text("This is the study's own protocol (one weight matrix replaced by randn_like at absolute scale 1, "
                    "then Adam at learning rate 1e-6), which the study used as a cheap stand-in for the local "
                    "learning coefficient of singular learning theory")
    return Text("This is not the study's protocol (one matrix replaced by randn_like at absolute scale 1, Adam at "
                "learning rate 1e-6: experiments/perturb-study.toml) but this package's variant of it, with its "
                "own noise scale and optimiser")


def perturb_summary(run: Run) -> Text:
    parts = []
    for doc in _documents(run):
        rows = doc["recovery"]
        threshold = doc.get("threshold")
        by_sigma = "; ".join(f"σ = {fmt(float(s))}: {r['recovered']} of {r['runs']} "
                             f"(95% Wilson {fmt(r['ci95'][0])}–{fmt(r['ci95'][1])})" for s, r in rows.items())
        models = doc.get("models") or []
        if len(models) > 1:  # the seeds of a group, pooled; each judged against its own threshold
            before = [m["loss_before"] for m in models]
            limits = [m["threshold"] for m in models]
            parts.append(f"the {target_name(doc)} models ({len(models)} seeds, pooled; held-out loss "
                         f"{fmt(min(before))}–{fmt(max(before))} before perturbing, recovery thresholds "
                         f"{fmt(min(limits))}–{fmt(max(limits))}) recovered in {by_sigma}")
        else:
            parts.append(f"the {target_name(doc)} model (held-out loss {fmt(doc['loss_before'])} before perturbing, "
                         f"recovery threshold {fmt(threshold)}) recovered in {by_sigma}")
    return Text("; ".join(parts) + ". A fixed σ grid says how often each σ recovers, not where recovery stops: "
                "the bracketed radius below does")


def _mean(losses: list) -> float | None:
    """Mean of the finite losses (perturb.json writes a diverged loss as null)."""
    finite = [loss for loss in losses if loss is not None]
    return sum(finite) / len(finite) if finite else None


def _sigma_colours(docs: list[dict]) -> dict[float, str]:
    sigmas = sorted({r["sigma"] for doc in docs for r in doc["runs"]})
    return {sigma: PALETTE[i % len(PALETTE)] for i, sigma in enumerate(sigmas)}


def fig_perturb(run: Run) -> Html:
    docs = _documents(run)
    colours = _sigma_colours(docs)
    fig = make_subplots(rows=1, cols=len(docs), horizontal_spacing=0.12,  # own y range each
                        subplot_titles=[escape(target_name(doc)) for doc in docs])
    shown = set()
    for col, doc in enumerate(docs, 1):
        for r in doc["runs"]:
            steps, losses = zip(*r["curve"])
            first = r["sigma"] not in shown
            shown.add(r["sigma"])
            fig.add_trace(go.Scatter(
                x=list(steps), y=[None if loss is None else max(loss, FLOOR) for loss in losses],
                mode="lines", connectgaps=False,  # null = diverged (non-finite) loss
                line=dict(color=colours[r["sigma"]], dash="solid" if r["recovered"] else "dot"),
                name=f"σ = {r['sigma']:g}", legendgroup=str(r["sigma"]), showlegend=first,
                hovertemplate=(f"σ = {r['sigma']:g}, seed {r['seed']}, "
                               f"{'recovered' if r['recovered'] else 'not recovered'}"
                               "<br>step %{x}: loss %{y:.3g}<extra></extra>")), row=1, col=col)
        fig.add_hline(y=max(doc["threshold"], FLOOR), line=dict(color="gray", dash="dash"),
                      row=1, col=col)
        fig.update_xaxes(title_text="recovery step", row=1, col=col)
    fig.update_yaxes(type="log")
    fig.update_yaxes(title_text="held-out MSE (log)", row=1, col=1)
    fig.update_layout(template=TEMPLATE, height=420, margin=dict(t=50))
    return plotly_figure(fig, "perturb", "Recovery after perturbation: held-out loss during "
                         "gradient descent, one line per (σ, seed); dotted lines never reached "
                         "the recovery threshold (gray dashes; for several seeds, the largest of their thresholds).")


def fig_perturb_sigma(run: Run) -> Html:
    docs = _documents(run)
    fig = make_subplots(rows=1, cols=2, subplot_titles=["loss right after perturbing",
                                                        "fraction of seeds that recovered"])
    for i, doc in enumerate(docs):
        sigmas = sorted({r["sigma"] for r in doc["runs"]})
        after = [_mean([r["loss_after"] for r in doc["runs"] if r["sigma"] == s]) for s in sigmas]
        rate = [sum(bool(r["recovered"]) for r in doc["runs"] if r["sigma"] == s)
                / sum(r["sigma"] == s for r in doc["runs"]) for s in sigmas]
        style = dict(color=PALETTE[i % len(PALETTE)], dash=DASHES[i % len(DASHES)])
        name = escape(target_name(doc))
        fig.add_trace(go.Scatter(x=sigmas, y=[None if a is None else max(a, FLOOR) for a in after],
                                 mode="lines+markers",
                                 line=style, name=name, legendgroup=name), row=1, col=1)
        fig.add_trace(go.Scatter(x=sigmas, y=rate, mode="lines+markers", line=style, name=name,
                                 legendgroup=name, showlegend=False), row=1, col=2)
    fig.update_xaxes(type="log", title_text="σ (relative noise scale)")
    fig.update_yaxes(type="log", title_text="held-out MSE (log), mean over seeds", row=1, col=1)
    fig.update_yaxes(range=[-0.05, 1.05], title_text="recovered", row=1, col=2)
    fig.update_layout(template=TEMPLATE, height=380, margin=dict(t=50),
                      legend=dict(orientation="h", y=-0.25))
    return plotly_figure(fig, "perturb-sigma", "How hard each perturbation hits, and how often "
                         "gradient descent climbs back: the basin's width in σ.")


PERTURBATION = {"perturb_method": perturb_method, "perturb_summary": perturb_summary, "perturb_protocol": perturb_protocol,
                "fig_perturb": fig_perturb, "fig_perturb_sigma": fig_perturb_sigma}
