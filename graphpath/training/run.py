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
`--seeds 0,1,2` trains the config once per seed into OUT/seed-<k>/ (an ordinary run directory
each) and scores them together into OUT/eval.json and OUT/report.md (means with 95% CIs over the
seeds, each seed's numbers kept); see graphpath/core/rungroup.py. On CPU the seeds train side by
side, one process and one thread each (graphpath/training/seeds.py; `--workers K` at most K at once).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import torch

from graphpath_common.cli import ArgumentParser, UsageError, run_cli
from graphpath_common.files import atomic_write_text

from graphpath.core.checkpoint import CheckpointError, find_checkpoint, load_weights_into, read_weights, resume_checkpoint, unwrap
from graphpath.core.config import ConfigError, RunConfig, load_config, stage_specs, to_toml
from graphpath.training.feed import DataError, stage_seed
from graphpath.core.model import GraphTransformer
from graphpath.training.partial import prepare_finetune
from graphpath.core.rungroup import seed_dir
from graphpath.evaluation.suite import EvalError, evaluate_run, write_outputs
from graphpath.evaluation.suite import evaluate as evaluate_runs
from graphpath.training.phases import detect_phase_changes
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
               "checkpoints/, figures/, eval.json (see docs/contracts.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML preset (default: experiments/small.toml; with --resume or --stage finetune "
                             "on an existing run: the run's config.toml)")
    parser.add_argument("--stage", choices=STAGE_CHOICES, default="all", help="which stage(s) to run (default all)")
    parser.add_argument("--out", type=Path, default=None, help="run directory (default runs/<name>)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto = cuda when available, else cpu")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its latest checkpoint (finished stages are skipped)")
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
    if args.workers is not None and args.workers <= 0:
        raise UsageError("--workers must be a positive integer")
    if args.stop_after is not None and args.stop_after <= 0:
        raise UsageError("--stop-after must be a positive number of steps")
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
    metrics = MetricsLog(run_dir / "metrics.jsonl", True).read()
    changes = detect_phase_changes(metrics)
    path = run_dir / "phases.json"
    import json

    previous = json.loads(path.read_text()).get("finetune") if path.is_file() else None
    payload = {"phase_changes": changes, "finetune": finetune_losses or previous}
    atomic_write_text(path, json.dumps(payload, indent=1))
    return changes


def summary_line(result: dict, changes: list[dict], extra: str = "") -> str:
    minutes, seconds = divmod(int(result["seconds"]), 60)
    found = [c for c in changes if c["stage"] == result["stage"]]
    where = ", ".join(f"{c['label']}@{c['step']}" for c in found[:8]) or "none"
    return (f"{result['stage']}: {result['step']} steps, {result['examples']:,} examples in {minutes}m{seconds:02d}s "
            f"({result['examples_per_s']:,.0f} ex/s); held-out MSE {result['eval_loss']:.4g}{extra}; "
            f"phase changes: {where}")


def resolve_config(args, overrides) -> tuple[RunConfig, Path]:
    """The run's config and directory: the preset (or the run's own config.toml when resuming or
    fine-tuning an existing run) with the overrides applied."""
    if args.resume:
        out = args.out
        if out is None:
            base = load_config(args.config or DEFAULT_CONFIG, overrides)
            out = Path("runs") / base.name
        if not (out / "config.toml").is_file():
            raise UsageError(f"--resume: {out} holds no run (no config.toml)")
        config = load_config(out / "config.toml", overrides) if args.config is None else load_config(args.config, overrides)
        return config, out
    config = load_config(args.config or DEFAULT_CONFIG, overrides)
    out = args.out or Path("runs") / config.name
    if args.stage == "finetune" and args.config is None and (out / "config.toml").is_file():
        config = load_config(out / "config.toml", overrides)  # fine-tune the run as it was configured
    return config, out


def stage_names(args) -> list[str]:
    return ["pretrain", "finetune"] if args.stage == "all" else [args.stage]


def check_run(args, config: RunConfig, out: Path, runtime: Runtime) -> None:
    """Refuse, before anything is written: existing checkpoints without --resume, fine-tuning with
    no pre-training, a precision the device cannot run."""
    stages = stage_names(args)
    for name in stages:
        choose_precision(runtime.device.type, (config.train if name == "pretrain" else config.finetune).precision)
        if not args.resume and latest_checkpoint(out, name) is not None:
            raise UsageError(f"{out} already has {name} checkpoints; pass --resume to continue, or a new --out")
    if "pretrain" not in stages and not (out / "checkpoints" / "pretrain-final.json").is_file():
        raise UsageError(f"{out} has no finished pre-training (checkpoints/pretrain-final.json); run --stage pretrain first")


def stage_model(config: RunConfig, name: str, out: Path, runtime: Runtime, resumed: bool) -> torch.nn.Module:
    """The stage's starting model: a fresh one from the seed, for fine-tuning the pre-trained
    weights (unless body "random") prepared for the fine-tuning mode; wrapped for the runtime."""
    model = new_model(config)
    if name == "finetune":
        if config.finetune.body == "pretrained":  # "random": Lu et al.'s untrained-body control
            source = find_checkpoint(out / "checkpoints" / "pretrain-final.json")
            load_weights_into(model, read_weights(source), source)
        total = model.num_parameters()
        trainable = prepare_finetune(model, config.finetune, config.seed, resumed)
        if runtime.main and config.finetune.mode != "full":
            print(f"finetune: mode {config.finetune.mode}, {trainable:,} trainable parameters "
                  f"(the model has {total:,})", file=sys.stderr)
    return wrap(model, runtime)


