"""Which test graphs also occur in training: the training stream replayed and hashed.

Shapes
    B  graphs, M  edge slots

The learned model sees a graph as its multiset of edge tokens (plus the target token; n itself is
not an input), so two examples show the model the same graph when their edge multisets are
equal. `graph_hashes` maps each graph to a 64-bit hash of its sorted edge multiset.

`training_hashes(run_dir)` rebuilds the run's own training batches, stage by stage, from its
config and seed with the same feed the trainer used (graphpath.training.feed: same seeds, same
batch size per process, same number of processes as the run's final checkpoint records), up to
`limit` graphs per stage: the whole stream when it is shorter (small.toml: 307,200 pre-training
and 51,200 fine-tuning graphs), otherwise its first `limit` graphs, a stated sample whose share
eval.json records (`overlap.stages[...].checked` of `.seen_by_trainer`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from data_gen import GraphBatch
from graphpath_common.rundir import STAGES, RunDir

REPLAY_LIMIT = 2_000_000  # graphs per stage: about a minute of replay on one core at n <= 8
_PRIME = np.uint64(0x100000001B3)  # FNV-1a 64-bit prime


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: spreads the polynomial hash over all 64 bits."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def graph_hashes(edges: np.ndarray, max_vertices: int) -> np.ndarray:
    """(B,) uint64 hash of each graph's edge multiset; edges (B, M, 2) with (0, 0) padding.

    Edge (a, b) becomes the key a * (max_vertices + 1) + b; each row's keys are sorted in
    descending order so padding (key 0) comes last and leaves the hash unchanged, whatever the
    padding width."""
    edges = np.asarray(edges, dtype=np.int64)
    keys = np.sort(edges[..., 0] * (max_vertices + 1) + edges[..., 1], axis=1)[:, ::-1].astype(np.uint64)
    h = np.zeros(len(edges), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in range(keys.shape[1]):
            present = keys[:, column] > 0
            h = np.where(present, (h * _PRIME) ^ (keys[:, column] + np.uint64(1)), h)
        return _mix(h)


def _final_feeds(run_dir: Path, stage: str) -> tuple[list | None, int | None]:
    """(feed states, step) of the stage's last checkpoint: one feed state per process."""
    from graphpath.core.checkpoint import read_info

    info = read_info(RunDir(run_dir).checkpoint_files(stage)[-1])
    return (info.get("train_state") or {}).get("feed"), info.get("step")


def stage_hashes(run_dir: Path, stage: str, limit: int = REPLAY_LIMIT) -> tuple[np.ndarray, dict]:
    """(sorted unique hashes, record) of one stage's training graphs, replayed from the run's
    config. record: {"stage", "graphs" (the stream's length), "checked" (graphs hashed),
    "world", "distinct", "source", "verified" (the replayed feeds end in the state the run's final
    checkpoint saved: the replay was the trainer's stream, batch for batch)}."""
    from graphpath.core.config import load_config, stage_specs
    from graphpath.training.feed import make_feed, stage_seed

    config = load_config(RunDir(run_dir).config)
    section = config.train if stage == "pretrain" else config.finetune
    spec = stage_specs(config)[stage]
    final_feeds, final_step = _final_feeds(run_dir, stage)
    world = max(1, len(final_feeds or [None]))
    per_process = section.batch_size // world
    total = section.steps * section.batch_size
    steps = min(section.steps, max(1, limit // section.batch_size))
    feeds = [make_feed(spec, per_process, stage_seed(config.seed, stage, "train", rank), section.dataset, rank, world)
             for rank in range(world)]
    parts = []
    for _ in range(steps):
        for feed in feeds:
            batch = feed.next()
            parts.append(graph_hashes(batch.edges.numpy(), spec.max_vertices))
    hashes = np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.uint64)
    checked = steps * section.batch_size
    source = ("the whole training stream, replayed" if checked >= total else
              f"the first {checked:,} of {total:,} training graphs, replayed")
    # the replay is the trainer's stream exactly when the feeds end where the trainer's ended
    verified = (steps == final_step and final_feeds is not None
                and json.loads(json.dumps([f.state() for f in feeds])) == final_feeds)
    return hashes, {"stage": stage, "graphs": int(total), "checked": int(checked), "world": world,
                    "distinct": int(len(hashes)), "source": source, "verified": bool(verified)}


def training_hashes(run_dir: Path, stages=("pretrain", "finetune"), limit: int = REPLAY_LIMIT) -> tuple[np.ndarray, list[dict]]:
    """(sorted unique hashes over the stages, one record per stage) for a run directory."""
    all_hashes, records = [], []
    for stage in stages:
        hashes, record = stage_hashes(run_dir, stage, limit)
        all_hashes.append(hashes)
        records.append(record)
    return np.unique(np.concatenate(all_hashes)), records


def seen_in_training(batch: GraphBatch, hashes: np.ndarray) -> np.ndarray:
    """(B,) bool: the set's graph (edge multiset) occurs among the training hashes."""
    return np.isin(graph_hashes(batch.edges.numpy(), batch.max_vertices), hashes)


def seen_status(flags: list[np.ndarray]) -> np.ndarray:
    """Per example, over the runs (seeds): "seen-in-training" when every run's training stream holds
    the graph, "unseen" when none does, "seen-by-some-seeds" otherwise. flags: one (B,) bool per run."""
    stacked = np.stack(flags)  # (S, B)
    status = np.full(stacked.shape[1], "seen-by-some-seeds", dtype=object)
    status[stacked.all(axis=0)] = "seen-in-training"
    status[~stacked.any(axis=0)] = "unseen"
    return status


def overlap_check(run_dirs: list[Path], prepared: dict, progress: bool = False,
                  limit: int = REPLAY_LIMIT) -> dict | None:
    """Which evaluation graphs each run's own training stream holds: {"stages": [per run: [per
    stage record]], "seen": {set: (B,) status (`seen_status`)}, "shares": {set: {status: share}}},
    or None when a run's stream cannot be replayed (it kept no checkpoint of any stage, or its
    config or dataset is unreadable; a note on stderr says why).
    prepared: {set: (EvalSet, GraphBatch, data hash)}."""
    from tqdm import tqdm

    flags, records = {name: [] for name in prepared}, []
    for run_dir in tqdm(run_dirs, desc="training overlap", disable=not progress, leave=False):
        stages = [s for s in STAGES if RunDir(run_dir).checkpoint_files(s)]
        if not stages:
            return None
        try:
            hashes, stage_records = training_hashes(run_dir, stages, limit)
        except (OSError, ValueError, KeyError) as error:
            print(f"note: training overlap not checked for {run_dir}: {error}", file=sys.stderr)
            return None
        records.append(stage_records)
        for name, (_, batch, _) in prepared.items():
            flags[name].append(seen_in_training(batch, hashes))
    seen = {name: seen_status(values) for name, values in flags.items()}
    shares = {name: {status: float((values == status).mean()) for status in sorted(set(values))}
              for name, values in seen.items()}
    return {"stages": records, "seen": seen, "shares": shares}
