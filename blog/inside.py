"""The "inside the models" section: `interpret.json`, `llc.json` and `basin.json` of the run
(graphpath.analysis.interpret, graphpath.analysis.llc and graphpath.analysis.basin schemas, docs/contracts.md).

    interpret_summary Text    probes at the last layer against the random-init baseline and the
                             hand-built reference; attention along edges; patching
    fig_probes       plotly  probe accuracy / R^2 per layer, trained vs random init
    hops_by_layer    Text    per k, the first layer whose within-k-hops probe beats random init
    fig_hops_heatmap plotly  within-k-hops accuracy minus random init, per layer and k
    offpath_summary  Text    the fine-tuned model's probes on on-path vs off-path targets and what
                             they say about why off-path targets fail
    llc_summary      Text    LLC per model with its calibration and diagnostics
    basin_summary    Text    bracketed basin radius per model (with the LLC beside it)
    table_basin_llc  Html    per model: the bracketed radius beside the LLC and its chosen setting
"""
from __future__ import annotations

import json

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from graphpath_common.rundir import RunDir

from .figures import TEMPLATE
from .html import Html, Text, plotly_figure, table
from .rundir import Run
from .values import fmt


FILES = {"interpret": lambda run: RunDir(run.path).interpret, "llc": lambda run: RunDir(run.path).llc,
         "basin": lambda run: RunDir(run.path).basin}


def _read(run: Run, key: str) -> dict:
    path = FILES[key](run)
    if not path.is_file():
        raise LookupError(f"no {path.name}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is damaged ({err})") from None


def available(run: Run) -> dict[str, bool]:
    return {key: where(run).is_file() for key, where in FILES.items()}


def _mean(values: list) -> float:
    return sum(values) / len(values)


def interpret_summary(run: Run) -> Text:
    doc = _read(run, "interpret")
    trained, random, hand = doc["trained"], doc["random"], doc["handcrafted"]
    att = trained["attention"]
    ratios = [a / u for name in att for a, u in zip(att[name]["along_edges"], att[name]["uniform"]) if u > 0]
    patch = doc["patching"]
    best = max(patch, key=lambda p: patch[p]["edges"] or 0)
    return Text(
        f"at the last layer a linear probe on the target token reads “v within k hops of vertex 1” "
        f"with held-out accuracy {fmt(_mean(trained['hops'][-1]))} (random init "
        f"{fmt(_mean(random['hops'][-1]))}, majority class {fmt(_mean(trained['hops_majority'][-1]))}) "
        f"and the distance with R² {fmt(trained['distance_r2'][-1])} (random init "
        f"{fmt(random['distance_r2'][-1])}); the hand-built model's own stream gives accuracy "
        f"{fmt(min(hand['hops']))} and R² {fmt(hand['distance_r2'])}. Edge-token queries put "
        f"{fmt(min(ratios))}–{fmt(max(ratios))} times the uniform share of attention on edges that "
        f"share a vertex with theirs; patching clean edge tokens at {best} restores "
        f"{fmt(patch[best]['edges'])} of the output gap")


def fig_probes(run: Run) -> Html:
    doc = _read(run, "interpret")
    layers = doc["trained"]["layers"]
    fig = make_subplots(rows=1, cols=3, subplot_titles=("within k hops", "distance R²", "edge endpoints"))
    for name, key, dash in (("trained", "trained", "solid"), ("random init", "random", "dash")):
        res = doc[key]
        for col, ys in enumerate(([_mean(r) for r in res["hops"]], res["distance_r2"], res["endpoints"]), 1):
            fig.add_trace(go.Scatter(x=layers, y=ys, name=name, legendgroup=name, showlegend=col == 1,
                                     line=dict(dash=dash)), row=1, col=col)
    fig.update_layout(template=TEMPLATE, height=360, margin=dict(t=40))
    return plotly_figure(fig, "probes", "Linear probes per layer on held-out graphs: the trained model "
                                        "(solid) against a randomly initialised one of the same shape (dashed).")


VERDICTS = {
    "no-failure": "so off-path targets do not fail for this model, and there is nothing for the probes to explain",
    "readout": "so the stream does hold the distance to an off-path target — a linear probe fitted on those "
               "graphs reads it — but the model's own read-out, tuned on on-path targets, does not use it: the "
               "failure is in the read-out, not in the search",
    "no-reach-signal": "but the within-k-hops probes off path do no better than on a randomly initialised model "
                       "of the same shape, so at this scale the probes cannot say whether the search or the "
                       "read-out fails",
    "reach-not-distance": "so reachability from vertex 1 is as readable off path as on it, but the distance to "
                          "the target is not: the model computes the search yet does not tie its result to an "
                          "off-path target",
    "reach-missing": "so reachability itself is less readable when the target is off the path: the search is "
                     "already missing what the answer needs",
}


def offpath_summary(run: Run) -> Text:
    doc = _read(run, "interpret")
    off = doc.get("offpath")
    if not off or "layers" not in off:
        return Text("the off-path comparison was not measured (too few off-path graphs, or an interpret.json "
                    "from before it existed: rerun python -m graphpath.interpret)")
    best = lambda values: max((v for v in values if v is not None), default=None)  # noqa: E731
    return Text(
        f"The {doc.get('stage') or 'inspected'} model has MSE {fmt(off['mse_on'])} when the target is on a "
        f"shortest 1–2 path and {fmt(off['mse_off'])} when it is not ({off['on_count']} and {off['off_count']} "
        f"held-out graphs). Probes fitted on each kind read the distance with best R² {fmt(best(off['distance_r2_on']))} "
        f"on path and {fmt(best(off['distance_r2_off']))} off path (a probe fitted on path reaches "
        f"{fmt(best(off['distance_r2_transfer']))} off path), and within-k-hops reachability with accuracy "
        f"{fmt(best(off['hops_on']))} and {fmt(best(off['hops_off']))}"
        + (f" (random init, off path: {fmt(best(off['hops_off_random']))})" if "hops_off_random" in off else "")
        + "; "
        + VERDICTS.get(off["verdict"], f"verdict {off['verdict']}"))


