"""Pre-build a dataset: `python -m data_gen.build --preset NAME --size N --seed S --out DIR`.

Examples:
    python -m data_gen.build --preset pretrain --size 1000000 --seed 0 --workers 2 --out datasets/pretrain
    python -m data_gen.build --preset finetune --n-max 8 --finetune-n-max 5 --small-target 5 \\
        --size 100000 --seed 1 --out datasets/finetune-small
    python -m data_gen.build --spec experiments/my_set.toml --size 50000 --seed 2 --out datasets/mine

A spec file is TOML in one of two forms:
    preset = "finetune"            # a study preset ...
    [data]                         # ... at the sizes of a run config's [data] table
    n_max = 8                      # (keyword arguments of data_gen.study_presets)
    finetune_n_max = 5
or
    [spec]                         # any GraphSpec, field by field
    family = "erdos_renyi"
    n_max = 20
    target = "any"

Work is split into fixed-size shards (one task each, seeds from SeedSequence(seed, spawn_key=
(shard,))), so any --workers gives the same bytes. Everything is written into a temporary
directory beside --out and renamed when complete; see dataset.py for the layout. One process builds
a given --out at a time (graphpath_common.locks); a second one exits 2 naming the first.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from graphpath_common.cli import ArgumentParser, run_cli
from graphpath_common.files import cannot_write
from graphpath_common.jsonfile import json_text
from graphpath_common.keys import reject_unknown_keys
from graphpath_common.locks import hold

from .dataset import FORMAT, MANIFEST, SHARD_SIZE, DatasetError, make_shard, shard_counts
from .fast import warm_up
from .figures import label_distribution
from .spec import PRESET_NAMES, GraphSpec, SpecError, preset, study_presets
from graphpath_common.toml import tomllib

SIZE_FLAGS = ("n_max", "finetune_n_max", "small_target", "pretrain_threshold", "finetune_threshold")


PROG = "python -m data_gen.build"


def parse_args(argv):
    """Parsed arguments; a usage error raises `UsageError` (one line via `run_cli`)."""
    parser = ArgumentParser(prog=PROG, description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--preset", help=f"one of {', '.join(PRESET_NAMES)}")
    which.add_argument("--spec", type=Path, help="TOML file: preset + [data] sizes, or a [spec] table")
    parser.add_argument("--size", type=int, required=True, help="graphs in the dataset")
    parser.add_argument("--seed", type=int, required=True, help="base seed (>= 0)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--out", type=Path, required=True, help="dataset directory to create")
    parser.add_argument("--force", action="store_true", help="replace an existing dataset at --out")
    parser.add_argument("--shard-size", type=int, default=SHARD_SIZE,
                        help=f"graphs per shard (default {SHARD_SIZE}; part of what fixes the bytes)")
    sizes = parser.add_argument_group("preset sizes (keyword arguments of study_presets)")
    for flag in SIZE_FLAGS:
        sizes.add_argument("--" + flag.replace("_", "-"), type=int, dest=flag)
    return parser.parse_args(argv)


def resolve_spec(args) -> tuple[GraphSpec, dict]:
    """The spec to build and how it was named (recorded in the manifest)."""
    sizes = {flag: getattr(args, flag) for flag in SIZE_FLAGS if getattr(args, flag) is not None}
    if args.preset is not None:
        return preset(args.preset, **sizes), {"preset": args.preset, "data": sizes}
    if sizes:
        raise SpecError("size flags (--n-max ...) go with --preset; put sizes in the spec file's [data] table")
    try:
        table = tomllib.loads(args.spec.read_text())
    except FileNotFoundError:
        raise SpecError(f"spec file {args.spec} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise SpecError(f"spec file {args.spec} is malformed: {error}") from None
    reject_unknown_keys(("preset", "data", "spec"), table, SpecError, f"spec file {args.spec}")
    if "spec" in table:
        if "preset" in table or "data" in table:
            raise SpecError(f"spec file {args.spec}: give either [spec] or preset + [data], not both")
        if not isinstance(table["spec"], dict):
            raise SpecError(f"spec file {args.spec}: spec must be a table")
        return GraphSpec.from_dict(table["spec"]), {"preset": None, "data": None}
    if "preset" not in table:
        raise SpecError(f"spec file {args.spec} names no preset and has no [spec] table")
    data = table.get("data", {})
    if not isinstance(data, dict):
        raise SpecError(f"spec file {args.spec}: data must be a table")
    reject_unknown_keys(SIZE_FLAGS, data, SpecError, f"spec file {args.spec} [data]")
    try:
        specs = study_presets(**data)
    except TypeError as error:  # e.g. a string where a size belongs
        raise SpecError(f"spec file {args.spec}: bad [data] table: {error}") from None
    if table["preset"] not in specs:
        raise SpecError(f"unknown preset {table['preset']!r} (choose from {', '.join(PRESET_NAMES)})")
    return specs[table["preset"]], {"preset": table["preset"], "data": data}


def _shard_task(task):
    spec_dict, count, seed, index, folder = task
    return index, make_shard(GraphSpec.from_dict(spec_dict), count, seed, index, Path(folder))


def _check_build_args(size: int, seed: int, workers: int, shard_size: int, out: Path, force: bool):
    for name, value, low in (("size", size, 1), ("workers", workers, 1), ("shard size", shard_size, 1),
                             ("seed", seed, 0)):
        if value < low:
            raise SpecError(f"{name} must be >= {low}, got {value}")
    if out.exists() and not force:
        raise DatasetError(f"{out} already exists; pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out} exists and is not a directory")


def _leave_ctrl_c() -> None:
    """A pool worker ignores Ctrl-C: the parent stops the pool and removes the temporary folder."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _make_shards(spec: GraphSpec, size: int, seed: int, folder: Path, workers: int, shard_size: int,
                 progress: bool, desc: str) -> list[dict]:
    """Write every shard into `folder` (in worker processes if workers > 1); their manifest
    entries in shard order, each still carrying its label and path-length counts."""
    counts = shard_counts(size, shard_size)
    tasks = [(spec.to_dict(), count, seed, index, str(folder)) for index, count in enumerate(counts)]
    results = {}
    warm_up()  # compile or load the kernel once, before any worker starts
    with tqdm(total=size, unit="graph", unit_scale=True, desc=desc, disable=not progress) as bar:
        if workers == 1:
            outcomes, pool = map(_shard_task, tasks), None
        else:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            pool = multiprocessing.get_context(method).Pool(min(workers, len(tasks)), initializer=_leave_ctrl_c)
            outcomes = pool.imap_unordered(_shard_task, tasks)
        try:
            for index, entry in outcomes:
                results[index] = entry
                bar.update(entry["count"])
        finally:
            if pool is not None:
                pool.terminate()
    return [results[index] for index in range(len(counts))]


