"""Training figures: the confusion heatmap from metrics.confusion_matrix, HTML + PNG written
(the PNG always the matplotlib copy, through graphpath_common.figures.write_png)."""
import numpy as np

from graphpath.evaluation.scores import confusion_matrix
from graphpath.training.figures import confusion_figure, label_loss_figure, loss_figure, matplotlib_copy, write_figure


def test_confusion_figure_shows_labels_that_occur_row_normalized():
    labels = np.array([1, 1, 2, 8, 8, 3])
    predictions = np.array([0.6, 1.4, 2.5, 9.7, -3.0, 2.49])
    counts = confusion_matrix(predictions, labels, 8)
    figure = confusion_figure(counts, "t")
    assert list(figure.data[0].y) == ["1", "2", "3", "8"]  # only labels that occur, named 1-based
    assert list(figure.data[0].x) == [str(v) for v in range(1, 9)]
    rows = np.asarray(figure.data[0].z, dtype=float)
    assert rows.shape == (4, 8)
    assert np.allclose(np.nansum(10 ** rows, axis=1), 1.0)  # each row normalized
    assert rows[1, 2] == 0.0  # label 2: its one prediction 2.5 rounds up to 3 (a fraction of 1)
    from_zero = confusion_figure(confusion_matrix(predictions, labels, 8, lowest=0), "t", lowest=0)
    assert list(from_zero.data[0].y) == ["1", "2", "3", "8"] and from_zero.data[0].x[0] == "0"


def test_figures_are_written_as_html_and_png(tmp_path):
    metrics = [{"stage": "pretrain", "step": s, "examples": 8 * s, "loss": 1.0 / s,
                "label_loss": {"1": 1.0 / s, "2": 2.0 / s}, "eval_loss": 1.0 / s} for s in range(1, 30)]
    phases = [{"stage": "pretrain", "label": "1", "step": 10, "examples": 80, "loss_before": 1.0,
               "loss_after": 0.1, "plateau_steps": 5}]
    write_figure(loss_figure(metrics), tmp_path / "figures" / "loss", png=False)
    assert (tmp_path / "figures" / "loss.html").is_file()
    assert (tmp_path / "figures" / "plotly.min.js").is_file()  # offline, shared by every figure
    for name, figure in (("labels", label_loss_figure(metrics, phases, "pretrain")),
                         ("confusion", confusion_figure(np.eye(3, dtype=np.int64) * 5, "t"))):
        write_figure(figure, tmp_path / name)
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        drawn = matplotlib_copy(figure).axes[0]
        assert len(drawn.images if name == "confusion" else drawn.lines) == len(figure.data)  # every trace redrawn
