"""Figure files for every part of graphpath.

`write_html` writes a plotly figure as interactive HTML that loads `plotly.min.js` from its own
folder (plotly copies it there once): offline, and one copy of the 4.8 MB library per folder
rather than one per figure. `write_png` writes a matplotlib figure (Agg backend: no browser or
download; kaleido is not needed). Both write atomically (graphpath_common.files).
"""
from __future__ import annotations

from pathlib import Path

from .files import atomic_path


def write_html(figure, path) -> Path:
    """The plotly `figure` as `path` (.html), atomically, beside a shared plotly.min.js."""
    with atomic_path(path) as temporary:
        figure.write_html(temporary, include_plotlyjs="directory", full_html=True)
    return Path(path)


def write_png(mpl_figure, path, dpi: int = 110) -> Path:
    """The matplotlib `mpl_figure` as `path` (.png), atomically (the figure is not closed)."""
    with atomic_path(path) as temporary:
        mpl_figure.savefig(temporary, dpi=dpi, format="png")
    return Path(path)
