"""From per-example predictions to eval.json's intervals, subgroups, reproduction rows and findings.

Shapes
    S  seeds (runs pooled), B  graphs in a set

`graphpath.evaluation.suite` scores every model on every set and keeps each run's raw
predictions; `attach(doc, ...)` then
- replaces each learned set block's intervals with ones over seeds *and* test graphs, on log MSE
  and logit accuracy (graphpath.evaluation.statistics; `ci_kind` "seeds+graphs", or "graphs" for
  one seed),
- breaks every set down into subgroups (graphpath.evaluation.subgroups) -> doc["subgroups"],
  and the on-path (n, distance) grid of test-onpath-large -> doc["onpath_grid"],
- adds normalized MSE and accuracy to the study's rows (the study's MSE over its set's label
  variance, graphpath_common.study.STUDY_LABEL_VARIANCE),
- tests the findings (graphpath.evaluation.findings) -> doc["findings"].
"""
from __future__ import annotations

import numpy as np

from graphpath_common.study import STUDY_LABEL_VARIANCE

from graphpath.evaluation import findings as findings_module
from graphpath.evaluation.statistics import mean_log, mean_logit
from graphpath.evaluation.subgroups import (MIN_GRAPHS_FOR_INTERVAL, errors, example_groups, onpath_grid,
                                             subgroup_table)

LEARNED = ("learned", "learned-pretrain")


def set_groups(prepared: dict, data: dict, seen: dict | None) -> dict:
    """{set: {dimension: (B,) names}}; seen: {set: (B,) status} or None."""
    out = {}
    for name, (evalset, batch, _) in prepared.items():
        groups = example_groups(batch, data)
        if seen and name in seen:
            groups["seen"] = seen[name]
        out[name] = groups
    return out


def set_intervals(block: dict, predictions: np.ndarray, label: np.ndarray) -> None:
    """The block's MSE and accuracy intervals over seeds and graphs (in place)."""
    squared, hits = errors(predictions, label)
    mse, accuracy = mean_log(squared), mean_logit(hits)
    block["mse_ci95"] = None if mse.low is None else [mse.low, mse.high]
    block["accuracy_ci95"] = None if accuracy.low is None else [accuracy.low, accuracy.high]
    block["ci_kind"] = mse.kind
    block["seeds"] = int(squared.shape[0])


def reproduction_extras(rows: list[dict], doc: dict, predictions: dict, prepared: dict) -> None:
    """Normalized MSE (ours and the study's), accuracy with its interval, and the basis of every
    number (pooled seeds x graphs, or one seed) on the study's rows (in place)."""
    for row in rows:
        values = predictions.get(row.get("model"), {}).get(row["set"])
        if row["source"].startswith("phases.json") or row["mse"] is None:
            values = None
        study_var = STUDY_LABEL_VARIANCE.get(row["set"])
        row["study_normalized_mse"] = None if study_var is None else row["study_mse"] / study_var
        if values is None or row["set"] not in prepared:
            row.update(normalized_mse=None, normalized_ci95=None, accuracy=None, accuracy_ci95=None,
                       basis=row.get("basis") or row["source"])
            continue
        label = prepared[row["set"]][1].label.numpy()
        squared, hits = errors(values, label)
        mse, accuracy = mean_log(squared), mean_logit(hits)
        variance = float(label.var())
        scale = variance if variance > 0 else None
        row.update(mse=mse.value, mse_ci95=None if mse.low is None else [mse.low, mse.high], ci_kind=mse.kind,
                   normalized_mse=None if scale is None else mse.value / scale,
                   normalized_ci95=None if mse.low is None or scale is None else [mse.low / scale, mse.high / scale],
                   accuracy=accuracy.value, accuracy_ci95=None if accuracy.low is None else [accuracy.low, accuracy.high],
                   constant_mse=variance,
                   basis=(f"pooled: {squared.shape[0]} seeds x {squared.shape[1]:,} graphs" if squared.shape[0] > 1
                          else f"1 seed, {squared.shape[1]:,} graphs"))


def attach(doc: dict, predictions: dict, prepared: dict, data: dict, phases_per_run: list, seen: dict | None) -> None:
    """Fill doc's intervals, subgroups, on-path grid, reproduction extras and findings (in place).

    predictions: {model label: {set: (S, B)}} for the learned entries; seen: {set: (B,) status}."""
    groups = set_groups(prepared, data, seen)
    batches = {name: batch for name, (_, batch, _) in prepared.items()}
    subgroups = {}
    for model in LEARNED:
        entry = doc["models"].get(model)
        if entry is None or model not in predictions:
            continue
        for name, values in predictions[model].items():
            set_intervals(entry["results"][name], values, batches[name].label.numpy())
        subgroups[model] = {name: subgroup_table(values, batches[name], groups[name])
                            for name, values in predictions[model].items()}
    if doc.get("primary") in doc["models"]:
        for name, block in doc["sets"].items():
            source = doc["models"][doc["primary"]]["results"].get(name)
            if source is not None:
                block.update({k: source[k] for k in ("mse_ci95", "accuracy_ci95", "ci_kind", "seeds") if k in source})
    doc["subgroups"] = {"dimensions": sorted({d for g in groups.values() for d in g}), "models": subgroups,
                        "min_graphs_for_interval": MIN_GRAPHS_FOR_INTERVAL,
                        "shares": {name: {dim: {g: float((names == g).mean()) for g in sorted(set(names))}
                                          for dim, names in groups[name].items()} for name in groups}}
    learned = predictions.get("learned", {})
    if "test-onpath-large" in learned:
        doc["onpath_grid"] = {"set": "test-onpath-large", "model": "learned",
                              "subgroup": "on-path targets t != 2",
                              **onpath_grid(learned["test-onpath-large"], batches["test-onpath-large"],
                                            groups["test-onpath-large"])}
    reproduction_extras(doc["reproduction"], doc, predictions, prepared)
    if predictions:
        evidence = findings_module.Evidence(predictions, batches, groups, data)
        doc["findings"] = findings_module.findings(evidence, phases_per_run)
        doc["findings_note"] = findings_module.binomial_note(phases_per_run)
        seeds = [i.get("seed") for i in (doc["models"].get("learned") or {}).get("info") or []]
        doc["threshold_provenance"] = findings_module.threshold_provenance(seeds)
