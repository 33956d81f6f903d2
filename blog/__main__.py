"""`python -m blog RUN_DIR [--out DIR]`: render a run directory as an interactive page."""
from __future__ import annotations

import sys
from pathlib import Path

from graphpath_common.cli import ArgumentParser, run_cli
from graphpath_common.locks import hold

from .render import POST, write_page
from .rundir import BlogError, load_run

PROG = "python -m blog"


def _main(argv: list[str] | None) -> int:
    parser = ArgumentParser(
        prog=PROG,
        description="Render a graphpath run directory (config.toml, metrics.jsonl, phases.json, "
                    "eval.json; perturb*.json if present) as a self-contained "
                    "interactive page that opens offline: DIR/index.html plus DIR/assets/.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, e.g. runs/small")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="where to write index.html and assets/ (default: RUN_DIR/blog)")
    parser.add_argument("--post", metavar="FILE", default=str(POST),
                        help="the post's markdown source with placeholders (default: %(default)s)")
    args = parser.parse_args(argv)
    run = load_run(args.run_dir)
    out = Path(args.out) if args.out else Path(args.run_dir) / "blog"
    with hold(out, PROG):  # writable, and no other writer, before the page is built
        index = write_page(run, out, args.post)
    print(index)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Bad input (the run, the post, the output folder): one line, exit 2; Ctrl-C: exit 130."""
    return run_cli(PROG, _main, argv, BlogError)


if __name__ == "__main__":
    sys.exit(main())
