"""`python -m graphpath.llc`: the local learning coefficient (LLC) of a trained solution, by SGLD.

The estimator is devinterp's (Lau et al. 2023), written out here: around the trained weights w*
run SGLD chains on the localised, tempered posterior
    w <- w - (eps / 2) * (gamma * (w - w*) + nbeta * grad L_batch(w)) + N(0, eps)
with nbeta = n / log n (n = the fixed data set's size) unless set, and estimate
    LLC = nbeta * (mean over chains and post-burn-in steps of L_batch(w_t) - L_n(w*)),
L the per-example loss (MSE here), L_n its mean over the whole data set. A regular model with d
parameters has LLC d/2; a degenerate solution has less.

Diagnostics per chain: the loss trace, the fraction of recorded steps whose batch loss is below
L_n(w*) (a chain that finds lower loss is not sampling around a minimum), and the estimate itself.
A negative estimate or a non-finite loss is a failed calibration, not a result: the estimate is
flagged `ok: false` (and a non-finite loss stops with `LLCError`, exit 2 on the command line).
`calibrate` runs a small eps x gamma grid (the chosen setting's chains are the estimate) and
keeps the largest eps whose chains stay finite,
positive and settled (pooled over chains, the second half of the recorded traces is not above
the first by more than 20 percent of the excess loss: the chains have stopped climbing); the rule
and every row of the sweep are recorded in llc.json. A model whose every setting diverged is bad
input (exit 2, nothing written); one whose settings stay finite but none qualifies gets estimate
null beside its rows (a failed calibration, reported).

Models: `RUN_DIR` (every final checkpoint, pre-train and fine-tuned, found by graphpath.core.resolve,
on the data the run was first trained on: its pre-training set; beside a run trained on distances,
the hand-built model of the same size and the same with its sharpness lowered, `--soft-betas` as
graphpath.analysis.basin, on the same data) or `handcrafted --n N` (the two hand-built ones). Output: `RUN_DIR/llc.json` (schema in
docs/contracts.md).
"""
from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from data_gen import study_presets
from data_gen.spec import study_sizes_up_to
from data_gen.splits import SPLITS, split_batch
from graphpath_common import provenance
from graphpath_common.cli import ArgumentParser, run_cli
from graphpath_common.jsonfile import write_json
from graphpath_common.locks import hold
from graphpath_common.rundir import RunDir
from handcrafted import build_bfs_transformer

from graphpath.core.checkpoint import CheckpointError
from graphpath.core.resolve import load

PROG = "python -m graphpath.llc"
SCHEMA_VERSION = 1
SOFT_BETAS = (5.0, 8.0)  # graphpath.analysis.basin's default --soft-betas
CALIBRATION_RULE = ("of the eps x gamma grid, the largest eps whose chains stay finite, every chain's estimate "
                    "positive and the pooled trace settled; ties: the smallest gamma")


class LLCError(ValueError):
    """A setting that cannot give an estimate (diverging chain, bad input); one line, exit 2."""


@dataclass
class LLCConfig:
    eps: float = 1e-5  # SGLD step size
    gamma: float = 1000.0  # localisation strength (pull towards w*)
    nbeta: float | None = None  # n * inverse temperature; None = n / log n
    chains: int = 4
    steps: int = 300  # SGLD steps per chain
    burn_in: int = 100  # steps not recorded in the estimate
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self):
        for name in ("eps", "gamma"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise LLCError(f"{name} must be a finite number > 0, got {value!r}")
        if self.nbeta is not None and not (math.isfinite(self.nbeta) and self.nbeta > 0):
            raise LLCError(f"nbeta must be > 0 (or unset), got {self.nbeta!r}")
        for name in ("chains", "steps", "batch_size"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) > 0):
                raise LLCError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not (isinstance(self.burn_in, int) and 0 <= self.burn_in < self.steps):
            raise LLCError(f"burn_in must be in [0, steps), got {self.burn_in!r}")


LossOn = Callable[[nn.Module, torch.Tensor], torch.Tensor]  # (model, row indices (b,)) -> scalar