def record_before_finetune(model, config: RunConfig, spec, out: Path, runtime: Runtime) -> None:
    """Step 0 of fine-tuning: the held-out loss of the model before any fine-tuning step."""
    heldout = heldout_set(config, spec, "finetune", config.finetune)
    before, labels = score_heldout(unwrap(model), heldout, config.finetune.buckets, runtime, config.finetune.pack)
    MetricsLog(out / "metrics.jsonl", True).write(
        {"stage": "finetune", "step": 0, "examples": 0, "loss": before, "label_loss": labels, "lr": 0.0,
         "examples_per_s": 0.0, "eval_loss": before, "eval_label_loss": labels})


def finish_stage(args, model, config: RunConfig, name: str, result: dict, out: Path, runtime: Runtime) -> None:
    """phases.json, the stage's figures and its one-line summary."""
    extra, finetune_losses = "", None
    if name == "finetune":
        before = next(m["eval_loss"] for m in MetricsLog(out / "metrics.jsonl", True).read()
                      if m["stage"] == "finetune" and m["step"] == 0)
        finetune_losses = {"loss_before": before, "loss_after": result["eval_loss"]}
        optimizer = "continued" if config.finetune.optimizer == "continue" else "fresh"
        extra = f" (before fine-tuning {before:.4g}; {optimizer} optimizer)"
    changes = write_phases(out, finetune_losses)
    if not args.no_figures:
        from graphpath.training.figures import write_stage_figures

        write_stage_figures(out, unwrap(model), config, name, runtime)
    print(summary_line(result, changes, extra), file=sys.stderr)


def train_run(args, config: RunConfig, out: Path, runtime: Runtime) -> bool:
    """Every asked-for stage of one run into `out`; False when --stop-after stopped it early."""
    presets = stage_specs(config)  # each stage's task (data.pretrain_task / finetune_task)
    if runtime.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.toml", to_toml(config))
    for name in stage_names(args):
        resume_from = resume_checkpoint(out, name) if args.resume else None  # damaged newest: one line, exit 2
        if resume_from is not None and resume_from.name == f"{name}-final.json":
            if runtime.main:
                print(f"{name}: already finished ({resume_from}); skipped", file=sys.stderr)
            continue
        if resume_from is None and runtime.main:  # lines left by an attempt that never checkpointed
            MetricsLog(out / "metrics.jsonl", True).truncate(name, -1)
        model = stage_model(config, name, out, runtime, resume_from is not None)
        if name == "finetune" and resume_from is None and runtime.main:
            record_before_finetune(model, config, presets["finetune"], out, runtime)
        result = train_stage(model, config, name, presets[name], out, runtime, resume_from, args.stop_after)
        if result["stopped"]:
            if runtime.main:
                print(f"{name}: stopped after step {result['step']}; continue with "
                      f"python -m graphpath.train --out {out} --resume", file=sys.stderr)
            return False
        if runtime.main:
            finish_stage(args, model, config, name, result, out, runtime)
        runtime.barrier()  # the next stage (or seed) starts from files the main process just wrote
    return True


def run(args, overrides) -> int:
    config, out = resolve_config(args, overrides)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    runtime = setup_runtime(args.device)
    scoring = args.stage == "all" and not args.no_eval and runtime.main and study_tasks(config)
    if args.seeds is None:
        check_run(args, config, out, runtime)
        if train_run(args, config, out, runtime) and scoring:
            score(out, runtime.device)
        return 0
    runs = [(dataclasses.replace(config, seed=seed), seed_dir(out, seed)) for seed in args.seeds]
    for seed_config, seed_out in runs:
        check_run(args, seed_config, seed_out, runtime)
    if runtime.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.toml", to_toml(runs[0][0]))
    if runtime.world == 1 and runtime.device.type == "cpu":  # one process per seed, side by side
        finished = train_seeds(args, runs, args.workers)
    else:
        finished = train_in_turn(args, runs, runtime)
    if finished and scoring:
        score_group(out, [seed_out for _, seed_out in runs], runtime.device)
    return 0


def train_in_turn(args, runs: list[tuple[RunConfig, Path]], runtime: Runtime) -> bool:
    """The seeds one after another in this process (torchrun, CUDA); False when --stop-after stopped one."""
    for seed_config, seed_out in runs:
        if runtime.main:
            print(f"seed {seed_config.seed} -> {seed_out}", file=sys.stderr)
        if not train_run(args, seed_config, seed_out, runtime):
            return False
    return True


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
    """Bad input, configuration, data or checkpoints: one line, exit 2 (graphpath_common.cli);
    a diverged loss: one line, exit 1; Ctrl-C: exit 130 with how to resume."""
    return run_cli(PROG, _main, argv, ConfigError, CheckpointError, DataError, EvalError)


def _main(argv) -> int:
    try:
        args, overrides = parse_args(argv)
        try:
            return run(args, overrides)
        finally:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
    except (TrainingDiverged, SeedsFailed) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; resume from the last checkpoint with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
