"""Evaluation: the frozen evaluation sets, the one inference loop (`predict`), per-set scores,
raw-output views, the reproduction report, figures, and `suite` (`python -m graphpath.evaluate`)."""
