"""Check and summarize pre-built datasets: `python -m data_gen.summarize DIR [DIR ...]`.

Verifies every shard's sha256 and shape (as `load_dataset` does) and prints one line per
dataset: its name, spec origin, size, seed and label histogram. A missing, malformed or
tampered dataset is one line on stderr and exit status 2.
"""
from __future__ import annotations

import sys
from pathlib import Path

from graphpath_common.cli import ArgumentParser, run_cli

from .dataset import DatasetError, load_dataset, read_manifest


def summary_line(folder: Path) -> str:
    manifest = read_manifest(folder)
    batch = load_dataset(folder)  # verifies checksums and shapes
    histogram = " ".join(f"{label}:{count}" for label, count in manifest["label_histogram"].items())
    origin = manifest.get("preset") or manifest["spec"]["family"]
    if manifest["spec"].get("task", "distance") != "distance":
        origin += f" task {manifest['spec']['task']}"
    sizes = manifest.get("data") or {}
    if sizes:
        origin += "(" + ", ".join(f"{k}={v}" for k, v in sizes.items()) + ")"
    return f"{folder.name}: {origin}, {len(batch)} graphs, seed {manifest['seed']}, labels {histogram}"


PROG = "python -m data_gen.summarize"


def _main(argv) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="dataset directories")
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help printed the help
        return int(done.code or 0)
    for folder in args.folders:
        print(summary_line(folder))
    return 0


def main(argv=None) -> int:
    return run_cli(PROG, _main, argv, DatasetError, OSError)


if __name__ == "__main__":
    sys.exit(main())
