"""`python -m graphpath.perturb`: how wide is a solution's basin? Perturb weights, then retrain.

For each sigma x seed: score the model on a fixed held-out set (loss before), perturb it (loss
right after), run gradient descent on fresh samples, recording the held-out loss every
`eval_every` steps (the recovery curve). A run has recovered when that loss falls to `threshold`
or below within the step budget. The basin radius is the largest sigma at which at least half
the seeds recover. Results go to `perturb.json` (schema in docs/contracts.md) and figures.

Perturbation kinds (sigma is relative to a tensor's own RMS, sqrt(mean(W^2)), unless
`scale = "absolute"`: then the noise is N(0, sigma^2) itself, the study's `randn_like` at sigma 1):
    replace  the study's experiment: one weight matrix (a parameter with >= 2 dims that is not all
             zero), chosen at random by the seed, is replaced by Gaussian noise N(0, (sigma*RMS)^2);
             sigma = 0 replaces it with zeros
    all      every parameter gets W + sigma * RMS(W) * N(0, 1) (sigma = 0: unchanged)
    group    the same, only on parameters whose name matches the glob `--group` ("blocks.3.*")
The same seed draws the same matrix and the same noise direction at every sigma, so curves at
different sigmas differ only in the noise's size.

Models: `--model handcrafted --n N` (the hand-built BFS transformer; data: the study presets at
size N, default set `test-any-large`, any target) or `--model runs/NAME` (a learned run's final
checkpoint, found by graphpath.core.resolve; data: what it was trained on, its first stage's
GraphSpec, which for a study run is the `pretrain` set; `--data NAME` picks a study set instead,
refused in one line when that set does not ask what the model answers). For a group of seeds
(`graphpath.training.run --seeds`, runs/NAME/seed-<k>/) the first seed's model is perturbed and the
results go to runs/NAME/perturb.json. `--with-handcrafted` is refused for a run trained on
another task than distances.
"""
from __future__ import annotations

import argparse
import copy
import fnmatch
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from data_gen import PRESET_NAMES, StreamingSampler, study_presets
from data_gen.spec import study_sizes_up_to
from data_gen.splits import SPLITS, split_batch
from graphpath_common import provenance
from graphpath_common.cli import ArgumentParser, run_cli
from graphpath_common.jsonfile import finite, write_json
from graphpath_common.keys import reject_unknown_keys, require_seeds
from graphpath_common.locks import hold
from graphpath_common.rundir import RunDir
from graphpath_common.toml import read_toml
from handcrafted import build_bfs_transformer, model_size

from graphpath.core.checkpoint import CheckpointError
from graphpath.core.resolve import load
from graphpath.evaluation.predict import predict
from graphpath.analysis.perturb_figures import write_figures

KINDS = ("replace", "all", "group")
SCALES = ("relative", "absolute")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEMA_VERSION = 1
PROG = "python -m graphpath.perturb"
MAX_LR = 1.0  # as graphpath.core.config's: no optimizer here recovers with steps above the weights' scale


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class PerturbError(ValueError):
    """Bad input to the sweep; one line, exit status 2."""


