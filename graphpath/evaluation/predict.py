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
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from data_gen import GraphBatch

from graphpath.evaluation.raw_outputs import pool_histograms, raw_histogram
from graphpath.evaluation.sets import EvalError, EvalSet, grid_axes
from graphpath.evaluation.scores import cell_scores, mean_ci, rounded, score


def model_vocabulary(model, info: dict | None = None) -> int | None:
    """The largest vertex id (= unreachable label) a model speaks, where it says so."""
    config = (info or {}).get("model_config") or {}
    for source in (config, getattr(getattr(model, "config", None), "__dict__", {}), model.__dict__):
        value = source.get("max_vertices")
        if isinstance(value, int):
            return value
    return None


def predict(model, batch: GraphBatch, device="cpu", chunk: int = 4096, autocast=None,
            buckets: int = 1) -> np.ndarray:
    """(B,) float64 predictions of `model` on every graph of `batch`, in the batch's order.

    autocast: None, or a callable returning a context manager the model runs under (training's
    `Runtime.autocast`); the outputs are read as float32 first. buckets > 1 is passed on as
    `model(part, buckets=buckets)` (the learned model's edge-count bucketing within a chunk).
    The whole batch is checked first (`GraphBatch.check` against the model's vocabulary), so a
    ValueError names the graph by its row in `batch`, not in a sorted chunk."""
    batch.check(model_vocabulary(model))
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
                    value = model(part, buckets=buckets) if buckets > 1 else model(part)  # (C,)
                if not isinstance(value, torch.Tensor) or value.shape != (len(index),):
                    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                    raise EvalError(f"model returned {shape}, expected distances of shape ({len(index)},)")
                out[index] = value.detach().float().to("cpu", torch.float64)
    finally:
        if training and hasattr(model, "train"):
            model.train()
    return out.numpy()


@dataclass
class Prediction:
    """A model's answers on a batch, beside the package's BFS labels. Shapes (B,)."""
    output: np.ndarray  # float64: the regressed value (for a distance model, the 1 -> t distance)
    answer: np.ndarray  # int64: the output rounded, halves up (evaluation.scores.rounded)
    label: np.ndarray  # int64: the true label of the same question (unreachable = max_vertices)
    batch: GraphBatch
    task: str  # what the label means: "distance", "degree", ...

    def __len__(self) -> int:
        return len(self.output)

    @property
    def correct(self) -> np.ndarray:
        """(B,) bool: the rounded answer equals the label."""
        return self.answer == self.label

    def rows(self) -> list[dict]:
        """One dict per graph: its edges, n, target, label, output and answer (for a table)."""
        edges = self.batch.edges.numpy()
        return [{"edges": [tuple(int(v) for v in pair) for pair in edges[i] if pair[0] > 0],
                 "num_vertices": int(self.batch.num_vertices[i]), "target": int(self.batch.target[i]),
                 "label": int(self.label[i]), "output": float(self.output[i]), "answer": int(self.answer[i])}
                for i in range(len(self))]

    def __repr__(self) -> str:
        lines = [f"Prediction({self.task}, {len(self)} graph(s), {int(self.correct.sum())} answered correctly)"]
        lines += [f"  target {r['target']}: output {r['output']:.3f} -> {r['answer']} (label {r['label']})"
                  for r in self.rows()[:10]]
        return "\n".join(lines + (["  ..."] if len(self) > 10 else []))


def predict_graphs(model, graphs, target=None, num_vertices=None, device="cpu") -> Prediction:
    """Any model's answers on graphs written by hand.

    model: a `graphpath.load(...)` result (its vocabulary and task come from its checkpoint), a
    learned `GraphTransformer`, or the hand-built model (`build_bfs_transformer(n)`: vocabulary n,
    distances). graphs: a `GraphBatch` (used as is), a networkx graph or a list of them (nodes
    exactly 1..n), one edge list [(a, b), ...] or a list of edge lists, or dicts with `edges`,
    `num_vertices` and `target` (data_gen.HAND_DRAWN's rows). target: one vertex or one per graph
    (default 2, the study's target; tasks about vertex 1 use 1). Vertices are numbered as the
    study numbers them (data_gen.graphs). ValueError names the graph and the limit for a vertex
    id, target or size outside the model's vocabulary.
    """
    trained = model if hasattr(model, "contract") else None
    network = trained.model if trained is not None else model
    vocabulary = trained.max_vertices if trained is not None else (model_vocabulary(network) or getattr(network, "n", None))
    if vocabulary is None:
        raise ValueError("cannot tell which vertex ids the model reads; give a GraphBatch")
    task = trained.answers if trained is not None else "distance"
    batch = _as_batch(graphs, vocabulary, target, num_vertices, task)
    if batch.max_vertices != vocabulary:
        raise ValueError(f"the batch's max_vertices {batch.max_vertices} differs from the model's vocabulary "
                         f"{vocabulary}: 'unreachable' would mean a different label")
    output = predict(network, batch, device)
    return Prediction(output, rounded(output), batch.label.numpy(), batch, task)


def _as_batch(graphs, vocabulary: int, target, num_vertices, task: str) -> GraphBatch:
    if isinstance(graphs, GraphBatch):
        return graphs
    first = graphs[0] if isinstance(graphs, (list, tuple)) and graphs else graphs
    if type(first).__module__.startswith("networkx"):
        return GraphBatch.from_networkx(graphs, vocabulary, 2 if target is None else target, task)
    if isinstance(first, dict):
        rows = list(graphs)
        return GraphBatch.from_edges([row["edges"] for row in rows], vocabulary,
                                     [row["target"] for row in rows] if target is None else target,
                                     [row.get("num_vertices") for row in rows] if num_vertices is None else num_vertices,
                                     task)
    return GraphBatch.from_edges(graphs, vocabulary, 2 if target is None else target, num_vertices, task)


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
        prediction = predict(model, batch, device)
        bad = int((~np.isfinite(prediction)).sum())
        if bad:
            raise EvalError(f"the {label} model predicts NaN or infinity for {bad} of {len(prediction)} graphs of "
                            f"set {name}: its weights have diverged, there is nothing to score")
        results[name] = score_set(evalset, batch, prediction)
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