def sgld_chain(model: nn.Module, loss_on: LossOn, n: int, cfg: LLCConfig, nbeta: float,
               generator: torch.Generator, bar=None) -> list[float]:
    """One chain from w* (the model's weights, left untouched); returns every step's batch loss."""
    model = copy.deepcopy(model).train()
    params = [p for p in model.parameters() if p.requires_grad]
    anchor = [p.detach().clone() for p in params]
    trace = []
    for _ in range(cfg.steps):
        rows = torch.randint(n, (min(cfg.batch_size, n),), generator=generator)
        loss = loss_on(model, rows)
        if not torch.isfinite(loss):
            raise LLCError(f"SGLD diverged (loss {loss.item()}) at eps={cfg.eps:g}, gamma={cfg.gamma:g}: "
                           "lower eps or raise gamma")
        grads = torch.autograd.grad(loss, params)
        trace.append(loss.item())
        with torch.no_grad():
            for p, g, w0 in zip(params, grads, anchor):
                noise = torch.randn(p.shape, generator=generator).to(p) * math.sqrt(cfg.eps)
                p.add_(-0.5 * cfg.eps * (cfg.gamma * (p - w0) + nbeta * g) + noise)
        if bar is not None:
            bar.update(1)
    return trace


def estimate_llc(model: nn.Module, loss_on: LossOn, n: int, cfg: LLCConfig, progress: bool = False) -> dict:
    """Every chain, the estimate and its diagnostics (the `estimate` object of llc.json)."""
    nbeta = cfg.nbeta if cfg.nbeta is not None else n / math.log(n)
    with torch.no_grad():
        full = torch.arange(n)
        init_loss = float(sum(loss_on(model, chunk).item() * len(chunk) for chunk in full.split(4096)) / n)
    generator = torch.Generator().manual_seed(cfg.seed)
    chains = []
    with tqdm(total=cfg.chains * cfg.steps, desc="sgld", unit="step", disable=not progress) as bar:
        for _ in range(cfg.chains):
            trace = sgld_chain(model, loss_on, n, cfg, nbeta, generator, bar)
            kept = trace[cfg.burn_in:]
            half = len(kept) // 2
            chains.append({"trace": trace, "llc": nbeta * (sum(kept) / len(kept) - init_loss),
                           "below_init": sum(v < init_loss for v in kept) / len(kept),
                           "first_half_mean": sum(kept[:half]) / max(1, half),
                           "second_half_mean": sum(kept[half:]) / len(kept[half:])})
    values = [c["llc"] for c in chains]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1))
    first = sum(c["first_half_mean"] for c in chains) / len(chains)
    second = sum(c["second_half_mean"] for c in chains) / len(chains)
    settled = second - first <= 0.2 * abs(second - init_loss) + 1e-12  # pooled: no longer climbing
    return {"llc": mean, "llc_std": std, "init_loss": init_loss, "nbeta": nbeta, "n": n,
            "below_init": sum(c["below_init"] for c in chains) / len(chains), "settled": settled,
            "ok": mean > 0 and all(v > 0 for v in values), "settings": asdict(cfg), "chains": chains}


def calibrate(model: nn.Module, loss_on: LossOn, n: int, base: LLCConfig, eps_grid, gamma_grid,
              progress: bool = False) -> tuple[dict | None, list[dict]]:
    """The eps x gamma sweep: rows {eps, gamma, llc, llc_std, below_init, settled, ok, diverged};
    returns the chosen setting's estimate (largest eps that is finite, positive and settled; ties:
    smallest gamma), or None when no setting qualifies, and the rows."""
    rows, good = [], []
    for eps in eps_grid:
        for gamma in gamma_grid:
            cfg = LLCConfig(**{**asdict(base), "eps": float(eps), "gamma": float(gamma)})
            try:
                est = estimate_llc(model, loss_on, n, cfg, progress)
                row = {k: est[k] for k in ("llc", "llc_std", "below_init", "settled", "ok")}
                row["diverged"] = False
            except LLCError:
                row = {"llc": None, "llc_std": None, "below_init": None, "settled": False, "ok": False,
                       "diverged": True}
            rows.append({"eps": float(eps), "gamma": float(gamma), **row})
            if row["ok"] and row["settled"]:
                good.append((cfg, est))
    if not good:
        return None, rows
    return max(good, key=lambda pair: (pair[0].eps, -pair[0].gamma))[1], rows