@dataclass
class PerturbConfig:
    model: str = "handcrafted"  # "handcrafted" or a run directory / checkpoint path
    n: int | None = None  # handcrafted only: vertex count the model is built for
    kind: str = "replace"  # replace | all | group
    group: str | None = None  # group only: glob over parameter names
    scale: str = "relative"  # relative (noise sigma * RMS(W)) | absolute (noise sigma, the study's)
    sigmas: list = field(default_factory=lambda: [0.1, 0.3, 1.0])  # relative noise scales
    seeds: list = field(default_factory=lambda: [0, 1, 2, 3])  # one run per sigma x seed
    steps: int = 200  # gradient steps of recovery
    batch_size: int = 128  # fresh graphs per step
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    clip: float | None = 1.0  # gradient-norm clip per step (None = off): the hand-built model's
    #                           large gains make unclipped steps overshoot
    eval_size: int = 512  # held-out graphs (fixed, seed eval_seed)
    eval_every: int = 25  # steps between points of the recovery curve
    eval_seed: int = SPLITS["heldout-perturb"].seed  # data_gen.splits' row; another value redraws it
    threshold: float = 0.1  # a run has recovered once its held-out MSE is <= this
    with_handcrafted: bool = False  # learned runs: also sweep build_bfs_transformer(max_vertices) on the same data
    edge_tokens: bool = False  # hand-built model: the edge-token front end (handcrafted.edge_tokens)
    data: str | None = None  # preset name; None = test-any-large (handcrafted) / pretrain (learned)
    out: str | None = None  # perturb.json path; None = RUN_DIR/perturb.json or runs/handcrafted-nN/
    device: str = "cpu"
    threads: int = 1  # torch intra-op threads; these models are small, more threads only contend
    figures: bool = True

    def __post_init__(self):
        def need(ok, message):
            if not ok:
                raise PerturbError(message)

        need(self.kind in KINDS, f"unknown perturbation kind {self.kind!r} (choose from {', '.join(KINDS)})")
        need(self.optimizer in OPTIMIZERS, f"unknown optimizer {self.optimizer!r} (choose from {', '.join(OPTIMIZERS)})")
        need(self.scale in SCALES, f"unknown scale {self.scale!r} (choose from {', '.join(SCALES)})")
        need(self.kind != "group" or bool(self.group), "kind 'group' needs --group PATTERN (a glob over parameter names)")
        need(len(self.sigmas) > 0 and len(self.seeds) > 0, "empty sweep: give at least one sigma and one seed")
        need(all(isinstance(s, (int, float)) and math.isfinite(s) and s >= 0 for s in self.sigmas),
             f"every sigma must be a finite number >= 0, got {self.sigmas}")
        require_seeds(list(self.seeds), PerturbError)
        need(isinstance(self.eval_seed, int) and self.eval_seed >= 0,
             f"eval_seed must be an integer >= 0, got {self.eval_seed!r}")
        for name in ("steps", "batch_size", "eval_size", "eval_every", "threads"):
            value = getattr(self, name)
            need(isinstance(value, int) and value > 0, f"{name} must be a positive integer, got {value!r}")
        need(_finite(self.lr) and 0 < self.lr <= MAX_LR, f"lr must be a finite number in (0, {MAX_LR:g}] (a recovery "
             f"step larger than the weights cannot recover), got {self.lr!r}")
        need(_finite(self.weight_decay) and self.weight_decay >= 0 and self.lr * self.weight_decay < 1,
             f"weight_decay must be a finite number >= 0 with lr * weight_decay < 1, got {self.weight_decay!r}")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise PerturbError(f"unknown device {self.device!r}") from None
        need(device.type != "cuda" or torch.cuda.is_available(), f"device {self.device!r}: CUDA is not available")
        need(self.clip is None or (_finite(self.clip) and self.clip > 0),
             f"clip must be a finite number > 0 (or unset), got {self.clip}")
        need(_finite(self.threshold) and self.threshold > 0, f"threshold must be a finite number > 0, got {self.threshold}")
        need(self.data is None or self.data in PRESET_NAMES,
             f"unknown data set {self.data!r} (choose from {', '.join(PRESET_NAMES)})")
        need(self.model == "handcrafted" or Path(self.model).exists(),
             f"unknown model {self.model!r}: not 'handcrafted' and no such run directory or checkpoint")
        if self.model == "handcrafted":
            need(isinstance(self.n, int) and 3 <= self.n <= 64,
                 f"--model handcrafted needs --n in [3, 64], got {self.n!r}")
        else:
            need(self.n is None, "--n is only for --model handcrafted (a checkpoint knows its own size)")
        self.sigmas = sorted({float(s) for s in self.sigmas})


# ---- the model and its data ------------------------------------------------------------------

