"""graphpath.evaluate: score a run on the study's test sets and write eval.json, report.md, figures/.

From a shell, `python -m graphpath.evaluate RUN_DIR` (`--help` lists every flag). From Python,
this module is itself the function `graphpath.evaluation.suite.evaluate_run`:

    graphpath.evaluate(run_dir, *, sets=None, size=4096, grid_size=256, seed=0, device="cpu",
                       cache_dir="default", compare_handcrafted=True, figures=True,
                       progress=True) -> dict (the eval.json document)

A group of seeds (train --seeds) is scored pooled into the group directory.
"""
import sys

from graphpath.command import make_command

main = make_command(__name__, "graphpath.evaluation.suite:evaluate_run", "graphpath.evaluation.suite:main")

if __name__ == "__main__":
    sys.exit(main())
