"""python -m graphpath.train — pre-train, fine-tune and score the learned transformer.

With no arguments it runs the CPU-sized study in experiments/small.toml (graphs n <= 8,
fine-tuning on n <= 5; about 5 minutes on one core) into runs/small/:
    pre-train on `pretrain` (target 2) -> fine-tune on `finetune` (on-path targets, small graphs)
    -> score every test set (graphpath.evaluation.suite) -> figures.

Examples:
    python -m graphpath.train                                   # the small study, all stages
    python -m graphpath.train --config experiments/paper.toml --device cuda
    python -m graphpath.train --train.lr 5e-4 --model.n_layers 4 --out runs/try
    python -m graphpath.train --out runs/small --resume         # continue an interrupted run
    python -m graphpath.train --seeds 0,1,2                     # runs/small/seed-{0,1,2}, scored pooled
    torchrun --nproc-per-node 4 -m graphpath.train --config experiments/paper.toml

Any config key can be overridden with `--SECTION.KEY VALUE` (sections: data, model, train =
pre-training, finetune); `--seed` and `--name` set the top-level keys. Unknown keys are errors.
With `--resume` a started stage may change only lr, min_lr, steps, grad_clip, time_budget and bookkeeping keys,
from the step it resumes at (graphpath/training/resume.py); config.toml never holds a value the
run did not use. A loss that becomes NaN stops the run at its last checkpoint with a finite
held-out loss, with the command that continues from it at a lower lr.
`--seeds 0,1,2` trains the config once per seed into OUT/seed-<k>/ (an ordinary run directory
each) and scores them together into OUT/eval.json and OUT/report.md (means with 95% CIs over the
seeds, each seed's numbers kept); graphpath_common.rundir describes a group's layout. On CPU the
seeds train side by side, one process and one thread each (graphpath/training/seeds.py;
`--workers K` at most K at once).

From Python, `train(config, out, ...)` runs the same stages (`graphpath.train(...)`); the command
line goes through the same two steps, `resolve_config` then `run_training` (its overrides are
already text); the sweep runner calls `train` itself.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from graphpath_common.cli import ArgumentParser, UsageError, handled_interrupt, run_cli
from graphpath_common.files import atomic_write_text
from graphpath_common.jsonfile import write_json
from graphpath_common.keys import require_seeds
from graphpath_common.locks import hold
from graphpath_common.provenance import command_line, recorded
from graphpath_common.rundir import RunDir, read_json
from graphpath_common.toml import toml_value

from data_gen import sample

from graphpath.core.checkpoint import CheckpointError, find_checkpoint, load_weights_into, read_weights, resume_checkpoint, unwrap
from graphpath.core.config import READOUT_INIT_SIZE, ConfigError, RunConfig, apply_overrides, from_dict, load_config, stage_specs, to_toml
from graphpath.training.feed import DataError, stage_seed
from graphpath.core.model import GraphTransformer
from graphpath.training.partial import fit_readout, prepare_finetune
from graphpath.evaluation.suite import EvalError, evaluate_run, write_outputs
from graphpath.evaluation.suite import evaluate as evaluate_runs
from graphpath.training.phases import PhaseDetector, detect_phase_changes, settle_record
from graphpath.training.resume import RESUMABLE, check_changes, write_record
from graphpath.training.seeds import SeedsFailed, train_seeds
from graphpath.training.stage import (MetricsLog, Runtime, TrainingDiverged, choose_precision,
                      heldout_set, latest_checkpoint, score_heldout, train_stage)

PROG = "python -m graphpath.train"
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "small.toml"
STAGE_CHOICES = ("pretrain", "finetune", "all")


def parse_args(argv):
    parser = ArgumentParser(
        prog=PROG, description=__doc__,
        epilog="Overrides: --SECTION.KEY VALUE, e.g. --train.lr 1e-3 --train.steps 500 --model.n_layers 4 "
               "--data.n_max 6 --finetune.steps 50. Run directory: config.toml, metrics.jsonl, phases.json, "
               "checkpoints/, figures/, eval.json (see docs/contracts.md). One process writes a run directory "
               "at a time: a second one exits 2 naming the first.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML preset (default: experiments/small.toml; with --resume or --stage finetune "
                             "on an existing run: the run's config.toml)")
    parser.add_argument("--stage", choices=STAGE_CHOICES, default="all", help="which stage(s) to run (default all)")
    parser.add_argument("--out", type=Path, default=None, help="run directory (default runs/<name>)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto = cuda when available, else cpu")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its latest checkpoint (finished stages are skipped); "
                             f"a started stage may change only {', '.join(RESUMABLE)} (from the step it resumes "
                             "at, recorded in resumes.json), a finished one nothing")
    parser.add_argument("--seed", type=int, default=None, help="override the config's seed")
    parser.add_argument("--seeds", default=None, metavar="K,K,...",
                        help="train once per seed into OUT/seed-<k>/, then score the seeds pooled into OUT")
    parser.add_argument("--workers", type=int, default=None, metavar="K",
                        help="with --seeds on CPU: seeds trained at once, each in its own process with one thread "
                             "(default: all of them, up to four per CPU; graphpath/training/seeds.py)")
    parser.add_argument("--name", default=None, help="override the config's run name")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice, one per core); on a busy "
                             "machine 1 thread can be several times faster than 2")
    parser.add_argument("--no-eval", action="store_true", help="skip scoring the test sets after --stage all")
    parser.add_argument("--no-figures", action="store_true", help="skip writing figures")
    parser.add_argument("--stop-after", type=int, default=None, metavar="STEPS",
                        help="stop after this many steps with a checkpoint, as an interruption would")
    args, rest = parser.parse_known_args(argv)
    overrides = []
    i = 0
    while i < len(rest):
        item = rest[i]
        if not item.startswith("--") or len(item) < 3:
            raise UsageError(f"unexpected argument {item!r} (overrides look like --train.lr 1e-3)")
        key = item[2:].split("=", 1)[0]
        if "." not in key:
            raise UsageError(f"unknown option --{key} (overrides look like --SECTION.KEY VALUE)")
        if "=" in item:
            value = item[2:].split("=", 1)[1]
            i += 1
        else:
            if i + 1 >= len(rest):
                raise UsageError(f"override {item} needs a value")
            value = rest[i + 1]
            i += 2
        overrides.append((key, value))
    if args.seed is not None:
        overrides.append(("seed", str(args.seed)))
    if args.name is not None:
        overrides.append(("name", f'"{args.name}"'))
    if args.threads is not None and args.threads <= 0:
        raise UsageError("--threads must be a positive integer")
    if args.stop_after is not None and args.stop_after <= 0:
        raise UsageError("--stop-after must be a positive number of steps")
    if args.workers is not None and args.workers <= 0:
        raise UsageError("--workers must be a positive integer")
    args.seeds = parse_seeds(args.seeds, args.seed)
    return args, overrides


def parse_seeds(text: str | None, seed: int | None) -> list[int] | None:
    if text is None:
        return None
    if seed is not None:
        raise UsageError("give --seed or --seeds, not both")
    try:
        seeds = [int(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise UsageError(f"--seeds must be comma-separated integers such as 0,1,2, got {text!r}") from None
    if not seeds or any(k < 0 for k in seeds) or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds must be distinct integers >= 0, got {text!r}")
    return seeds


def pick_device(choice: str, local_rank: int) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for but torch sees no CUDA device")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup_runtime(choice: str) -> Runtime:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(choice, local_rank)
    if world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return Runtime(device, dist.get_rank(), world)
    return Runtime(device)


def new_model(config: RunConfig) -> GraphTransformer:
    """Initialized from the run's seed alone (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(stage_seed(config.seed, "pretrain", "init").generate_state(1)[0]))
        return GraphTransformer(config.model)


