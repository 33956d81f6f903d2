"""Training batches for one process: fresh graphs from the streaming sampler, or shuffled passes
over a pre-built dataset. Both expose `next() -> GraphBatch`, `state()` and `set_state()` (JSON),
so a resumed run sees exactly the batches an uninterrupted one would have seen.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import data_gen
from data_gen import GraphBatch, GraphSpec, StreamingSampler


class DataError(ValueError):
    """Training data that cannot be used (missing dataset, wrong vocabulary, too small)."""


def stage_seed(seed: int, stage: str, purpose: str, rank: int = 0) -> np.random.SeedSequence:
    """Independent, reproducible streams per (run seed, stage, purpose, process)."""
    codes = {"pretrain": 0, "finetune": 1, "train": 0, "init": 2, "readout": 3}  # held-out sets: data_gen.splits
    return np.random.SeedSequence([seed, codes[stage], codes[purpose], rank])


class StreamFeed:
    def __init__(self, spec: GraphSpec, batch_size: int, seed):
        self.sampler = StreamingSampler(spec, batch_size, np.random.default_rng(seed))

    def next(self) -> GraphBatch:
        return next(self.sampler)

    def resize(self, batch_size: int) -> None:
        """Later batches hold `batch_size` graphs (a batch-size ramp; the stream stays the same)."""
        self.sampler.batch_size = batch_size

    def state(self) -> dict:
        return {"kind": "stream", "rng": self.sampler.state()}

    def set_state(self, state: dict) -> None:
        self.sampler.set_state(state["rng"])


class DatasetFeed:
    """Epochs over a pre-built dataset in an order drawn from the feed's own generator; each
    process takes its own stride of every epoch's permutation."""

    def __init__(self, dataset: GraphBatch, batch_size: int, seed, rank: int = 0, world: int = 1):
        if len(dataset) < batch_size * world:
            raise DataError(f"the dataset has {len(dataset)} graphs, fewer than one batch ({batch_size * world})")
        self.dataset, self.batch_size, self.rank, self.world = dataset, batch_size, rank, world
        self.rng = np.random.default_rng(seed)
        self.epoch_state = self.rng.bit_generator.state
        self.order = self.rng.permutation(len(dataset))
        self.offset = 0

    def next(self) -> GraphBatch:
        span = self.batch_size * self.world
        if self.offset + span > len(self.order):  # drop the ragged tail, start a new epoch
            self.epoch_state = self.rng.bit_generator.state
            self.order = self.rng.permutation(len(self.dataset))
            self.offset = 0
        start = self.offset + self.rank * self.batch_size
        index = np.sort(self.order[start:start + self.batch_size])  # sorted reads are cheaper on a memmap
        self.offset += span
        return self.dataset[index].trim()

    def resize(self, batch_size: int) -> None:
        """Later batches hold `batch_size` graphs (a batch-size ramp)."""
        if len(self.dataset) < batch_size * self.world:
            raise DataError(f"the dataset has {len(self.dataset)} graphs, fewer than one batch ({batch_size * self.world})")
        self.batch_size = batch_size

    def state(self) -> dict:
        return {"kind": "dataset", "epoch_rng": self.epoch_state, "offset": self.offset}

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["epoch_rng"]
        self.order = self.rng.permutation(len(self.dataset))
        self.offset = state["offset"]


def load_dataset(path: str | Path, max_vertices: int) -> GraphBatch:
    """A pre-built dataset via `data_gen.load_dataset`, checked against the run's vocabulary."""
    if not Path(path).exists():
        raise DataError(f"dataset {path} does not exist (build one with python -m data_gen.build)")
    try:
        dataset = data_gen.load_dataset(path)
    except (OSError, ValueError) as error:
        raise DataError(f"cannot load dataset {path}: {error}") from None
    if dataset.max_vertices != max_vertices:
        raise DataError(f"dataset {path} has max_vertices {dataset.max_vertices}, the run needs {max_vertices}")
    return dataset


def make_feed(spec: GraphSpec, batch_size: int, seed, dataset: str | None = None,
              rank: int = 0, world: int = 1):
    if dataset is None:
        return StreamFeed(spec, batch_size, seed)
    return DatasetFeed(load_dataset(dataset, spec.max_vertices), batch_size, seed, rank, world)
