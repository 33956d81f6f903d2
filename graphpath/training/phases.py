"""Phase-change detection: a plateau in a loss curve followed by a sharp, lasting drop.

Works on log10(loss) sampled at evenly spaced logged steps (index i). With windows of P = 3D
plateau points, D drop points and Q = 2D points after the drop, index i starts a phase change when
    drop  = median(y[i-P:i]) - median(y[i+D:i+D+Q])  >= min_drop decades (a lasting fall), and
    drift = |least-squares slope of y[i-P:i]| * P     <= flat_fraction * drop
            (the loss was level before it fell: a plateau, not an ongoing slide).
Medians make single noisy points irrelevant. A smooth exponential decay is a straight line in
log space: its drift is 3D/3.5D = 0.86 of its drop, far above the default 0.3, so it never counts.
Pure noise has drop ~ 0. Each run of qualifying i is one change, reported where the smoothed
curve crosses halfway between the levels before and after.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PhaseDetector:
    drop_points: int | None = None  # D; None = max(3, 4% of the curve)
    min_drop: float = 0.5  # decades the loss must fall and stay fallen (0.5 = ~3.2x)
    flat_fraction: float = 0.3  # largest plateau drift, as a fraction of the drop
    floor: float = 1e-12  # losses are clipped here before the log

    def windows(self, length: int) -> tuple[int, int, int]:
        d = self.drop_points if self.drop_points is not None else max(3, round(0.04 * length))
        return 3 * d, d, 2 * d

    def detect(self, steps, losses) -> list[dict]:
        """Phase changes in one curve: [{index, step, loss_before, loss_after, plateau_steps}]."""
        steps = np.asarray(steps, dtype=np.int64)
        losses = np.asarray(losses, dtype=np.float64)
        keep = np.isfinite(losses)
        steps, losses = steps[keep], losses[keep]
        y = np.log10(np.maximum(losses, self.floor))
        plateau, drop_len, after = self.windows(len(y))
        if len(y) < plateau + drop_len + after:
            return []
        starts = np.arange(plateau, len(y) - drop_len - after + 1)
        before = np.array([np.median(y[i - plateau:i]) for i in starts])
        later = np.array([np.median(y[i + drop_len:i + drop_len + after]) for i in starts])
        x = np.arange(plateau) - (plateau - 1) / 2
        slopes = np.array([x @ y[i - plateau:i] for i in starts]) / (x @ x)
        drift = np.abs(slopes) * plateau
        drop = before - later
        ok = (drop >= self.min_drop) & (drift <= self.flat_fraction * drop)
        smooth = _rolling_median(y, 5)
        changes, i = [], 0
        while i < len(starts):
            if not ok[i]:
                i += 1
                continue
            j = i
            while j + 1 < len(starts) and ok[j + 1]:
                j += 1
            best = i + int(np.argmax(drop[i:j + 1]))
            start = starts[best]
            middle = (before[best] + later[best]) / 2
            below = np.nonzero(smooth[start - plateau // 2:start + drop_len + after] <= middle)[0]
            at = start - plateau // 2 + int(below[0]) if len(below) else start
            # the P points before `start` passed the flatness test, so the plateau is at least that long
            plateau_begin = min(start - plateau,
                                _plateau_begin(y, start, before[best], self.flat_fraction * drop[best] + 0.05))
            if changes and at <= changes[-1]["index"] + drop_len:  # the same fall seen again
                i = j + 1 + drop_len
                continue
            changes.append({"index": int(at), "step": int(steps[at]),
                            "loss_before": float(10 ** before[best]), "loss_after": float(10 ** later[best]),
                            "plateau_steps": int(steps[start] - steps[plateau_begin])})
            i = j + 1 + drop_len  # the next change starts after this drop
        return changes


def _rolling_median(y: np.ndarray, width: int) -> np.ndarray:
    pad = width // 2
    padded = np.pad(y, pad, mode="edge")
    return np.array([np.median(padded[k:k + width]) for k in range(len(y))])


def _plateau_begin(y: np.ndarray, start: int, level: float, tolerance: float) -> int:
    """Walk back from `start` while a 5-point median stays within `tolerance` of the plateau level."""
    begin = start
    while begin > 0 and abs(np.median(y[max(0, begin - 5):begin]) - level) <= tolerance:
        begin -= 1
    return begin


def detect_phase_changes(metrics: list[dict], detector: PhaseDetector | None = None,
                         stage: str | None = None, min_count: int = 32) -> list[dict]:
    """Phase changes per label and overall ("all") from metrics.jsonl records of one or more stages.

    A label seen fewer than `min_count` times per logged line (median, from `label_count`) is too
    noisy to judge and is skipped."""
    detector = detector or PhaseDetector()
    found = []
    stages = [stage] if stage else sorted({m["stage"] for m in metrics}, key=["pretrain", "finetune"].index)
    for name in stages:
        records = [m for m in metrics if m["stage"] == name and "loss" in m]
        curves = {"all": [(m["step"], m["examples"], m["loss"]) for m in records]}
        labels = sorted({label for m in records for label in m.get("label_loss", {})}, key=int)
        for label in labels:
            counts = [m["label_count"].get(label, 0) for m in records if "label_count" in m]
            if counts and np.median(counts) < min_count:
                continue
            curves[label] = [(m["step"], m["examples"], m["label_loss"][label])
                             for m in records if label in m.get("label_loss", {})]
        for label, points in curves.items():
            if not points:
                continue
            steps, examples, losses = zip(*points)
            for change in detector.detect(steps, losses):
                found.append({"stage": name, "label": label, "step": change["step"],
                              "examples": int(examples[change["index"]]),
                              "loss_before": change["loss_before"], "loss_after": change["loss_after"],
                              "plateau_steps": change["plateau_steps"]})
    return found