def wrap(model: torch.nn.Module, runtime: Runtime) -> torch.nn.Module:
    model = model.to(runtime.device)
    if runtime.world > 1:
        ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return model


def write_phases(run_dir: Path, finetune_losses: dict | None) -> list[dict]:
    run = RunDir(run_dir)
    detector = PhaseDetector()
    metrics = run.read_metrics()
    changes, checked = detect_phase_changes(metrics, detector)
    previous = read_json(run.phases).get("finetune") if run.phases.is_file() else None
    write_json(run.phases, {"phase_changes": changes, "curves_checked": checked, "detector": detector.settings(),
                            "settle": settle_record(metrics), "finetune": finetune_losses or previous})
    return changes


def summary_line(result: dict, changes: list[dict], extra: str = "") -> str:
    minutes, seconds = divmod(int(result["seconds"]), 60)
    found = [c for c in changes if c["stage"] == result["stage"]]
    where = ", ".join(f"{c['label']}@{c['step']}" for c in found[:8]) or "none"
    return (f"{result['stage']}: {result['step']} steps, {result['examples']:,} examples in {minutes}m{seconds:02d}s "
            f"({result['examples_per_s']:,.0f} ex/s); held-out MSE {result['eval_loss']:.4g}"
            f"{' (the EMA of the weights)' if result.get('scored_weights') == 'ema' else ''}{extra}; "
            f"phase changes: {where}")