# ---- the study's models ----------------------------------------------------------------------

def graph_loss_on(batch) -> LossOn:
    """Per-example MSE on rows of a fixed GraphBatch."""
    def loss_on(model: nn.Module, rows: torch.Tensor) -> torch.Tensor:
        part = batch[rows]
        return (model(part).float() - part.label.float()).pow(2).mean()
    return loss_on


def handcrafted_models(n: int, soft_betas: tuple[float, float]) -> list[tuple[str, nn.Module, dict]]:
    """The hand-built model and the same with its attention sharpness lowered (graphpath.analysis.basin's
    "handcrafted-soft"), so the LLC sits beside the bracketed basin radius for both."""
    return [("handcrafted", build_bfs_transformer(n), {"model": "handcrafted", "n": n}),
            ("handcrafted-soft", build_bfs_transformer(n, beta_hop=soft_betas[0], beta_copy=soft_betas[1]),
             {"model": "handcrafted", "n": n, "beta_hop": soft_betas[0], "beta_copy": soft_betas[1]})]


def targets(model_arg: str, n_vertices: int | None, soft_betas: tuple[float, float] = SOFT_BETAS
            ) -> tuple[list[tuple[str, nn.Module, dict]], object, Path]:
    """[(name, model, description)], the data spec, and the output directory."""
    if model_arg == "handcrafted":
        if not (isinstance(n_vertices, int) and 3 <= n_vertices <= 64):
            raise LLCError(f"handcrafted needs --n in [3, 64], got {n_vertices!r}")
        spec = study_presets(**study_sizes_up_to(n_vertices))["test-any-large"]
        return handcrafted_models(n_vertices, soft_betas), spec, default_dir(model_arg, n_vertices)
    path = Path(model_arg)
    if not path.is_dir():
        raise LLCError(f"unknown model {model_arg!r}: not 'handcrafted' and no such run directory")
    if n_vertices is not None:
        raise LLCError("--n is only for handcrafted (a checkpoint knows its own size)")
    found = []
    for stage in ("pretrain", "finetune"):
        try:
            trained = load(path, stage)  # a group of seeds: its first seed's
        except CheckpointError as error:
            if str(error).startswith(f"no {stage} checkpoint"):
                continue
            raise LLCError(str(error)) from None
        found.append((stage, trained.model, trained.description(), trained))
    if not found:
        raise LLCError(f"no checkpoint in {path}")
    try:  # every checkpoint on the data the run was first trained on (its pre-training set)
        spec = found[0][3].analysis_spec(None, PROG)
        for _, _, _, trained in found[1:]:  # one data set for every model: they must answer one question
            trained.require_answers(spec, PROG)
    except CheckpointError as error:
        raise LLCError(str(error)) from None
    out = [(name, model, desc) for name, model, desc, _ in found]
    if spec.task != "distance":
        print(f"note: no hand-built models beside {path}: they answer distances, it was trained to answer "
              f"{spec.task!r}", file=sys.stderr)
        return out, spec, default_dir(model_arg, n_vertices)
    return out + handcrafted_models(spec.max_vertices, soft_betas), spec, default_dir(model_arg, n_vertices)


def default_dir(model_arg: str, n_vertices: int | None) -> Path:
    """Where llc.json goes without --out: the run directory, or runs/handcrafted-n<N>."""
    return Path("runs") / f"handcrafted-n{n_vertices}" if model_arg == "handcrafted" else Path(model_arg)


@dataclass
class Request:
    model: str
    n: int | None = None
    data_size: int = 2048
    data_seed: int = SPLITS["sample-llc"].seed  # data_gen.splits' row; another value redraws it
    calibrate_on: str | None = None  # model name whose sweep picks the setting; None = each its own
    eps_grid: list = field(default_factory=lambda: [1e-6, 1e-5, 1e-4])
    gamma_grid: list = field(default_factory=lambda: [100.0, 1000.0])
    soft_betas: tuple = SOFT_BETAS


