"""A run group: one config trained with several seeds (`python -m graphpath.train --seeds 0,1,2`).

    RUN_DIR/config.toml            the config (its `seed` is the first seed's)
    RUN_DIR/seed-<k>/              an ordinary run directory per seed k
    RUN_DIR/eval.json, report.md   the seeds scored together (graphpath.evaluation.suite pools them)

Commands that take one model (graphpath.analysis.perturb) use the first seed's run; commands that score
(graphpath.evaluation.suite) pool every seed.
"""
from __future__ import annotations

import re
from pathlib import Path

SEED_DIR = re.compile(r"^seed-(\d+)$")


def seed_dir(group: Path, seed: int) -> Path:
    return Path(group) / f"seed-{seed}"


def seed_dirs(path) -> list[Path]:
    """The group's seed runs (directories `seed-<k>` holding a config.toml), by seed; [] if none."""
    path = Path(path)
    if not path.is_dir():
        return []
    found = [(int(m.group(1)), child) for child in path.iterdir()
             if child.is_dir() and (m := SEED_DIR.match(child.name)) and (child / "config.toml").is_file()]
    return [child for _, child in sorted(found)]


def is_group(path) -> bool:
    """A directory of seed runs with no checkpoints of its own."""
    path = Path(path)
    return not (path / "checkpoints").is_dir() and bool(seed_dirs(path))


def first_run(path) -> Path:
    """`path` itself, or for a group the first seed's run directory."""
    return seed_dirs(path)[0] if is_group(path) else Path(path)