def load_target(cfg: PerturbConfig):
    """(model, data spec, description dict, default output directory). A learned model comes through
    graphpath.core.resolve and is perturbed on the data it was trained on (its first stage's), or on
    the study set `cfg.data` when that set asks what the model answers; anything else is refused."""
    if cfg.model == "handcrafted":
        sizes = study_sizes_up_to(cfg.n)
        spec = study_presets(**sizes)[cfg.data or "test-any-large"]
        info = {"model": "handcrafted", "n": cfg.n, "size": model_size(cfg.n, cfg.edge_tokens), "data_sizes": sizes}
        return build_bfs_transformer(cfg.n, edge_tokens=cfg.edge_tokens), spec, info, Path("runs") / f"handcrafted-n{cfg.n}"
    try:
        trained = load(cfg.model)  # a group of seeds: its first seed's model
        spec = trained.analysis_spec(cfg.data, PROG)
    except CheckpointError as error:
        raise PerturbError(str(error)) from None
    home = trained.group or trained.run
    return trained.model, spec, trained.description(), home.path if home is not None else Path(cfg.model).parent


# ---- perturbations ---------------------------------------------------------------------------

def rms(tensor: torch.Tensor) -> float:
    return tensor.detach().float().pow(2).mean().sqrt().item()


def candidate_matrices(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.dim() >= 2 and p.detach().abs().sum() > 0]


@torch.no_grad()
def perturb_(model: nn.Module, kind: str, sigma: float, seed: int, group: str | None = None,
             scale: str = "relative") -> list[str]:
    """Perturb `model` in place; returns the names of the parameters touched. The noise's standard
    deviation is sigma * RMS(W) (`scale` "relative") or sigma ("absolute")."""
    size = (lambda p: sigma * rms(p)) if scale == "relative" else (lambda p: sigma)
    generator = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    if kind == "replace":
        names = candidate_matrices(model)
        if not names:
            raise PerturbError("the model has no nonzero weight matrix to replace")
        name = names[int(torch.randint(len(names), (1,), generator=generator))]
        p = params[name]
        noise = torch.randn(p.shape, generator=generator).to(p)
        p.copy_(noise * size(p))
        return [name]
    names = list(params) if kind == "all" else [n for n in params if fnmatch.fnmatchcase(n, group)]
    if not names:
        raise PerturbError(f"--group {group!r} matches no parameter (names look like {', '.join(list(params)[:4])}, ...)")
    for name in names:
        p = params[name]
        p.add_(torch.randn(p.shape, generator=generator).to(p) * size(p))
    return names


# ---- loss, recovery and the sweep ------------------------------------------------------------

def batch_loss(model: nn.Module, batch) -> torch.Tensor:
    return (model(batch).float() - batch.label.float()).pow(2).mean()


def held_out_loss(model: nn.Module, batch, chunk: int = 1024) -> float:
    """MSE on a fixed held-out batch, through the evaluator's batched inference."""
    prediction = predict(model, batch, device=batch.device, chunk=chunk)  # (B,) float64
    loss = float(((prediction - batch.label.cpu().numpy()) ** 2).mean())
    return loss if math.isfinite(loss) else float("inf")