def run(request: Request, base: LLCConfig, progress: bool = True) -> dict:
    models, spec, out_dir = targets(request.model, request.n, tuple(request.soft_betas))
    batch = split_batch("sample-llc", spec=spec, size=request.data_size, seed=request.data_seed)
    loss_on = graph_loss_on(batch)
    results = {}
    for name, model, description in models:
        model.eval()
        estimate, rows = calibrate(model, loss_on, request.data_size, base, request.eps_grid,
                                   request.gamma_grid, progress)
        if all(row["diverged"] for row in rows):
            raise LLCError(f"SGLD diverged (non-finite loss) for {name} at every setting tried (eps "
                           f"{', '.join(f'{e:g}' for e in request.eps_grid)} x gamma "
                           f"{', '.join(f'{g:g}' for g in request.gamma_grid)}): lower eps or raise gamma")
        results[name] = {"target": description, "parameter_count": sum(p.numel() for p in model.parameters()),
                         "calibration": rows, "estimate": estimate}  # None: no setting qualified
    return {"schema": SCHEMA_VERSION, "calibration_rule": CALIBRATION_RULE, "data": spec.to_dict(),
            "data_size": request.data_size,
            "data_seed": request.data_seed, "models": results, "out_dir": str(out_dir)}


def _main(argv) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("model", help="a run directory, or 'handcrafted' with --n")
    parser.add_argument("--n", type=int, help="handcrafted only: vertex count")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--burn-in", dest="burn_in", type=int, default=100)
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=256)
    parser.add_argument("--data-size", dest="data_size", type=int, default=2048)
    parser.add_argument("--eps", type=float, nargs="+", default=[1e-6, 1e-5, 1e-4], help="SGLD step sizes to try")
    parser.add_argument("--gamma", type=float, nargs="+", default=[100.0, 1000.0], help="localisations to try")
    parser.add_argument("--soft-betas", dest="soft_betas", type=float, nargs=2, default=list(SOFT_BETAS),
                        help="beta_hop beta_copy of the softened hand-built model (as graphpath.analysis.basin)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="output path (default RUN_DIR/llc.json)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    if args.data_size < 2:
        raise LLCError(f"--data-size must be >= 2, got {args.data_size}")
    base = LLCConfig(eps=args.eps[0], gamma=args.gamma[0], chains=args.chains, steps=args.steps,
                     burn_in=args.burn_in, batch_size=args.batch_size, seed=args.seed)
    for value in args.eps + args.gamma:
        LLCConfig(eps=value, gamma=value)  # every grid value is checked before any work
    if not all(math.isfinite(b) and b > 0 for b in args.soft_betas):
        raise LLCError(f"--soft-betas must be two finite numbers > 0, got {args.soft_betas}")
    if args.model != "handcrafted" and not Path(args.model).is_dir():
        raise LLCError(f"unknown model {args.model!r}: not 'handcrafted' and no such run directory")
    out = Path(args.out) if args.out else RunDir(default_dir(args.model, args.n)).llc
    invocation = provenance.entry(provenance.command_line(PROG, argv), "cpu", torch.get_num_threads())
    with hold(out.parent, PROG):  # writable, and no other writer, before the chains run
        doc = run(Request(args.model, args.n, args.data_size, eps_grid=args.eps, gamma_grid=args.gamma,
                          soft_betas=tuple(args.soft_betas)),
                  base, progress=not args.quiet)
        doc["provenance"] = provenance.finish(invocation, "finished")
        doc.pop("out_dir", None)
        write_json(out, doc)
    for name, result in doc["models"].items():
        est = result["estimate"]
        if est is None:
            print(f"{name}: no eps x gamma setting gave a finite, positive, settled estimate (calibration "
                  f"failed; see its calibration rows)")
            continue
        print(f"{name}: LLC {est['llc']:.3g} +- {est['llc_std']:.2g} (eps {est['settings']['eps']:g}, "
              f"gamma {est['settings']['gamma']:g}, below start {est['below_init']:.2f}, ok {est['ok']})")
    print(f"wrote {out}")
    return 0


def main(argv=None) -> int:
    return run_cli(PROG, _main, argv, LLCError)


if __name__ == "__main__":
    sys.exit(main())
