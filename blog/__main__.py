"""`python -m blog RUN_DIR [--out DIR]`: render a run directory as an interactive page."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .render import POST, render
from .rundir import BlogError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m blog",
        description="Render a graphpath run directory (config.toml, metrics.jsonl, phases.json, "
                    "eval.json; perturb*.json if present) as a self-contained "
                    "interactive page that opens offline: DIR/index.html plus DIR/assets/.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, e.g. runs/small")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="where to write index.html and assets/ (default: RUN_DIR/blog)")
    parser.add_argument("--post", metavar="FILE", default=str(POST),
                        help="the post's markdown source with placeholders (default: %(default)s)")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else Path(args.run_dir) / "blog"
    try:
        index = render(args.run_dir, out, args.post)
    except BlogError as err:
        print("error: " + " ".join(str(err).splitlines()), file=sys.stderr)  # always one line
        return 2
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