def recovery_optimizer(model: nn.Module, cfg: PerturbConfig) -> torch.optim.Optimizer:
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    return kinds[cfg.optimizer](model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def recover(model, spec, eval_batch, cfg: PerturbConfig, seed: int, device, bar=None) -> list[list[float]]:
    """Gradient descent on fresh samples; returns the curve [[step, held-out loss], ...] from step 0."""
    curve = [[0, held_out_loss(model, eval_batch)]]
    optimizer = recovery_optimizer(model, cfg)
    stream = StreamingSampler(spec, cfg.batch_size, seed=1_000_003 + seed)
    for step in range(1, cfg.steps + 1):
        loss = batch_loss(model, next(stream).to(device))
        optimizer.zero_grad(set_to_none=True)
        if torch.isfinite(loss):
            loss.backward()
            if cfg.clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            optimizer.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            curve.append([step, held_out_loss(model, eval_batch)])
        if bar is not None:
            bar.update(1)
    return curve


def basin_radius(runs: list[dict]) -> float | None:
    """Largest sigma at which at least half of that sigma's seeds recovered (None: no such sigma)."""
    rates = recovery_rates(runs)
    good = [float(sigma) for sigma, rate in rates.items() if rate >= 0.5]
    return max(good) if good else None


def recovery_rates(runs: list[dict]) -> dict[str, float]:
    """{repr(sigma): fraction of that sigma's runs that recovered}, sigmas ascending."""
    by_sigma: dict[float, list[bool]] = {}
    for run in runs:
        by_sigma.setdefault(run["sigma"], []).append(run["recovered"])
    return {repr(sigma): sum(v) / len(v) for sigma, v in sorted(by_sigma.items())}


def sweep_one(name: str, base: nn.Module, spec, eval_batch, cfg: PerturbConfig, device, bar) -> dict:
    """Every sigma x seed on one model: the summary fields and runs of its perturb.json."""
    base = base.to(device).eval()
    loss_before = held_out_loss(base, eval_batch)
    runs = []
    for sigma in cfg.sigmas:
        for seed in cfg.seeds:
            started = time.perf_counter()
            model = copy.deepcopy(base)
            touched = perturb_(model, cfg.kind, sigma, seed, cfg.group, cfg.scale)
            curve = recover(model, spec, eval_batch, cfg, seed, device, bar)
            hit = [step for step, loss in curve if loss <= cfg.threshold]
            runs.append({"model": name, "sigma": sigma, "seed": seed, "parameters": touched,
                         "loss_before": loss_before, "loss_after": curve[0][1], "loss_final": curve[-1][1],
                         "loss_best": min(loss for _, loss in curve), "curve": curve,
                         "recovered": bool(hit), "recovered_step": hit[0] if hit else None,
                         "seconds": round(time.perf_counter() - started, 3)})
            bar.set_postfix(model=name, sigma=sigma, seed=seed, final=f"{curve[-1][1]:.3g}")
    return {"loss_before": loss_before, "parameter_count": sum(p.numel() for p in base.parameters()),
            "runs": runs, "recovery_rate": recovery_rates(runs), "basin_radius": basin_radius(runs)}


def run_perturb(cfg: PerturbConfig, progress: bool = True) -> list[dict]:
    """The whole sweep: one perturb.json document per model (the model asked for, then with
    `with_handcrafted` the hand-built model on the same data)."""
    torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    base, spec, description, _ = load_target(cfg)
    targets = [("handcrafted" if cfg.model == "handcrafted" else "learned", base, description)]
    if cfg.with_handcrafted and cfg.model != "handcrafted" and spec.task != "distance":
        raise PerturbError(f"--with-handcrafted: the hand-built model answers distances; {cfg.model} was trained "
                           f"to answer {spec.task!r} (perturb it alone)")
    if cfg.with_handcrafted and cfg.model != "handcrafted":
        n = spec.max_vertices
        targets.append(("handcrafted", build_bfs_transformer(n, edge_tokens=cfg.edge_tokens),
                        {"model": "handcrafted", "n": n, "size": model_size(n, cfg.edge_tokens)}))
    eval_batch = split_batch("heldout-perturb", spec=spec, size=cfg.eval_size, seed=cfg.eval_seed).to(device)
    docs = []
    total = len(targets) * len(cfg.sigmas) * len(cfg.seeds) * cfg.steps
    with tqdm(total=total, desc=f"perturb {cfg.kind}", unit="step", disable=not progress) as bar:
        for name, model, info in targets:
            result = sweep_one(name, model, spec, eval_batch, cfg, device, bar)
            docs.append({"schema": SCHEMA_VERSION, "name": name, "target": info, "data": spec.to_dict(),
                         "settings": asdict(cfg), "kind": cfg.kind, "threshold": cfg.threshold,
                         "steps": cfg.steps, **result})
    return docs


# ---- command line ----------------------------------------------------------------------------

def _numbers(kind):
    def parse(text: str):
        try:
            return [kind(x) for x in text.replace(",", " ").split()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}s, got {text!r}")
    return parse


def parse_args(argv) -> PerturbConfig:
    parser = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="TOML file with a [perturb] table of these settings (flags override it)")
    parser.add_argument("--model", help="'handcrafted' or a run directory / checkpoint path")
    parser.add_argument("--n", type=int, help="handcrafted only: vertex count (3..64)")
    parser.add_argument("--kind", help=f"perturbation kind: {', '.join(KINDS)} (default replace)")
    parser.add_argument("--scale", help="noise scale: relative (x RMS of the tensor, default) | absolute")
    parser.add_argument("--group", help="kind group: glob over parameter names, e.g. 'blocks.2.*'")
    parser.add_argument("--sigmas", type=_numbers(float), help="relative noise scales, e.g. 0.1,0.3,1")
    parser.add_argument("--seeds", type=_numbers(int), help="seeds, e.g. 0,1,2")
    parser.add_argument("--steps", type=int, help="recovery step budget (default 200)")
    parser.add_argument("--batch-size", dest="batch_size", type=int)
    parser.add_argument("--optimizer", help=f"{', '.join(OPTIMIZERS)} (default adam)")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--weight-decay", dest="weight_decay", type=float)
    parser.add_argument("--clip", type=float, help="gradient-norm clip (default 1.0)")
    parser.add_argument("--eval-size", dest="eval_size", type=int)
    parser.add_argument("--eval-every", dest="eval_every", type=int)
    parser.add_argument("--eval-seed", dest="eval_seed", type=int)
    parser.add_argument("--threshold", type=float, help="recovered at held-out MSE <= this")
    parser.add_argument("--data", help=f"data set: {', '.join(PRESET_NAMES)}")
    parser.add_argument("--out", help="output perturb.json path")
    parser.add_argument("--device")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--with-handcrafted", dest="with_handcrafted", action="store_const", const=True,
                        help="learned runs: sweep the hand-built model on the same data too, for one plot")
    parser.add_argument("--edge-tokens", dest="edge_tokens", action="store_const", const=True,
                        help="hand-built model reads edge tokens (neighbour sets gathered in-model)")
    parser.add_argument("--no-figures", dest="figures", action="store_const", const=False)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = vars(parser.parse_args(argv))
    quiet, config_path = args.pop("quiet"), args.pop("config")
    values = {}
    if config_path:
        table = read_toml(config_path, PerturbError, "config ")
        values = table.get("perturb", table)
        reject_unknown_keys(PerturbConfig, values, PerturbError, f"{config_path} [perturb]")
    values.update({k: v for k, v in args.items() if v is not None})
    if values.get("model") is None:
        raise PerturbError("--model is required ('handcrafted' or a run directory)")
    try:
        cfg = PerturbConfig(**values)
    except TypeError as error:
        raise PerturbError(str(error)) from None
    cfg._quiet = quiet
    return cfg


