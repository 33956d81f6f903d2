"""Training: one stage's optimizer loop (`stage`), the data feeds, partial fine-tuning, phase-change
detection, training figures, and `run` (pre-train, fine-tune, score; `python -m graphpath.train`)."""
