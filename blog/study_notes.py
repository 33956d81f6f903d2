"""What every study section of the page says besides its numbers: the convergence gate (the stated
criterion, how many jobs met it, which cells are marked and left out) and what the preset that
made it can and cannot answer (the study JSON's `answers`, written in the preset before the run).
Read from the study JSONs only (docs/contracts.md, Studies)."""
from __future__ import annotations

from .html import Text
from .values import count


def gate_text(doc: dict, unit: str = "cells") -> Text:
    """One paragraph: each stage's criterion, the jobs that met it, the cells left out."""
    gate = doc.get("gate")
    if not gate:
        return Text("This study JSON records no convergence gate (written before the gate existed).")
    rules = "; ".join(f"{stage}: {rule['text']}" for stage, rule in gate["criteria"].items())
    marked = gate.get("cells_marked", gate.get("variants_marked", []))
    text = (f"Convergence gate, stated before the run ({rules}). {count(gate['converged'])} of {count(gate['jobs'])} "
            f"jobs met it.")
    if marked:
        names = [" / ".join(str(v) for v in m.values()) if isinstance(m, dict) else
                 (" / ".join(str(v) for v in m) if isinstance(m, list) else str(m)) for m in marked]
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        text += f" {len(marked)} {unit} whose jobs did not all converge are marked and left out of every fit and test: {shown}."
    else:
        text += f" No {unit} were left out."
    return Text(text)


def answers_text(doc: dict) -> Text:
    """What the preset can and cannot answer, and how long this run took when recorded."""
    answers = doc.get("answers") or {}
    parts = []
    if answers.get("can"):
        parts.append(f"This preset can answer {answers['can']}.")
    if answers.get("cannot"):
        parts.append(f"It cannot answer {answers['cannot']}.")
    if doc.get("seconds") is not None:
        parts.append(f"This run took {doc['seconds'] / 60:.0f} minutes.")
    return Text(" ".join(parts) or "The preset that made this study states nothing about what it can answer.")


def converged_mark(ok: bool) -> str:
    return "" if ok else " (not converged)"


def error_bars(blocks: list[dict]) -> dict:
    """Asymmetric plotly error bars from {mean, ci95} blocks (no bar where there is no CI)."""
    means = [b["mean"] for b in blocks]
    cis = [b.get("ci95") or [m, m] for b, m in zip(blocks, means)]
    return dict(type="data", symmetric=False,
                array=[None if m is None else c[1] - m for c, m in zip(cis, means)],
                arrayminus=[None if m is None else m - c[0] for c, m in zip(cis, means)])
