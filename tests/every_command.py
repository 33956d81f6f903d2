"""Every command line of the package, each writing into one output folder: for the tests that hold
all of them to the same rule (an unwritable or busy folder is one line, exit 2, before any work)."""
from pathlib import Path

from test_resume_rule import TINY

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "run_fixture"


def commands(out: Path) -> dict:
    """{name: a call of that command's main writing into the folder `out`, returning its status}."""
    from graphpath.training.run import main as train
    from graphpath.evaluation.suite import main as evaluate
    from graphpath.analysis.perturb import main as perturb
    from graphpath.analysis.basin import main as basin
    from graphpath.analysis.llc import main as llc
    from graphpath.analysis.interpret import main as interpret
    from graphpath.sweeps.runner import main as sweep
    from experiments.edt import main as edt
    from experiments.mixture import main as mixture
    from experiments.partial import main as partial
    from experiments.transfer import main as transfer
    from data_gen.build import main as build
    from blog.__main__ import main as blog

    return {
        "train": lambda: train(["--out", str(out), *TINY]),
        "train --seeds": lambda: train(["--out", str(out), *TINY, "--seeds", "0,1"]),
        "evaluate": lambda: evaluate([str(FIXTURE), "--out", str(out), "--size", "64"]),
        "evaluate handcrafted": lambda: evaluate(["--model", "handcrafted", "--n", "4", "--out", str(out)]),
        "perturb": lambda: perturb(["--model", "handcrafted", "--n", "4", "--out", str(out / "p.json")]),
        "basin": lambda: basin(["handcrafted", "--n", "4", "--out", str(out / "b.json")]),
        "llc": lambda: llc(["handcrafted", "--n", "4", "--out", str(out / "l.json")]),
        "interpret": lambda: interpret([str(FIXTURE), "--no-figures", "--out", str(out / "i.json")]),
        "sweep": lambda: sweep([str(ROOT / "experiments" / "sweep-tiny.toml"), "--out", str(out)]),
        "experiments.edt": lambda: edt(["--out", str(out)]),
        "experiments.mixture": lambda: mixture(["--out", str(out)]),
        "experiments.partial": lambda: partial(["--out", str(out)]),
        "experiments.transfer": lambda: transfer(["--out", str(out)]),
        "data_gen.build": lambda: build(["--preset", "pretrain", "--size", "64", "--seed", "0", "--out", str(out)]),
        "blog": lambda: blog([str(FIXTURE), "--out", str(out)]),
    }


NAMES = list(commands(Path("x")))


def tiny_grid(name: str, seeds: list[int], steps: int, checkpoint_every: int) -> str:
    """A sweep grid file: one pre-training job per seed of a 1-layer, 16-wide model on n <= 5."""
    return f"""name = "{name}"
stage = "pretrain"
[grid]
seed = {seeds}
[base.data]
n_max = 5
finetune_n_max = 4
small_target = 4
pretrain_threshold = 3
finetune_threshold = 2
[base.model]
d_model = 16
n_layers = 1
[base.train]
steps = {steps}
batch_size = 16
warmup_steps = 10
log_every = 50
eval_every = {steps}
eval_size = 64
checkpoint_every = {checkpoint_every}
buckets = 1
"""
