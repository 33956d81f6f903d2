"""Named residual-stream sections: a tiny basis of labelled directions (tracr's idea, minus the compiler).

A `Basis` maps section names to contiguous slices of the residual stream, so weight-building code
says `basis["reach"]` instead of a bare column number, and any stream vector can be read back
section by section (`basis.read(x)`). Per-vertex sections (one direction per vertex id 1..n) are
addressed with `basis.index(name, v)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Basis:
    """Sections laid out in order: `Basis([("reach", 1), ("self_id", n), ...])`."""

    sections: list[tuple[str, int]]
    _slices: dict[str, slice] = field(init=False, repr=False)

    def __post_init__(self):
        self._slices, start = {}, 0
        for name, width in self.sections:
            if name in self._slices:
                raise ValueError(f"section {name!r} appears twice")
            if width <= 0:
                raise ValueError(f"section {name!r} needs a positive width, got {width}")
            self._slices[name] = slice(start, start + width)
            start += width
        self.width = start

    def __getitem__(self, name: str) -> slice:
        return self._slices[name]

    def __contains__(self, name: str) -> bool:
        return name in self._slices

    def index(self, name: str, offset: int = 0) -> int:
        """Column of direction `offset` (0-based) inside section `name`."""
        part = self._slices[name]
        if not 0 <= offset < part.stop - part.start:
            raise IndexError(f"section {name!r} has {part.stop - part.start} directions, asked for {offset}")
        return part.start + offset

    def read(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split (..., D) into {section: (..., width)}; width-1 sections come back as (...)."""
        if x.shape[-1] != self.width:
            raise ValueError(f"stream width {x.shape[-1]} != basis width {self.width}")
        out = {}
        for name, width in self.sections:
            part = x[..., self._slices[name]]
            out[name] = part[..., 0] if width == 1 else part
        return out

    def table(self) -> str:
        """Markdown map of the stream: section, columns, width."""
        rows = ["| section | columns | width |", "|---|---|---|"]
        rows += [f"| {name} | {self._slices[name].start}..{self._slices[name].stop - 1} | {width} |"
                 for name, width in self.sections]
        return "\n".join(rows)