MARGIN = 0.02  # accuracy over the random-init probe that counts as "knows"


def _layer_label(name: str) -> str:
    return "embed" if "embed" in name else name.split(".")[1]


def hops_by_layer(run: Run) -> Text:
    doc = _read(run, "interpret")
    trained, random = doc["trained"], doc["random"]
    parts = []
    for k in doc["hops_k"]:
        first = next((layer for layer, a, r in zip(trained["layers"], trained["hops"], random["hops"])
                      if a[k] is not None and r[k] is not None and a[k] >= r[k] + MARGIN), None)
        label = None if first is None else _layer_label(first)
        parts.append(f"k = {k}: {'never' if label is None else label if label == 'embed' else 'block ' + label}")
    return Text(f"the first stream point where the within-k-hops probe beats the random-init probe by "
                f"{MARGIN} or more — {'; '.join(parts)} (“embed” is before block 0; the hand-built model "
                f"needs block k for k hops)")


def fig_hops_heatmap(run: Run) -> Html:
    doc = _read(run, "interpret")
    trained, random = doc["trained"], doc["random"]
    z = [[None if a is None or r is None else a - r for a, r in zip(row, base)]
         for row, base in zip(trained["hops"], random["hops"])]
    fig = go.Figure(go.Heatmap(z=[list(col) for col in zip(*z)], x=[_layer_label(l) for l in trained["layers"]],
                               y=[f"k = {k}" for k in doc["hops_k"]], colorscale="RdBu", zmid=0,
                               colorbar=dict(title="Δ accuracy")))
    fig.update_layout(template=TEMPLATE, height=320, margin=dict(t=20), xaxis_title="stream point (block)",
                      yaxis_title="hops")
    return plotly_figure(fig, "hops-heatmap", "Held-out accuracy of the “v within k hops of vertex 1” probes, "
                                              "trained model minus random init, per layer and k (mean over v).")


def llc_summary(run: Run) -> Text:
    doc = _read(run, "llc")
    parts = []
    for name, result in doc["models"].items():
        est = result["estimate"]
        if est is None:
            parts.append(f"{name}: no calibrated estimate (every ε × γ setting tried diverged, went "
                         f"negative or kept climbing)")
            continue
        s = est["settings"]
        parts.append(f"{name}: {fmt(est['llc'])} ± {fmt(est['llc_std'])} ({result['parameter_count']} "
                     f"parameters; ε {s['eps']:g}, γ {s['gamma']:g}, {s['chains']} chains; "
                     f"{fmt(est['below_init'])} of steps below the starting loss"
                     f"{'' if est['ok'] else '; calibration failed'})")
    rule = doc.get("calibration_rule")
    return Text("; ".join(parts) + (f". The setting is chosen by rule: {rule}" if rule else ""))


def basin_summary(run: Run) -> Text:
    doc = _read(run, "basin")
    parts = []
    for name, r in doc["models"].items():
        interval = f"[{fmt(r['lo'])}, {fmt(r['hi'])}]"
        parts.append(f"{name}: σ in {interval} after {len(r['trials'])} tries"
                     + ("" if r["closed"] else " (bracket not closed)")
                     + (f", LLC {fmt(r['llc'])}" if r.get("llc") is not None else ""))
    return Text("; ".join(parts))


def table_basin_llc(run: Run) -> Html:
    basin = _read(run, "basin")["models"]
    llc = _read(run, "llc")["models"] if available(run)["llc"] else {}
    rows = []
    for name, r in basin.items():
        target = r.get("target") or {}
        key = target.get("stage", "finetune") if name == "learned" else name
        est = (llc.get(key) or {}).get("estimate")
        interval = f"[{fmt(r['lo'])}, {fmt(r['hi'])}]" + ("" if r["closed"] else " (open)")
        if r.get("note"):
            interval += " — unperturbed loss above the threshold: this measures training, not a basin"
        if est is not None:
            value = f"{fmt(est['llc'])} ± {fmt(est['llc_std'])}"
            setting = f"ε {est['settings']['eps']:g}, γ {est['settings']['gamma']:g}"
        else:
            value = fmt(r["llc"]) if r.get("llc") is not None else ("calibration failed" if key in llc else "—")
            setting = "—"
        label = {"learned": f"learned ({key})", "handcrafted": "hand-built",
                 "handcrafted-soft": f"hand-built, sharpness lowered (β_hop {target.get('beta_hop')}, "
                                     f"β_copy {target.get('beta_copy')})"}.get(name, name)
        rows.append([label, interval, len(r["trials"]), fmt(r.get("loss_before")), value, setting])
    return table(["model", "basin radius σ (recovers, fails)", "σ tried", "loss before", "LLC", "LLC setting"], rows,
                 "The bracketed basin radius beside the local learning coefficient, per model")


INSIDE = {"interpret_summary": interpret_summary, "fig_probes": fig_probes, "llc_summary": llc_summary,
          "basin_summary": basin_summary, "offpath_summary": offpath_summary, "table_basin_llc": table_basin_llc,
          "hops_by_layer": hops_by_layer, "fig_hops_heatmap": fig_hops_heatmap}
