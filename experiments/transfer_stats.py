"""The transfer matrix's statistics: per-cell intervals over seeds, Benjamini-Hochberg across
cells, the similarity of tasks and their clustering.

A cell is (A, B, D_B): pre-trained on A, fine-tuned on D_B graphs of B, at the lr its arm chose on
the validation sample. Per seed (each seed has its own test sample of B, so the spread over
seeds includes the sampling of test graphs):
    transfer    baseline loss - transferred loss            (> 0: pre-training on A helped B)
    relative    transfer / B's constant-predictor loss      (label variance of B's test sample)
    specific    (control loss - transferred loss) / constant: what A gives beyond a pre-training
                of equal compute on shuffled labels (the same graphs, no task): generic
                pre-training effects (optimisation, embeddings of vertex ids) cancel out
Intervals: 95% t-intervals over seeds (graphpath.evaluation.scores.mean_ci). Tests: a two-sided
one-sample t-test of each family's per-seed values against 0 (scipy.stats.t); the
p-values of the off-diagonal cells whose jobs converged are corrected together per family with
Benjamini-Hochberg (Benjamini & Hochberg 1995; scipy.stats.false_discovery_control), and a cell
is a finding when its q-value is at most `fdr` (the study's, 0.05 by default).

The similarity of A and B is (relative(A->B) + relative(B->A)) / 2 at the smallest D_B (where
pre-training matters most); tasks are clustered on 1 - similarity / max |similarity| (average
linkage); the asymmetry relative(A->B) - relative(B->A) is reported beside it.
"""
from __future__ import annotations

import math

import numpy as np

from graphpath.evaluation.scores import ci_summary

FAMILIES = ("relative", "specific")


def _block(values) -> dict:
    values = [float(v) for v in values]
    return {**ci_summary(values), "per_seed": values}


def p_value(values) -> float:
    """Two-sided one-sample t-test of mean 0 (1.0 when it is undefined: fewer than 2 finite values,
    or no spread and a mean of 0)."""
    from scipy import stats

    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if values.size < 2:
        return 1.0
    if np.ptp(values) == 0:
        return 1.0 if values[0] == 0 else 0.0
    t = values.mean() / (values.std(ddof=1) / math.sqrt(values.size))  # scipy.stats.ttest_1samp's statistic
    return float(2 * stats.t.sf(abs(t), values.size - 1))


def transfer_cells(scores: dict, tasks: list[str], sizes: list[int], seeds: list, constant: dict,
                   converged: dict | None = None) -> list[dict]:
    """Per (A, B, D_B): every family with its interval and p-value, and the losses behind them.

    scores {(kind, source, target, size, seed): loss} with kind baseline (source None),
    transferred, control (source None), zero_shot (size None); constant {B: [per seed]};
    converged {(A, B, D_B): bool} (default: every cell)."""
    cells = []
    for size in sizes:
        for a in tasks:
            for b in tasks:
                base = [scores[("baseline", None, b, size, s)] for s in seeds]
                moved = [scores[("transferred", a, b, size, s)] for s in seeds]
                control = [scores[("control", None, b, size, s)] for s in seeds]
                scale = constant[b]
                families = {"transfer": [x - y for x, y in zip(base, moved)],
                            "relative": [(x - y) / c if c > 0 else math.nan for x, y, c in zip(base, moved, scale)],
                            "specific": [(x - y) / c if c > 0 else math.nan for x, y, c in zip(control, moved, scale)]}
                cell = {"source": a, "target": b, "size": size, "diagonal": a == b,
                        "converged": True if converged is None else bool(converged[(a, b, size)]),
                        **{name: {**_block(v), "p": p_value(v)} for name, v in families.items()},
                        "transferred_loss": _block(moved), "baseline_loss": _block(base),
                        "control_loss": _block(control),
                        "zero_shot_loss": _block([scores[("zero_shot", a, b, None, s)] for s in seeds])}
                cells.append(cell)
    return cells


