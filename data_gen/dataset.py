"""Pre-built datasets on disk: shard layout, manifest, checksums, loading.

A dataset directory holds
    manifest.json          spec, seed, count, label_histogram, shards (file, count, sha256)
    shard-00000.npy ...    uint8 [count, 2 * max_edges + 4] per shard, one row per graph:
                           edges as a0, b0, a1, b1, ... (padding 0, 0), then num_vertices,
                           target, label, path_length
    label_distribution.html / .png   the label histogram (written by `build.py`)

Shard i holds `shard_size` graphs (the last one the rest) drawn from the stream keyed by
`SeedSequence(seed, spawn_key=(i,))`, so its bytes depend on (spec, seed, shard_size, i) only,
never on how many workers built it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from .batch import TENSOR_FIELDS, GraphBatch
from .fast import fast_arrays
from .sampler import sample_arrays
from .spec import GraphSpec, SpecError

FORMAT = "graphpath-dataset/1"
MANIFEST = "manifest.json"
SHARD_SIZE = 131_072  # graphs per shard: fixed, so the bytes do not depend on the worker count


class DatasetError(ValueError):
    """A dataset directory that is missing, incomplete or tampered with; names what is wrong."""


def shard_counts(size: int, shard_size: int = SHARD_SIZE) -> list[int]:
    full, rest = divmod(size, shard_size)
    return [shard_size] * full + ([rest] if rest else [])


def shard_key(seed: int, index: int) -> int:
    """The 64-bit stream key of shard `index` of a dataset built with `seed`."""
    sequence = np.random.SeedSequence(seed, spawn_key=(index,))
    return int(sequence.generate_state(1, dtype=np.uint64)[0])


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.npy"


def pack(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Kernel arrays (uint8) -> one uint8 record matrix [count, 2 * max_edges + 4]."""
    count = len(arrays["label"])
    columns = [arrays["edges"].reshape(count, -1)] + [arrays[name][:, None] for name in TENSOR_FIELDS[1:]]
    return np.ascontiguousarray(np.concatenate(columns, axis=1), dtype=np.uint8)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def make_shard(spec: GraphSpec, count: int, seed: int, index: int, folder: Path) -> dict:
    """Draw shard `index`, write it into `folder`; returns its manifest entry and histograms."""
    if spec.task == "distance":
        arrays, _ = fast_arrays(spec, count, shard_key(seed, index))
    else:  # a relabelled task (tasks.py): the same stream key seeds the sampler
        arrays = sample_arrays(spec, count, np.random.default_rng(shard_key(seed, index)))
        arrays["edges"] = np.pad(arrays["edges"], ((0, 0), (0, spec.max_edges - arrays["edges"].shape[1]), (0, 0)))
        arrays = {name: value.astype(np.uint8) for name, value in arrays.items()}
    path = Path(folder) / shard_name(index)
    np.save(path, pack(arrays))
    top = spec.max_vertices + 1
    return {"file": path.name, "count": count, "sha256": sha256_file(path),
            "label_counts": np.bincount(arrays["label"], minlength=top).tolist(),
            "path_length_counts": np.bincount(arrays["path_length"], minlength=top).tolist()}


def write_arrays(arrays: dict[str, np.ndarray], spec: GraphSpec, out, origin: dict) -> Path:
    """A one-shard dataset of graphs already drawn (`sample_arrays`' layout, edges padded to
    `spec.max_edges`): the shard first, the manifest last (its presence marks the dataset complete).
    `spec` fixes the padding width and vocabulary; `origin` (JSON) says where the graphs came from
    (a mixture, shuffled labels, ...) and is merged into the manifest."""
    from graphpath_common.jsonfile import write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    count = len(arrays["label"])
    shard = out / shard_name(0)
    records = pack({k: np.asarray(arrays[k]).astype(np.uint8) for k in TENSOR_FIELDS})
    tmp = shard.with_name(shard.name + ".tmp.npy")
    np.save(tmp, records)
    tmp.replace(shard)
    top = spec.max_vertices + 1
    manifest = {"format": FORMAT, "spec": spec.to_dict(), "preset": None, "data": None, **origin, "count": count,
                "shard_size": count, "layout": "one shard",
                "label_histogram": {str(i): int(c) for i, c in enumerate(np.bincount(arrays["label"], minlength=top)) if c},
                "path_length_histogram": {str(i): int(c) for i, c in
                                          enumerate(np.bincount(arrays["path_length"], minlength=top)) if c},
                "shards": [{"file": shard.name, "count": count, "sha256": sha256_file(shard)}]}
    write_json(out / MANIFEST, manifest)
    return out


