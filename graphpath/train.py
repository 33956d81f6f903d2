"""graphpath.train: pre-train, fine-tune and score the learned transformer.

From a shell, `python -m graphpath.train [--config FILE] [--out DIR] [--SECTION.KEY VALUE ...]`
(`--help` lists every flag). From Python, this module is itself the function
`graphpath.training.run.train`:

    graphpath.train(config=None, out=None, *, stage="all", seeds=None, resume=False, device="auto",
                    threads=None, evaluate=True, figures=True, stop_after=None, overrides=None,
                    progress=True) -> RunDir

config is a RunConfig, a TOML path or None (experiments/small.toml); overrides a dict of dotted
keys, e.g. {"train.steps": 200, "model.n_layers": 2}. See graphpath.training.run.train.
"""
import sys

from graphpath.command import make_command

main = make_command(__name__, "graphpath.training.run:train", "graphpath.training.run:main")

if __name__ == "__main__":
    sys.exit(main())
