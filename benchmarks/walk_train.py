"""Which of graphpath's modules one tiny training run goes through: the modules whose functions
run (module and class bodies excluded) and the modules imported, for docs/architecture.md.

    python benchmarks/walk_train.py [TREE]     # TREE: a checkout (default this one)

It runs `python -m graphpath.train` in-process on a 1-layer model for 4 + 2 steps (figures on,
scoring off) under a profiler that notes each function call's file. Prints the two counts and the
visited files.
"""
from __future__ import annotations

import os
import runpy
import sys
import tempfile
import threading
from pathlib import Path

PACKAGES = ("graphpath", "graphpath_common", "data_gen", "handcrafted", "blog", "experiments")
TINY = ["--data.n_max", "5", "--data.finetune_n_max", "4", "--data.small_target", "4", "--data.pretrain_threshold",
        "3", "--data.finetune_threshold", "2", "--model.d_model", "16", "--model.n_layers", "1", "--train.steps", "4",
        "--finetune.steps", "2", "--train.batch_size", "32", "--finetune.batch_size", "32", "--train.eval_size", "64",
        "--finetune.eval_size", "64", "--threads", "1", "--no-eval"]


def main() -> None:
    tree = os.path.realpath(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
    sys.path.insert(0, tree)
    visited: set[str] = set()

    def profile(frame, event, arg):
        name = frame.f_code.co_filename
        if event == "call" and frame.f_code.co_flags & 0x2 and name.startswith(tree + os.sep):  # 0x2: a function
            visited.add(os.path.relpath(name, tree))

    with tempfile.TemporaryDirectory() as out:
        sys.argv = ["graphpath.train", "--out", os.path.join(out, "run"), *TINY]
        sys.setprofile(profile)
        threading.setprofile(profile)
        try:
            runpy.run_module("graphpath.train", run_name="__main__")
        except SystemExit as stop:
            if stop.code:
                raise
        finally:
            sys.setprofile(None)
            threading.setprofile(None)
    imported = [m for m, module in sys.modules.items()
                if m.split(".")[0] in PACKAGES and (getattr(module, "__file__", None) or "").startswith(tree)]
    print(f"functions ran in {len(visited)} modules; {len(imported)} of the package's modules imported")
    print("\n".join(sorted(visited)))


if __name__ == "__main__":
    main()
