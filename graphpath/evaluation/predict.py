"""Score any `model(GraphBatch) -> distances` on prepared evaluation sets, and pool runs.

Shapes
    B  graphs in a set, C  graphs in one inference chunk, M  edge slots

`predict` is the one inference loop of the package (evaluation, training's held-out sets and
figures): batched under `torch.no_grad()`, chunks sorted by edge count so each chunk trims its
padding (never a Python loop per graph), optionally under the caller's autocast and with the
learned model's edge-count buckets inside each chunk. `score_model` returns one result block
per set (metrics.score, plus per-cell tables for the grid); `pool_runs` turns several runs'
blocks into means with t-intervals across seeds.
"""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch
from tqdm import tqdm

from data_gen import GraphBatch

from graphpath.evaluation.raw_outputs import pool_histograms, raw_histogram
from graphpath.evaluation.sets import EvalError, EvalSet, grid_axes
from graphpath.evaluation.scores import cell_scores, mean_ci, score


def model_vocabulary(model, info: dict | None = None) -> int | None:
    """The largest vertex id (= unreachable label) a model speaks, where it says so."""
    config = (info or {}).get("model_config") or {}
    for source in (config, getattr(getattr(model, "config", None), "__dict__", {}), model.__dict__):
        value = source.get("max_vertices")
        if isinstance(value, int):
            return value
    return None


def predict(model, batch: GraphBatch, device="cpu", chunk: int = 4096, autocast=None,
            buckets: int = 1, pack: bool = False) -> np.ndarray:
    """(B,) float64 predictions of `model` on every graph of `batch`, in the batch's order.

    autocast: None, or a callable returning a context manager the model runs under (training's
    `Runtime.autocast`); the outputs are read as float32 first. buckets > 1 is passed on as
    `model(part, buckets=buckets)` (the learned model's edge-count bucketing within a chunk); pack
    as `model(part, pack=True)` (the learned model's packed layout)."""
    training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    order = torch.argsort(batch.num_edges, stable=True)  # similar widths share a chunk
    out = torch.empty(len(batch), dtype=torch.float64)
    try:
        with torch.no_grad():
            for start in range(0, len(batch), chunk):
                index = order[start:start + chunk]
                part = batch[index].trim().to(device)
                with autocast() if autocast is not None else nullcontext():
                    if pack:
                        value = model(part, pack=True)  # (C,)
                    else:
                        value = model(part, buckets=buckets) if buckets > 1 else model(part)  # (C,)
                if not isinstance(value, torch.Tensor) or value.shape != (len(index),):
                    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                    raise EvalError(f"model returned {shape}, expected distances of shape ({len(index)},)")
                out[index] = value.detach().float().to("cpu", torch.float64)
    finally:
        if training and hasattr(model, "train"):
            model.train()
    return out.numpy()


def expressible(evalset: EvalSet, vocabulary: int | None) -> str | None:
    """Why a model with this vocabulary cannot be scored on the set (None if it can)."""
    if vocabulary is None or vocabulary == evalset.spec.max_vertices:
        return None
    return (f"set {evalset.name} needs vertex ids and the unreachable label up to {evalset.spec.max_vertices}, "
            f"the model's vocabulary is {vocabulary}: skipped")


def score_set(evalset: EvalSet, batch: GraphBatch, prediction: np.ndarray) -> dict:
    label = batch.label.numpy()
    block = score(prediction, label, batch.max_vertices)
    block["raw_histogram"] = raw_histogram(prediction, label, batch.max_vertices)
    if evalset.kind == "grid":
        n_values, t_values = grid_axes(batch.max_vertices)
        n, t = batch.num_vertices.numpy(), batch.target.numpy()
        block["cells"] = {"n": n_values, "t": t_values,
                          **cell_scores(prediction, label, n, t, n_values, t_values)}
        distances = list(range(1, batch.max_vertices + 1))
        block["by_distance"] = {"n": n_values, "d": distances,
                                **cell_scores(prediction, label, n, label, n_values, distances)}
    block.update(runs=1, ci_kind="graphs")
    return block


def score_model(model, prepared: dict, vocabulary: int | None, device="cpu", label: str = "model",
                progress: bool = True, only: list[str] | None = None) -> tuple[dict, dict]:
    """({set: block}, {set: reason skipped}) for one model on the prepared sets.

    prepared: {name: (EvalSet, GraphBatch, data hash)}; `only` restricts to some of them.
    """
    results, skipped = {}, {}
    names = [name for name in prepared if only is None or name in only]
    for name in tqdm(names, desc=f"scoring {label}", disable=not progress, leave=False):
        evalset, batch, _ = prepared[name]
        reason = expressible(evalset, vocabulary)
        if reason:
            skipped[name] = reason
            continue
        results[name] = score_set(evalset, batch, predict(model, batch, device))
    return results, skipped


def _mean_nested(tables: list) -> list:
    """Element-wise mean of equally shaped [row][col] tables, None where any run has None."""
    rows = []
    for cells in zip(*tables):
        rows.append([None if any(v is None for v in values) else float(np.mean(values)) for values in zip(*cells)])
    return rows


def pool_runs(blocks: list[dict]) -> dict:
    """One block from several runs' blocks for the same set (same graphs): means, t-intervals
    across runs (`ci_kind` "seeds"; None with one run), summed confusion counts."""
    if len(blocks) == 1:
        return blocks[0]
    first = blocks[0]
    pooled = {key: first[key] for key in ("count", "mean_label", "label_variance")}
    for metric, top in (("mse", None), ("accuracy", 1.0)):
        values = [b[metric] for b in blocks]
        mean, low, high = mean_ci(values)
        pooled[metric] = mean
        # a t-interval from few runs can leave the metric's range: clip it there (MSE >= 0, accuracy <= 1)
        pooled[f"{metric}_ci95"] = None if low is None else [max(low, 0.0), high if top is None else min(high, top)]
        pooled.setdefault("per_run", {})[metric] = values
    labels = sorted({k for b in blocks for k in b["per_label"]}, key=int)
    pooled["per_label"] = {}
    for key in labels:
        values = [b["per_label"][key]["mse"] for b in blocks if key in b["per_label"]]
        pooled["per_label"][key] = {"count": first["per_label"].get(key, {"count": 0})["count"],
                                    "mse": float(np.mean(values))}
    pooled["confusion"] = {"labels": first["confusion"]["labels"],
                           "counts": np.sum([b["confusion"]["counts"] for b in blocks], axis=0).tolist()}
    if "raw_histogram" in first:
        pooled["raw_histogram"] = pool_histograms([b["raw_histogram"] for b in blocks])
    for table in ("cells", "by_distance"):
        if table in first:
            axes = {k: v for k, v in first[table].items() if k not in ("mse", "accuracy", "count")}
            pooled[table] = {**axes, "mse": _mean_nested([b[table]["mse"] for b in blocks]),
                             "accuracy": _mean_nested([b[table]["accuracy"] for b in blocks]),
                             "count": first[table]["count"]}
    pooled.update(runs=len(blocks), ci_kind="seeds")
    return pooled