def resolve_config(config, out, overrides: list[tuple[str, str]], resume: bool, stage: str) -> tuple[RunConfig, Path]:
    """The run's config and directory: `config` (a RunConfig or a TOML path; None = the preset, or
    the run's own config.toml when resuming or fine-tuning an existing run) with the overrides
    (dotted key, text) applied; `out` defaults to runs/<name>."""
    def read(source) -> RunConfig:
        if isinstance(source, RunConfig):
            return from_dict(apply_overrides(source.to_dict(), overrides)) if overrides else source
        return load_config(source, overrides)

    if resume:
        if out is None:
            out = Path("runs") / read(config if config is not None else DEFAULT_CONFIG).name
        run = RunDir(out)
        if not run.config.is_file():
            raise UsageError(f"--resume: {out} holds no run (no {run.config.name})")
        return read(run.config if config is None else config), Path(out)
    chosen = read(config if config is not None else DEFAULT_CONFIG)
    out = Path(out) if out is not None else Path("runs") / chosen.name
    if stage == "finetune" and config is None and RunDir(out).config.is_file():
        chosen = read(RunDir(out).config)  # fine-tune the run as it was configured
    return chosen, out


@dataclass(frozen=True)
class Options:
    """How `train` runs the stages (the command line's flags)."""
    stage: str = "all"  # pretrain | finetune | all
    resume: bool = False  # continue from the latest checkpoint; finished stages are skipped
    evaluate: bool = True  # score the test sets after --stage all (graphpath.evaluation.suite)
    figures: bool = True
    stop_after: int | None = None  # stop after this many steps with a checkpoint, as an interruption would
    progress: bool = True  # tqdm bars
    workers: int | None = None  # seeds on CPU: at most this many side by side (None: all, up to four per CPU)

    def __post_init__(self):
        if self.stage not in STAGE_CHOICES:
            raise UsageError(f"stage must be one of {', '.join(STAGE_CHOICES)}, got {self.stage!r}")
        if self.stop_after is not None and (not isinstance(self.stop_after, int) or self.stop_after <= 0):
            raise UsageError("--stop-after must be a positive number of steps")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers <= 0):
            raise UsageError("--workers must be a positive integer")

    @property
    def stages(self) -> list[str]:
        return ["pretrain", "finetune"] if self.stage == "all" else [self.stage]


def check_run(options: Options, config: RunConfig, out: Path, runtime: Runtime) -> dict:
    """Refuse, before anything is written: existing checkpoints without --resume, fine-tuning with
    no pre-training, a precision the device cannot run, a damaged checkpoint to resume from, a value
    a started stage may not change (graphpath.training.resume). Returns the resumable changes to
    record."""
    for name in options.stages:
        choose_precision(runtime.device.type, (config.train if name == "pretrain" else config.finetune).precision)
        if not options.resume and latest_checkpoint(out, name) is not None:
            raise UsageError(f"{out} already has {name} checkpoints; pass --resume to continue, or a new --out")
    pretrained = RunDir(out).checkpoint("pretrain")
    if "pretrain" not in options.stages and not pretrained.is_file():
        raise UsageError(f"{out} has no finished pre-training ({pretrained.relative_to(out)}); "
                         "run --stage pretrain first")
    if options.resume:
        for name in options.stages:
            resume_checkpoint(out, name)  # a damaged one: one line now, before config.toml is rewritten
    return check_changes(config, out)


