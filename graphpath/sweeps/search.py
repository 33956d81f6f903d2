"""python -m graphpath.search — a recipe search over ordinary training jobs, with Optuna.

A search spec names a base run config, a space of dotted config keys and a number of trials.
Each trial is an ordinary pre-training run directory `OUT/trials/<number>/`, trained by the train
command in the sweep runner's executors (`local` process pool, `slurm`, `submitit-local`), in
`rungs` pieces: after each piece (`--stop-after`, then `--resume`, which continues bit-identically)
the trial's validation curve so far is reported to Optuna and its pruner may stop the trial.

The objective is the **validation** loss (`val_loss`, split `validation-pretrain` of
data_gen.splits) at the trial's last evaluation: never the held-out or test sets that runs
report, so nothing reported is selected on its own data. Retrain the best recipe (`OUT/best.toml`)
to report it.

    python -m graphpath.search experiments/search-small.toml [--out DIR] [--trials N]
                               [--executor local|slurm|submitit-local] [--workers K]

    name = "search-small"          # OUT defaults to runs/<name>
    base = "small.toml"            # a run config, relative to the spec (or an inline [base] table)
    trials = 16                    # trials in all (a rerun adds up to this many)
    seed = 0                       # the sampler's seed (TPE); runs keep the base config's seed
    examples = 600000              # optional: train.steps = ceil(examples / train.batch_size)
    rungs = 4                      # pieces per trial; the pruner may stop a trial after each
    pruner = "median"              # median | none
    startup_trials = 4             # median: no pruning before this many trials have finished
    [space]                        # dotted config key -> distribution
    "train.lr" = { low = 3e-4, high = 3e-3, log = true }
    "train.warmup_steps" = { low = 0, high = 300, step = 50 }
    "train.batch_size" = { choices = [256, 512, 1024] }

Output (resumable: a rerun continues unfinished trials from their checkpoints and adds trials up
to `trials`): `OUT/study.log` (Optuna's journal storage), `OUT/spec.toml` (the spec, a rerun with
another spec is refused), `OUT/trials/<number>/` (run directories with their train.log),
`OUT/search.json` (every trial's parameters, state, validation curve and value; the best trial) and
`OUT/best.toml` (the best trial's run config). With one worker the trials are reproducible from the
seed; with several, which trial the sampler proposes next depends on which finished first.
"""
from __future__ import annotations

import contextlib
import json
import math
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from graphpath_common.files import atomic_write_text
from graphpath_common.jsonfile import write_json
from graphpath_common.locks import hold
from graphpath_common.keys import reject_unknown_keys
from graphpath_common.toml import read_toml

from graphpath.core.config import ConfigError, apply_overrides, from_dict, to_toml
from graphpath.sweeps.runner import (SweepError, add_executor_options, config_text, default_workers,
                                     executor_options, make_executor, run_study_cli)
from graphpath.sweeps.executors import shut_down_on_exit

SPEC_KEYS = ("name", "base", "trials", "seed", "examples", "rungs", "pruner", "startup_trials", "space")
PRUNERS = ("median", "none")
VALIDATION_SIZE = 4096  # graphs of the validation split when the base config scores none


class SearchError(SweepError):
    """Bad search input (spec, space, an output directory of another spec); one line, exit 2."""