def _manifest(spec: GraphSpec, size: int, seed: int, shard_size: int, origin: dict | None,
              shards: list[dict]) -> tuple[dict, list[int]]:
    """The manifest (see dataset.py) and the label counts; pops the shards' counts."""
    top = spec.max_vertices + 1
    label_counts = np.sum([s.pop("label_counts") for s in shards], axis=0).tolist()
    path_counts = np.sum([s.pop("path_length_counts") for s in shards], axis=0).tolist()
    manifest = {
        "format": FORMAT, "spec": spec.to_dict(), **(origin or {"preset": None, "data": None}),
        "seed": seed, "count": size, "shard_size": shard_size,
        "layout": f"uint8 [count, {2 * spec.max_edges + 4}]: edges a0, b0, a1, b1, ... "
                  "(padding 0, 0), then num_vertices, target, label, path_length",
        "label_histogram": {str(d): label_counts[d] for d in range(top) if label_counts[d]},
        "path_length_histogram": {str(d): path_counts[d] for d in range(top) if path_counts[d]},
        "shards": shards,
    }
    return manifest, label_counts


def _move_into_place(temporary: Path, out: Path) -> None:
    """Rename the finished folder to `out`; an old one is moved aside first, so a crash never
    leaves a mix of old and new shards."""
    if out.exists():
        old = out.parent / f".tmp-old-{out.name}-{os.getpid()}"
        os.replace(out, old)
        os.replace(temporary, out)
        shutil.rmtree(old)
    else:
        os.replace(temporary, out)


def build_dataset(spec: GraphSpec, size: int, seed: int, out, workers: int = 1, force: bool = False,
                  shard_size: int = SHARD_SIZE, origin: dict | None = None, progress: bool = True) -> Path:
    """Build the dataset at `out` (see the module docstring); returns its path."""
    out = Path(out)
    _check_build_args(size, seed, workers, shard_size, out, force)
    with hold(out.parent, PROG, name=out.name):  # writable, and no other builder of out
        _check_build_args(size, seed, workers, shard_size, out, force)  # again: one may have finished meanwhile
        return _build(spec, size, seed, out, workers, shard_size, origin, progress)


def _build(spec: GraphSpec, size: int, seed: int, out: Path, workers: int, shard_size: int, origin: dict | None,
           progress: bool) -> Path:
    temporary = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        shards = _make_shards(spec, size, seed, temporary, workers, shard_size, progress,
                              f"building {out.name}")
        manifest, label_counts = _manifest(spec, size, seed, shard_size, origin, shards)
        title = f"{out.name}: {size} graphs, seed {seed} (label {spec.max_vertices} = unreachable)"
        label_distribution(label_counts, spec.max_vertices, title, temporary)
        (temporary / MANIFEST).write_text(json_text(manifest) + "\n")
        _move_into_place(temporary, out)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return out


def _main(argv) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as done:  # --help printed the help
        return int(done.code or 0)
    spec, origin = resolve_spec(args)
    try:
        path = build_dataset(spec, args.size, args.seed, args.out, workers=args.workers, force=args.force,
                             shard_size=args.shard_size, origin=origin)
    except OSError as error:  # e.g. a full disk: the temporary folder is gone, nothing else was touched
        raise cannot_write(args.out, error) from None
    print(f"wrote {args.size} graphs to {path}")
    return 0


def main(argv=None) -> int:
    return run_cli(PROG, _main, argv, SpecError, DatasetError)


if __name__ == "__main__":
    sys.exit(main())
