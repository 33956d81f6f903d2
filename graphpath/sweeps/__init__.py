"""Grids of ordinary training jobs, run resumably through one runner (`python -m graphpath.sweep`)."""