def stage_model(config: RunConfig, name: str, out: Path, runtime: Runtime, resumed: bool) -> torch.nn.Module:
    """The stage's starting model: a fresh one from the seed, for fine-tuning the pre-trained
    weights (unless body "random") prepared for the fine-tuning mode; wrapped for the runtime."""
    model = new_model(config)
    if name == "finetune":
        if config.finetune.body == "pretrained":  # "random": Lu et al.'s untrained-body control
            source = find_checkpoint(RunDir(out).checkpoint("pretrain"))
            load_weights_into(model, read_weights(source), source)
        total = model.num_parameters()
        trainable = prepare_finetune(model, config.finetune, config.seed, resumed)
        if runtime.main and config.finetune.mode != "full":
            print(f"finetune: mode {config.finetune.mode}, {trainable:,} trainable parameters "
                  f"(the model has {total:,})", file=sys.stderr)
        if config.finetune.readout_init == "lstsq" and not resumed:  # a resumed stage has its read-out
            spec = stage_specs(config)["finetune"]
            size = config.finetune.readout_init_size or READOUT_INIT_SIZE
            graphs = sample(spec, size, stage_seed(config.seed, "finetune", "readout"))
            fit = fit_readout(model, graphs)
            if runtime.main:
                print(f"finetune: least-squares read-out on {fit['graphs']:,} graphs: MSE {fit['mse']:.4g} "
                      f"(the kept read-out's {fit['mse_before']:.4g})", file=sys.stderr)
    return wrap(model, runtime)


def record_before_finetune(model, config: RunConfig, spec, out: Path, runtime: Runtime) -> None:
    """Step 0 of fine-tuning: the held-out loss of the model before any fine-tuning step."""
    heldout = heldout_set(config, spec, "finetune", config.finetune)
    before, labels = score_heldout(unwrap(model), heldout, config.finetune.buckets, runtime, config.finetune.pack)
    MetricsLog(RunDir(out).metrics, True).write(
        {"stage": "finetune", "step": 0, "examples": 0, "loss": before, "label_loss": labels, "lr": 0.0,
         "examples_per_s": 0.0, "eval_loss": before, "eval_label_loss": labels})


def finish_stage(options: Options, model, config: RunConfig, name: str, result: dict, out: Path,
                 runtime: Runtime) -> None:
    """phases.json, the stage's figures and its one-line summary."""
    extra, finetune_losses = "", None
    if name == "finetune":
        before = next(m["eval_loss"] for m in RunDir(out).read_metrics()
                      if m["stage"] == "finetune" and m["step"] == 0)
        finetune_losses = {"loss_before": before, "loss_after": result["eval_loss"]}
        optimizer = "continued" if config.finetune.optimizer == "continue" else "fresh"
        extra = f" (before fine-tuning {before:.4g}; {optimizer} optimizer)"
    changes = write_phases(out, finetune_losses)
    if options.figures:
        from graphpath.training.figures import write_stage_figures

        write_stage_figures(out, unwrap(model), config, name, runtime)
    print(summary_line(result, changes, extra), file=sys.stderr)


def train_run(options: Options, config: RunConfig, out: Path, runtime: Runtime, changes: dict,
              continue_with: str) -> bool:
    """Every asked-for stage of one run into `out`; False when `stop_after` stopped it early.
    `changes`: the resumable changes check_run allowed, recorded in resumes.json; `continue_with`:
    the command that resumes the run, for the line that says it stopped."""
    presets = stage_specs(config)  # each stage's task (data.pretrain_task / finetune_task)
    run = RunDir(out)
    if runtime.main:
        write_record(out, changes)
        atomic_write_text(run.config, to_toml(config))
    for name in options.stages:
        resume_from = resume_checkpoint(out, name) if options.resume else None  # damaged newest: one line, exit 2
        if resume_from is not None and resume_from.name == run.checkpoint(name).name:
            if runtime.main:
                print(f"{name}: already finished ({resume_from}); skipped", file=sys.stderr)
            continue
        if resume_from is None and runtime.main:  # lines left by an attempt that never checkpointed
            MetricsLog(run.metrics, True).truncate(name, -1)
        model = stage_model(config, name, out, runtime, resume_from is not None)
        if name == "finetune" and resume_from is None and runtime.main:
            record_before_finetune(model, config, presets["finetune"], out, runtime)
        result = train_stage(model, config, name, presets[name], out, runtime, resume_from, options.stop_after,
                             options.progress)
        if result["stopped"]:
            if runtime.main:
                print(f"{name}: stopped after step {result['step']}; continue with {continue_with}",
                      file=sys.stderr)
            return False
        if runtime.main:
            finish_stage(options, model, config, name, result, out, runtime)
        runtime.barrier()  # the next stage (or seed) starts from files the main process just wrote
    return True


