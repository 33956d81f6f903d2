"""Two views the study drew that rounded scores hide: raw-output histograms and the line-graph probe.

Shapes
    B  graphs, L  labels (1..V), K  histogram bins, V  max_vertices (= the unreachable label)

`raw_histogram` bins a model's *unrounded* outputs per true label (the study's `mkhist`: a 2-D
histogram of output vs label, each label's column normalised to 1, drawn with log colour); it
shows what rounding hides, e.g. that an un-fine-tuned model "just guesses integers". Bins are
BINS_PER_HOP to a hop, centred on multiples of 1/BINS_PER_HOP, so every integer label sits in
the middle of a bin; outputs outside [0, V + 1] are counted in the first or last bin.

`path_graphs` / `line_probe` are the study's line-graph test (its notebook feeds the 14-hop path
1 - 15 - 14 - ... - 3 - 2 and reads the answer): here every length 1..V-1, vertex 1 at one end,
vertex 2 at the other, the inner vertices numbered down from L + 1 as in the study.
"""
from __future__ import annotations

import numpy as np

from data_gen import GraphBatch

BINS_PER_HOP = 4


def histogram_bins(max_vertices: int) -> np.ndarray:
    """(K + 1,) bin edges: centres 0, 1/4, ..., V + 1 (each integer is a bin centre)."""
    centres = np.arange(0, (max_vertices + 1) * BINS_PER_HOP + 1) / BINS_PER_HOP
    return np.append(centres - 0.5 / BINS_PER_HOP, centres[-1] + 0.5 / BINS_PER_HOP)


def raw_histogram(prediction: np.ndarray, label: np.ndarray, max_vertices: int) -> dict:
    """{labels [1..V], bins {edges, centres, per_hop, clipped}, count [L], fraction [[L][K]]}:
    fraction[l][k] is the share of label l's graphs whose raw output falls in bin k (each row
    with graphs sums to 1; a label with no graphs is a row of zeros)."""
    edges = histogram_bins(max_vertices)
    centres = (edges[:-1] + edges[1:]) / 2
    clipped = np.clip(np.asarray(prediction, dtype=np.float64), centres[0], centres[-1])
    column = np.clip(np.searchsorted(edges, clipped, side="right") - 1, 0, len(centres) - 1)  # (B,)
    labels = np.arange(1, max_vertices + 1)
    counts = np.zeros((len(labels), len(centres)), dtype=np.int64)  # (L, K)
    np.add.at(counts, (np.asarray(label, dtype=np.int64) - 1, column), 1)
    per_label = counts.sum(axis=1)
    fraction = counts / np.maximum(per_label, 1)[:, None]
    return {"labels": labels.tolist(),
            "bins": {"edges": edges.round(6).tolist(), "centres": centres.round(6).tolist(),
                     "per_hop": BINS_PER_HOP, "clipped": [float(centres[0]), float(centres[-1])]},
            "count": per_label.tolist(), "fraction": fraction.round(6).tolist()}


def pool_histograms(histograms: list[dict]) -> dict:
    """Several runs' histograms of the same graphs: the mean of their per-label fractions."""
    first = histograms[0]
    fraction = np.mean([h["fraction"] for h in histograms], axis=0)
    return {**first, "fraction": fraction.round(6).tolist()}


def path_graphs(max_vertices: int) -> GraphBatch:
    """The path 1 - (L+1) - L - ... - 3 - 2 for every length L = 1..V-1, on n = L + 1 vertices,
    target 2 (label L). Row L-1 is length L."""
    lengths = range(1, max_vertices)
    edges = np.zeros((len(lengths), max_vertices - 1, 2), dtype=np.int64)  # (B, M, 2)
    for row, length in enumerate(lengths):
        chain = [1, *range(length + 1, 2, -1), 2]  # 1, L+1, L, ..., 3, 2
        pairs = sorted(tuple(sorted(p)) for p in zip(chain, chain[1:]))
        edges[row, :len(pairs)] = pairs
    lengths = np.array(list(lengths))
    return GraphBatch.from_numpy({"edges": edges, "num_vertices": lengths + 1, "target": np.full_like(lengths, 2),
                                  "label": lengths, "path_length": lengths}, max_vertices)


def line_probe(models: dict[str, list], max_vertices: int, device: str = "cpu") -> dict:
    """{lengths, label, models {name: {answers [mean over runs], per_run [[..]], rounded_exact}}}:
    each model's raw answer on `path_graphs(max_vertices)`; `models` maps a name to one model per run."""
    from graphpath.evaluation.predict import predict  # eval_core imports this module for the histograms

    batch = path_graphs(max_vertices)
    label = batch.label.numpy()
    out = {"lengths": label.tolist(), "label": label.tolist(), "target": 2, "models": {}}
    for name, runs in models.items():
        answers = np.array([predict(model, batch, device) for model in runs])  # (runs, V-1)
        mean = answers.mean(axis=0)
        out["models"][name] = {"answers": mean.tolist(), "per_run": answers.tolist(),
                               "rounded_exact": int((np.round(mean) == label).sum()),
                               "max_abs_error": float(np.abs(mean - label).max())}
    return out