def read_manifest(folder) -> dict:
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise DatasetError(f"no dataset directory at {folder}")
    if not path.is_file():
        raise DatasetError(f"{folder} has no {MANIFEST} (not a complete dataset)")
    try:
        manifest = json.loads(path.read_text())
        GraphSpec.from_dict(manifest["spec"])
        if manifest["format"] != FORMAT:
            raise DatasetError(f"{path}: unknown format {manifest['format']!r} (expected {FORMAT})")
        for entry in manifest["shards"]:
            entry["file"], entry["count"], entry["sha256"]  # noqa: B018 (presence check)
    except (json.JSONDecodeError, KeyError, TypeError, SpecError) as error:
        raise DatasetError(f"{path} is malformed: {type(error).__name__}: {error}") from None
    return manifest


def verify_shard(folder: Path, entry: dict, width: int) -> np.ndarray:
    """The shard's records (memory-mapped) after checking presence, checksum and shape."""
    path = Path(folder) / entry["file"]
    if not path.is_file():
        raise DatasetError(f"shard {entry['file']} is missing from {folder}")
    if sha256_file(path) != entry["sha256"]:
        raise DatasetError(f"shard {entry['file']} in {folder} fails its sha256 check (modified or corrupt)")
    records = np.load(path, mmap_mode="r", allow_pickle=False)
    if records.dtype != np.uint8 or records.shape != (entry["count"], width):
        raise DatasetError(f"shard {entry['file']} has shape {records.shape} {records.dtype}, "
                           f"expected ({entry['count']}, {width}) uint8")
    return records


def load_dataset(folder, verify: bool = True) -> GraphBatch:
    """The whole dataset as one int64 `GraphBatch` (shards are memory-mapped while copied in).

    Every shard's sha256 is checked first (`verify=False` skips only the hashing); a missing,
    modified or mis-shaped shard raises `DatasetError` naming it.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    spec = GraphSpec.from_dict(manifest["spec"])
    width = 2 * spec.max_edges + 4
    if verify:
        shards = [verify_shard(folder, entry, width) for entry in manifest["shards"]]
    else:
        shards = [np.load(folder / entry["file"], mmap_mode="r", allow_pickle=False)
                  for entry in manifest["shards"]]
    total = sum(len(records) for records in shards)
    if total != manifest["count"]:
        raise DatasetError(f"{folder}: shards hold {total} graphs, manifest says {manifest['count']}")
    edges = torch.empty(total, spec.max_edges, 2, dtype=torch.int64)  # (B, M, 2)
    columns = {name: torch.empty(total, dtype=torch.int64) for name in TENSOR_FIELDS[1:]}
    start = 0
    for records in shards:
        stop = start + len(records)
        edges.numpy()[start:stop] = records[:, : 2 * spec.max_edges].reshape(-1, spec.max_edges, 2)
        for offset, name in enumerate(TENSOR_FIELDS[1:]):
            columns[name].numpy()[start:stop] = records[:, 2 * spec.max_edges + offset]
        start = stop
    return GraphBatch(edges=edges, **columns, max_vertices=spec.max_vertices)


class DatasetReader:
    """Random access to a pre-built dataset without loading it: the shards stay memory-mapped
    (uint8) and only the graphs asked for become an int64 `GraphBatch`. For datasets too big to
    hold as int64 tensors; `reader[indices]` takes an int, a slice or an index array."""

    def __init__(self, folder, verify: bool = True):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        self.spec = GraphSpec.from_dict(self.manifest["spec"])
        width = 2 * self.spec.max_edges + 4
        if verify:
            self.shards = [verify_shard(self.folder, entry, width) for entry in self.manifest["shards"]]
        else:
            self.shards = [np.load(self.folder / e["file"], mmap_mode="r", allow_pickle=False)
                           for e in self.manifest["shards"]]
        self.starts = np.cumsum([0] + [len(records) for records in self.shards])  # (shards + 1,)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, index) -> GraphBatch:
        indices = np.arange(len(self))[index] if not isinstance(index, np.ndarray) else index
        indices = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"index out of range for a dataset of {len(self)} graphs")
        shard = np.searchsorted(self.starts, indices, side="right") - 1
        records = np.empty((len(indices), self.shards[0].shape[1]), dtype=np.uint8)  # (B, 2M + 4)
        for s in np.unique(shard):
            rows = shard == s
            records[rows] = self.shards[s][indices[rows] - self.starts[s]]
        top = 2 * self.spec.max_edges
        arrays = {"edges": records[:, :top].reshape(-1, self.spec.max_edges, 2)}
        arrays.update({name: records[:, top + k] for k, name in enumerate(TENSOR_FIELDS[1:])})
        return GraphBatch.from_numpy(arrays, self.spec.max_vertices)


def open_dataset(folder, verify: bool = True) -> DatasetReader:
    """A `DatasetReader` over `folder` (checksums verified first unless verify=False)."""
    return DatasetReader(folder, verify)