def recording(runtime: Runtime, out: Path, command, threads: int | None):
    """provenance.json's entry for this invocation (main process only)."""
    if not runtime.main:
        return nullcontext({"status": "running"})
    return recorded(out, command, str(runtime.device), threads if threads is not None else torch.get_num_threads())


def run_training(config: RunConfig, out: Path, options: Options, seeds: list[int] | None = None,
                 device: str = "auto", threads: int | None = None, command=None) -> RunDir:
    """Train (and score) one run, or one run per seed into OUT/seed-<k>/ scored pooled into OUT,
    holding every directory it writes (graphpath_common.locks; the main process writes, the others
    only train). Ctrl-C raises KeyboardInterrupt with `continue_with`: the command that resumes."""
    if threads is not None:
        if not isinstance(threads, int) or threads <= 0:
            raise UsageError("--threads must be a positive integer")
        torch.set_num_threads(threads)
    runtime = setup_runtime(device)
    continue_with = runtime.resume_command(out, f" --seeds {','.join(map(str, seeds))}" if seeds else "")
    try:
        with ExitStack() as held:
            return train_all(config, out, options, seeds, runtime, held, command, threads, continue_with)
    except KeyboardInterrupt as interrupt:
        interrupt.continue_with = continue_with if runtime.main else None
        raise


def train_all(config: RunConfig, out: Path, options: Options, seeds: list[int] | None, runtime: Runtime,
              held: ExitStack, command, threads: int | None, continue_with: str) -> RunDir:
    """`run_training`'s work, each directory held in `held` before anything is checked or written."""
    def hold_dir(path: Path) -> None:
        if runtime.main:
            held.enter_context(hold(path, PROG))

    scoring = options.stage == "all" and options.evaluate and runtime.main and study_tasks(config)
    hold_dir(out)
    for name in options.stages:
        section = "train" if name == "pretrain" else "finetune"
        for line in getattr(config, section).warnings(section) if runtime.main else ():
            print(f"{PROG}: warning: {line}", file=sys.stderr)
    if seeds is None:
        changes = check_run(options, config, out, runtime)
        with recording(runtime, out, command, threads) as entry:
            finished = train_run(options, config, out, runtime, changes, continue_with)
            if finished and scoring:
                score(out, runtime.device)
            entry["status"] = "finished" if finished else "stopped"
        return RunDir(out)
    group = RunDir(out)
    runs = [(dataclasses.replace(config, seed=seed), group.seed(seed).path) for seed in seeds]
    side_by_side = runtime.world == 1 and runtime.device.type == "cpu"  # one process per seed (seeds.py)
    changes = []
    for seed_config, seed_out in runs:
        if not side_by_side:  # side by side, each seed's own process holds its directory
            hold_dir(seed_out)
        changes.append(check_run(options, seed_config, seed_out, runtime))
    with recording(runtime, out, command, threads) as entry:
        if runtime.main:
            atomic_write_text(group.config, to_toml(runs[0][0]))
        if side_by_side:
            finished = train_seeds(options, runtime.device.type, group.config, runs, options.workers)
            entry["status"] = "finished" if finished else "stopped"
            if not finished:
                print(f"stopped after --stop-after; continue with {continue_with}", file=sys.stderr)
            elif scoring:
                score_group(out, [seed_out for _, seed_out in runs], runtime.device)
            return group
        for (seed_config, seed_out), seed_changes in zip(runs, changes):
            if runtime.main:
                print(f"seed {seed_config.seed} -> {seed_out}", file=sys.stderr)
            with recording(runtime, seed_out, command, threads) as seed_entry:
                finished = train_run(options, seed_config, seed_out, runtime, seed_changes, continue_with)
                seed_entry["status"] = entry["status"] = "finished" if finished else "stopped"
            if not finished:
                return group
        if scoring:
            score_group(out, [seed_out for _, seed_out in runs], runtime.device)
    return group