def correct(cells: list[dict], fdr: float) -> dict:
    """Benjamini-Hochberg per family over the off-diagonal converged cells (in place: each such
    cell's family gains `q` and `finding`); returns {family: {tests, positive, negative}}."""
    from scipy import stats

    tested = [c for c in cells if not c["diagonal"] and c["converged"]]
    out = {}
    for family in FAMILIES:
        counts = {"tests": len(tested), "positive": 0, "negative": 0}
        if tested:
            q = stats.false_discovery_control([c[family]["p"] for c in tested], method="bh")
            for cell, value in zip(tested, q):
                block = cell[family]
                block["q"] = float(value)
                block["finding"] = bool(value <= fdr)
                if block["finding"]:
                    counts["positive" if block["mean"] > 0 else "negative"] += 1
        out[family] = counts
    for cell in cells:
        for family in FAMILIES:
            cell[family].setdefault("q", None)
            cell[family].setdefault("finding", False)
    return out


def relative_matrix(cells: list[dict], tasks: list[str], size: int) -> np.ndarray:
    """(T, T) mean relative transfer at one D_B, rows = source; the diagonal (kept apart) and cells
    whose jobs did not all converge are NaN."""
    index = {t: i for i, t in enumerate(tasks)}
    matrix = np.full((len(tasks), len(tasks)), np.nan)
    for cell in cells:
        if cell["size"] == size and not cell["diagonal"] and cell["converged"]:
            matrix[index[cell["source"]], index[cell["target"]]] = cell["relative"]["mean"]
    return matrix


def similarity(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(symmetric similarity (M + M^T) / 2, asymmetry M - M^T), diagonals NaN."""
    return (matrix + matrix.T) / 2, matrix - matrix.T


def cluster(sim: np.ndarray, tasks: list[str]) -> dict:
    """Average-linkage clustering on distance 1 - sim / max|sim| (0 on the diagonal)."""
    from scipy.cluster.hierarchy import dendrogram, linkage
    from scipy.spatial.distance import squareform

    off = sim[~np.eye(len(tasks), dtype=bool)]
    scale = float(np.nanmax(np.abs(off))) if np.isfinite(off).any() and np.nanmax(np.abs(off)) > 0 else 1.0
    distance = 1.0 - np.nan_to_num(sim, nan=0.0) / scale
    np.fill_diagonal(distance, 0.0)
    distance = np.maximum(distance, 0.0)
    links = linkage(squareform(distance, checks=False), method="average")
    tree = dendrogram(links, labels=list(tasks), no_plot=True)
    return {"method": "average", "distance": "1 - similarity / max |similarity|", "scale": scale,
            "linkage": links.tolist(), "order": tree["ivl"], "icoord": tree["icoord"], "dcoord": tree["dcoord"]}


def nan_none(matrix: np.ndarray) -> list:
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in matrix]


def findings(cells: list[dict], counts: dict, seeds: int, fdr: float) -> str:
    """One paragraph: what holds after Benjamini-Hochberg, per family, and what was not tested."""
    off = [c for c in cells if not c["diagonal"]]
    failed = sum(not c["converged"] for c in off)
    parts = []
    for family, what in (("relative", "beat training from scratch"), ("specific", "beat the shuffled-label control")):
        found = [c for c in off if c[family]["finding"]]
        text = (f"{counts[family]['positive']} of {counts[family]['tests']} off-diagonal cells {what} and "
                f"{counts[family]['negative']} did worse (BH q <= {fdr:g}, {seeds} seeds)")
        if found:
            best = max(found, key=lambda c: c[family]["mean"])
            text += (f"; the largest is {best['source']} -> {best['target']} at D_B = {best['size']} "
                     f"({best[family]['mean']:+.3g} of B's constant-predictor loss)")
        parts.append(text)
    note = f" {failed} off-diagonal cells did not converge and are not tested." if failed else ""
    return "Pre-training on A: " + "; ".join(parts) + "." + note