def default_out(cfg: PerturbConfig) -> Path:
    if cfg.model == "handcrafted":
        return RunDir(Path("runs") / f"handcrafted-n{cfg.n}").perturb
    path = Path(cfg.model)
    return RunDir(path if path.is_dir() else path.parent.parent).perturb


def main(argv=None) -> int:
    return run_cli(PROG, _main, argv, PerturbError)


def _main(argv) -> int:
    cfg = parse_args(argv)
    out = Path(cfg.out) if cfg.out else default_out(cfg)
    invocation = provenance.entry(provenance.command_line(PROG, argv), cfg.device, cfg.threads)
    with hold(out.parent, PROG):  # writable, and no other writer, before the sweep runs
        docs = [finite(doc) for doc in run_perturb(cfg, progress=not cfg._quiet)]  # a diverged loss: null
        for doc in docs:
            doc["provenance"] = provenance.finish(invocation, "finished")
        paths = [out] + [out.with_name(f"{out.stem}-{doc['name']}.json") for doc in docs[1:]]
        if cfg.figures:
            figures = write_figures(docs, RunDir(out.parent).figures, prefix=out.stem)
            for doc in docs:
                doc["figures"] = figures
        for doc, path in zip(docs, paths):
            write_json(path, doc, default=str)
            print(f"wrote {path}: {doc['name']} basin radius {doc['basin_radius']}, "
                  f"recovery rate by sigma {doc['recovery_rate']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