def train(config=None, out=None, *, stage: str = "all", seeds: list[int] | None = None, resume: bool = False,
          device: str = "auto", threads: int | None = None, evaluate: bool = True, figures: bool = True,
          stop_after: int | None = None, overrides: dict | None = None, progress: bool = True,
          workers: int | None = None) -> RunDir:
    """Pre-train, fine-tune and score from Python: what `python -m graphpath.train` runs.

    config: a `RunConfig`, a TOML path, or None (experiments/small.toml; with `resume`, or with
        stage "finetune" on an existing run, the run's own config.toml).
    out: the run directory (default runs/<config name>).
    overrides: {"train.lr": 1e-3, "model.n_layers": 4, "seed": 1, ...}: dotted config keys and
        Python values, checked exactly as `--train.lr 1e-3` on the command line.
    seeds: train once per seed into out/seed-<k>/ and score them pooled into `out` (on CPU side by
        side, each in its own process with one thread, at most `workers` at once).
    stage, resume, device ("auto" | "cpu" | "cuda"), threads, evaluate, figures, stop_after,
    progress: as the command line's flags.

    Returns the run directory (`RunDir`; `run.finished("finetune")` says whether it completed).
    Raises ConfigError, CheckpointError, DataError, EvalError or UsageError (bad input, one line,
    nothing written; with `resume`, a change graphpath.training.resume does not allow is a
    UsageError naming the keys), graphpath_common.files.WriteError (an output that cannot be
    written) or graphpath_common.locks.FolderBusy (another process is writing `out`), and
    TrainingDiverged (the loss became NaN; the message names the last good checkpoint and the
    command that continues from it), graphpath.training.seeds.SeedsFailed (seeds trained side by
    side that failed, naming their logs). Ctrl-C raises KeyboardInterrupt with `continue_with`, the
    command that resumes the run.
    """
    if overrides is not None and not isinstance(overrides, dict):
        raise UsageError(f"overrides must be a dict of dotted keys to values, got {type(overrides).__name__}")
    texts = [(key, toml_value(value)) for key, value in (overrides or {}).items()]
    options = Options(stage, resume, evaluate, figures, stop_after, progress, workers)
    if seeds is not None:
        seeds = require_seeds(list(seeds), UsageError)  # distinct: a repeat would count twice
    config, out = resolve_config(config, out, texts, resume, stage)
    command = f"graphpath.train(out={str(out)!r}, stage={stage!r}, seeds={seeds!r}, resume={resume!r})"
    return run_training(config, out, options, seeds, device, threads, command)


def study_tasks(config: RunConfig) -> bool:
    """Whether the run trains the study's distance tasks, the only ones graphpath.evaluation.suite scores;
    otherwise says so (the run's held-out losses are in metrics.jsonl)."""
    other = config.data.other_tasks()
    if other:
        print(f"not scoring the study's test sets: this run trains {other} "
              "(python -m experiments.transfer scores other tasks)", file=sys.stderr)
    return not other


def score(out: Path, device: torch.device) -> None:
    """Score every test set with graphpath.evaluation.suite (eval.json, report.md, figures)."""
    evaluate_run(out, device=str(device))


def score_group(out: Path, runs: list[Path], device: torch.device) -> None:
    """Score the seeds' runs pooled (means, 95% CIs, each seed's numbers) into the group directory."""
    doc = evaluate_runs(runs, device=str(device), title=out.name)
    write_outputs(doc, out)


def main(argv=None) -> int:
    """Bad input, configuration, data or checkpoints, an unwritable or busy run directory: one
    line, exit 2 (graphpath_common.cli); a diverged loss: one line, exit 1, with the command that
    continues from the last good checkpoint; Ctrl-C: exit 130 with the command that resumes."""
    return run_cli(PROG, _main, argv, ConfigError, CheckpointError, DataError, EvalError)


def _main(argv) -> int:
    try:
        args, overrides = parse_args(argv)
        try:
            config, out = resolve_config(args.config, args.out, overrides, args.resume, args.stage)
            options = Options(args.stage, args.resume, not args.no_eval, not args.no_figures, args.stop_after,
                              workers=args.workers)
            command = command_line(PROG, argv)
            run_training(config, out, options, args.seeds, args.device, args.threads, command)
            return 0
        finally:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
    except (TrainingDiverged, SeedsFailed) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:
        continue_with = getattr(interrupt, "continue_with", "")
        if continue_with is None:  # a torchrun process other than the main one: it says nothing
            return handled_interrupt()
        if not continue_with:  # before the run had a directory: graphpath_common.cli says it
            raise
        print(f"{PROG}: interrupted; continue from the last checkpoint with {continue_with}", file=sys.stderr)
        return handled_interrupt()


if __name__ == "__main__":
    sys.exit(main())
