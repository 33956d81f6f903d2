"""examples/first_look.ipynb runs top to bottom (nbclient, a fresh kernel) and says what it claims:
the hand-built model answers every hand-drawn graph, a graph outside the vocabulary is refused."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # a kernel, torch and two tiny trainings: ~40 s on a busy 2-core machine
def test_the_example_notebook_runs(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("GRAPHPATH_EXAMPLE_RUN", str(tmp_path / "no-run"))  # the notebook trains its tiny run
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    notebook = nbformat.read(ROOT / "examples" / "first_look.ipynb", as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # stored clean
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    text = "\n".join(str(out.get("text") or out.get("data", {}).get("text/plain", ""))
                     for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs)
    right = re.search(r"rounded answers right: learned (\d+) hand-built (\d+) of (\d+)", text)
    assert right and right.group(2) == right.group(3) and int(right.group(3)) >= 10, text
    assert re.search(r"ValueError: graph 0: edge \(1, 7\) has a vertex id outside 1..6", text), text
    assert "one-layer held-out pre-training MSE" in text