@dataclass
class SearchSpec:
    name: str  # OUT defaults to runs/<name>
    base: dict  # raw run config (TOML-shaped)
    space: dict  # dotted key -> {low, high[, log][, step]} | {choices}
    trials: int = 16  # trials in all
    seed: int = 0  # the TPE sampler's seed
    examples: int | None = None  # train.steps = ceil(examples / batch_size) when set
    rungs: int = 4  # pieces per trial (pruning points)
    pruner: str = "median"  # median | none
    startup_trials: int = 4  # median pruner: finished trials before any pruning

    def __post_init__(self):
        def need(ok, message):
            if not ok:
                raise SearchError(f"search spec: {message}")

        for key in ("trials", "rungs"):
            value = getattr(self, key)
            need(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                 f"{key} must be a positive integer, got {value!r}")
        need(isinstance(self.seed, int) and self.seed >= 0, f"seed must be an integer >= 0, got {self.seed!r}")
        need(isinstance(self.startup_trials, int) and self.startup_trials >= 0,
             f"startup_trials must be an integer >= 0, got {self.startup_trials!r}")
        need(self.examples is None or (isinstance(self.examples, int) and self.examples > 0),
             f"examples must be a positive integer, got {self.examples!r}")
        need(self.pruner in PRUNERS, f"pruner must be one of {', '.join(PRUNERS)}, got {self.pruner!r}")
        need(isinstance(self.space, dict) and self.space, "[space] must name at least one config key")
        self.distributions()  # every entry is a distribution
        for params in (self.corner(0), self.corner(-1)):
            self.trial_config(params)  # every key exists and both corners make a valid config

    def distributions(self) -> dict:
        import optuna.distributions as od

        out = {}
        for key, entry in self.space.items():
            if not isinstance(entry, dict):
                raise SearchError(f"search spec: space {key!r} must be a table such as {{ low = 1, high = 2 }}")
            reject_unknown_keys(("low", "high", "log", "step", "choices"), entry, SearchError, f"space {key!r}")
            if "choices" in entry:
                if set(entry) != {"choices"} or not isinstance(entry["choices"], list) or not entry["choices"]:
                    raise SearchError(f"search spec: space {key!r}: choices is a non-empty list, alone")
                out[key] = od.CategoricalDistribution(entry["choices"])
                continue
            low, high = entry.get("low"), entry.get("high")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or low >= high:
                raise SearchError(f"search spec: space {key!r} needs numbers low < high, got {low!r}, {high!r}")
            log, step = bool(entry.get("log", False)), entry.get("step")
            if log and (low <= 0 or step is not None):
                raise SearchError(f"search spec: space {key!r}: log needs low > 0 and no step")
            if isinstance(low, int) and isinstance(high, int) and (step is None or isinstance(step, int)):
                out[key] = od.IntDistribution(low, high, log=log, step=1 if step is None else step)
            else:
                out[key] = od.FloatDistribution(float(low), float(high), log=log, step=step)
        return out

    def corner(self, end: int) -> dict:
        """The lowest (end 0) or highest (end -1) value of every distribution."""
        values = {}
        for key, dist in self.distributions().items():
            values[key] = dist.choices[end] if hasattr(dist, "choices") else (dist.low if end == 0 else dist.high)
        return values

    def trial_config(self, params: dict) -> dict:
        """The trial's raw run config: the base with the parameters, its steps from `examples`, a
        validation set scored twice a rung (so every trial is scored at the same fractions of its
        budget, whatever its batch size); a ConfigError becomes a SearchError."""
        try:
            raw = apply_overrides(self.base, [(key, _toml(value)) for key, value in params.items()])
            config = from_dict(raw)
            steps = config.train.steps
            if self.examples is not None:
                steps = math.ceil(self.examples / config.train.batch_size)
            raw = apply_overrides(raw, [("train.steps", str(steps)),
                                        ("train.eval_every", str(max(1, steps // (2 * self.rungs)))),
                                        ("train.validation_size", str(config.train.validation_size or VALIDATION_SIZE))])
            from_dict(raw)
        except ConfigError as error:
            raise SearchError(f"search spec: {error}") from None
        return raw


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def load_spec(path: Path) -> SearchSpec:
    raw = read_toml(path, SearchError, "search spec ")
    reject_unknown_keys(SPEC_KEYS, raw, SearchError, "search spec")
    base = raw.get("base", {})
    if isinstance(base, str):
        base = read_toml(path.parent / base if not Path(base).is_absolute() else Path(base), SearchError,
                         "base config ")
    if not isinstance(base, dict):
        raise SearchError("search spec: base must be a run config file name or an inline [base] table")
    values = {k: v for k, v in raw.items() if k not in ("base", "name")}
    return SearchSpec(name=raw.get("name", path.stem), base=base, **values)


def run_piece(run_dir: str, config_toml: str, stop_after: int, resume: bool) -> dict:
    """Train one piece of a trial in this process (a pool worker or a submitit job): the train
    command with one thread, stopping after `stop_after` steps; output appended to train.log."""
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train.log"
    code = 1
    with open(log_path, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            from graphpath.training.run import main as train_main

            atomic_write_text(out / "trial-config.toml", config_toml)
            argv = ["--config", str(out / "trial-config.toml"), "--out", str(out), "--stage", "pretrain",
                    "--threads", "1", "--no-eval", "--no-figures", "--stop-after", str(stop_after)]
            code = train_main(argv + (["--resume"] if resume else []))
        except Exception:  # the trial's failure, reported with its log
            traceback.print_exc()
    return {"code": code, "log": str(log_path)}


def validation_curve(run_dir: Path, steps: int) -> dict[int, float]:
    """{permille of the trial's steps: val_loss}: what the pruner compares across trials (equal
    fractions of equal example budgets are equal examples)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return {}
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {round(1000 * m["step"] / steps): m["val_loss"] for m in lines
            if m.get("stage") == "pretrain" and "val_loss" in m}


@dataclass
class Running:
    trial: object  # optuna.trial.Trial
    run_dir: Path
    config_text: str
    steps: int
    future: object = None
    reported: set = field(default_factory=set)


def open_study(spec: SearchSpec, out: Path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out.mkdir(parents=True, exist_ok=True)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials) if spec.pruner == "median"
              else optuna.pruners.NopPruner())
    storage = JournalStorage(JournalFileBackend(str(out / "study.log")))
    return optuna.create_study(study_name=spec.name, storage=storage, load_if_exists=True, direction="minimize",
                               sampler=optuna.samplers.TPESampler(seed=spec.seed, constant_liar=True), pruner=pruner)


def check_output(spec_text: str, out: Path) -> None:
    """Refuse an output directory that holds another spec's search."""
    path = out / "spec.toml"
    if path.is_file() and path.read_text() != spec_text:
        raise SearchError(f"{out} holds a search with another spec ({path}); remove it or choose another --out")
    if not path.is_file() and (out / "study.log").exists():
        raise SearchError(f"{out} holds a study but no spec.toml; remove it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, spec_text)


def start(spec: SearchSpec, trial, out: Path, reported=()) -> Running:
    """A trial's run: its directory, resolved config and the validation steps already reported."""
    config = from_dict(spec.trial_config(trial.params))
    return Running(trial, out / "trials" / str(trial.number), to_toml(config), config.train.steps,
                   reported=set(reported))


def piece_steps(running: Running, spec: SearchSpec) -> int:
    return max(1, math.ceil(running.steps / spec.rungs))


def advance(study, running: Running, spec: SearchSpec, result: dict) -> str | None:
    """After a piece: report new validation points, then finish, prune or continue the trial.
    Returns the trial's final state name, or None when it goes on."""
    from optuna.trial import TrialState

    curve = validation_curve(running.run_dir, running.steps)
    for step in sorted(set(curve) - running.reported):
        running.trial.report(curve[step], step)
        running.reported.add(step)
    if result["code"] != 0:
        running.trial.set_user_attr("log", result["log"])
        study.tell(running.trial, state=TrialState.FAIL)
        return "FAIL"
    if (running.run_dir / "checkpoints" / "pretrain-final.json").is_file():
        study.tell(running.trial, curve[max(curve)])
        return "COMPLETE"
    if running.trial.should_prune():
        study.tell(running.trial, state=TrialState.PRUNED)
        return "PRUNED"
    return None


def run_search(spec: SearchSpec, out: Path, spec_text: str, executor: str = "local", workers: int | None = None,
               slurm: dict | None = None, progress: bool = True):
    """Run (or continue) the search; returns the Optuna study."""
    from optuna.trial import Trial, TrialState

    check_output(spec_text + "\n# the base config, resolved\n" + config_text(spec.base), out)
    study = open_study(spec, out)

    def finished() -> int:
        return sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))

    active = [start(spec, Trial(study, t._trial_id), out, t.intermediate_values)  # an interrupted search's
              for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    limit = workers or (spec.trials if executor == "slurm" else default_workers())
    submit, close, limit = make_executor(executor, out, limit, slurm, call=run_piece)
    bar = tqdm(total=spec.trials, initial=min(finished(), spec.trials), desc=f"{spec.name} trials", unit="trial",
               disable=not progress, dynamic_ncols=True)
    with shut_down_on_exit(close, bar):
        while True:
            while len(active) < limit and finished() + len(active) < spec.trials:
                trial = study.ask(spec.distributions())
                active.append(start(spec, trial, out))
            for running in active:
                if running.future is None:
                    resume = any((running.run_dir / "checkpoints").glob("pretrain-*.json"))
                    running.future = submit(str(running.run_dir), running.config_text,
                                            piece_steps(running, spec), resume)
            if not active:
                break
            done = [r for r in active if r.future.done()]
            if not done:
                time.sleep(0.2)
                continue
            for running in done:
                try:
                    result = running.future.result()
                except Exception as error:  # the worker itself died
                    result = {"code": None, "log": f"{running.run_dir / 'train.log'} ({type(error).__name__})"}
                running.future = None
                state = advance(study, running, spec, result)
                if state is not None:
                    active.remove(running)
                    bar.update()
                    bar.write(f"trial {running.trial.number}: {state.lower()}"
                              + (f", log {result['log']}" if state == "FAIL" else ""))
    return study


def summary(study, spec: SearchSpec, out: Path) -> dict:
    trials = []
    for t in study.get_trials(deepcopy=False):
        trials.append({"number": t.number, "state": t.state.name, "params": t.params,
                       "value": t.value if t.state.name == "COMPLETE" else None,
                       "validation_curve": {str(k): v for k, v in sorted(t.intermediate_values.items())},
                       "run_dir": str(out / "trials" / str(t.number)), **t.user_attrs})
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    best = min(complete, key=lambda t: t.value) if complete else None
    return {"schema": 1, "name": spec.name, "objective": "val_loss: split validation-pretrain, last evaluation",
            "curve_keys": "permille of the trial's steps",
            "sampler": {"kind": "TPE", "seed": spec.seed}, "pruner": spec.pruner, "rungs": spec.rungs,
            "trials": trials,
            "best": None if best is None else {"number": best.number, "params": best.params, "value": best.value}}


def _main(argv) -> int:
    from graphpath_common.cli import ArgumentParser, handled_interrupt

    parser = ArgumentParser(prog="python -m graphpath.search", description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", type=Path, help="search spec TOML (see the module docstring)")
    parser.add_argument("--out", type=Path, default=None, help="search directory (default runs/<name>)")
    parser.add_argument("--trials", type=int, default=None, help="override the spec's number of trials")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_executor_options(parser)
    args = parser.parse_args(argv)
    spec = load_spec(args.spec)
    if args.trials is not None:
        if args.trials <= 0:
            raise SearchError(f"--trials must be a positive integer, got {args.trials}")
        spec.trials = args.trials
    out = args.out or Path("runs") / spec.name
    options = executor_options(args)
    started = time.time()
    with hold(out, "python -m graphpath.search"):  # one search writes a directory at a time
        try:
            study = run_search(spec, out, args.spec.read_text(), progress=not args.quiet, **options)
        except KeyboardInterrupt:
            print(f"python -m graphpath.search: interrupted; rerun the same command to continue ({out})",
                  file=sys.stderr)
            return handled_interrupt()
        doc = summary(study, spec, out)
        doc["seconds"] = round(time.time() - started, 1)
        write_json(out / "search.json", doc)
        return report_best(doc, spec, out)


def report_best(doc: dict, spec: SearchSpec, out: Path) -> int:
    """best.toml and the closing line; 1 when no trial completed."""
    if doc["best"] is None:
        print(f"{out / 'search.json'}: no trial completed", file=sys.stderr)
        return 1
    best = from_dict(spec.trial_config(doc["best"]["params"]))
    atomic_write_text(out / "best.toml", to_toml(best))
    print(f"{out / 'search.json'}: best trial {doc['best']['number']} val_loss {doc['best']['value']:.4g} "
          f"{doc['best']['params']}; its config: {out / 'best.toml'}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    return run_study_cli("python -m graphpath.search", _main, argv)
