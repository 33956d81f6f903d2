"""Checkpoints: safetensors for tensors, JSON for everything else; nothing is ever unpickled.

A checkpoint `checkpoints/<stage>-<step>` (or `<stage>-final`) is three files:
    <name>.safetensors        the model's weights (the unwrapped module: no `module.`/`_orig_mod.`)
    <name>.state.safetensors  training tensors: optimizer moments, torch RNG state, and with a weight
                              average the optimizer's own weights (`raw.*`) (optional)
    <name>.json               model_config, data (study_presets kwargs), step, examples, seed, stage,
                              `stages` (what the model was trained on: graphpath.core.contract),
                              plus `train_state` (optimizer param groups, scheduler, sampler RNG)
Each is written to a temporary name and renamed; the JSON goes last, so a checkpoint whose JSON
exists is complete. The JSON records `sha256`: {file name: hex digest} of both safetensors files,
and every read verifies it, so weights altered after writing (bytes flipped inside the tensor
data, a truncated file) are a one-line `CheckpointError` naming the file, never a silent load.

`load_model(path, device)` rebuilds a model from a checkpoint alone: `path` is a run directory
(its final checkpoint: `finetune-final` if present, else `pretrain-final`, else the newest
numbered one) or any of a checkpoint's files or their common stem. Tools that analyse a model
load it through `graphpath.core.resolve`, which adds what it was trained on.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load as load_tensor_bytes, save as tensor_bytes
from torch import nn

from graphpath_common.files import atomic_write_bytes
from graphpath_common.jsonfile import write_json
from graphpath_common.rundir import CHECKPOINTS, STAGES, RunDir, checkpoint_order, list_checkpoints

from graphpath.core.model import ConfigError, GraphTransformer, ModelConfig


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, altered or does not fit the model; one line, for
    exit 2 (every command line lists it among its user errors)."""


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and/or torch.compile wrappers (what gets saved)."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def _atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata=None) -> str:
    """Write a safetensors file atomically; returns the sha256 hex digest of its bytes."""
    data = tensor_bytes({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


# ---- optimizer state <-> (tensors, JSON) ------------------------------------------------------
def optimizer_to_parts(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_parts(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for name, value in meta.get("scalars", {}).items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


# ---- save -------------------------------------------------------------------------------------
def save_checkpoint(directory: Path, name: str, model: nn.Module, info: dict,
                    optimizer: torch.optim.Optimizer | None = None, scheduler=None,
                    extra_state: dict | None = None, extra_tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write `<directory>/<name>.*` atomically; returns the JSON path. `info` must hold
    model_config, data, step, seed, stage (and anything else JSON-able). `extra_tensors` (names
    not starting with `optim.` or `rng.`) go into the training-state file beside the optimizer's."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = unwrap(model)
    digests = {f"{name}.safetensors": _atomic_save_tensors(model.state_dict(), directory / f"{name}.safetensors",
                                                           {"format": "pt"})}
    train_state = dict(extra_state or {})
    if optimizer is not None:
        tensors, meta = optimizer_to_parts(optimizer)
        tensors.update(extra_tensors or {})
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            tensors["rng.cuda"] = torch.cuda.get_rng_state()
        digests[f"{name}.state.safetensors"] = _atomic_save_tensors(tensors, directory / f"{name}.state.safetensors")
        train_state["optimizer"] = meta
        train_state["scheduler"] = scheduler.state_dict() if scheduler is not None else None
    _test_pause_before_json()
    json_path = directory / f"{name}.json"
    write_json(json_path, {**info, "sha256": digests, "train_state": train_state})
    return json_path


def _test_pause_before_json() -> None:
    """Test hook: GRAPHPATH_TEST_CHECKPOINT_PAUSE=<seconds> sleeps between writing a checkpoint's
    tensors and its JSON, so a test can kill the process while a checkpoint is half-written."""
    import os

    pause = os.environ.get("GRAPHPATH_TEST_CHECKPOINT_PAUSE")
    if pause:
        import time

        time.sleep(float(pause))


# ---- find and read ----------------------------------------------------------------------------
def find_checkpoint(path, stage: str | None = None) -> Path:
    """The JSON file of the checkpoint `path` names (run dir, checkpoints dir, file or stem)."""
    path = Path(path)
    if path.is_dir():
        directory = path / CHECKPOINTS if (path / CHECKPOINTS).is_dir() else path
        found = list_checkpoints(directory, stage)
        if not found:
            what = f"{stage} checkpoint" if stage else "checkpoint"
            raise CheckpointError(f"no {what} in {directory}")
        return found[-1]
    stem = str(path)
    for suffix in (".state.safetensors", ".safetensors", ".json"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    json_path = Path(stem + ".json")
    if not json_path.is_file() or not Path(stem + ".safetensors").is_file():
        raise CheckpointError(f"no complete checkpoint at {path} (need {Path(stem).name}.json and .safetensors)")
    return json_path


def read_info(json_path: Path) -> dict:
    try:
        info = json.loads(Path(json_path).read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"unreadable checkpoint metadata {json_path}: {error}") from None
    if not isinstance(info, dict):
        raise CheckpointError(f"unreadable checkpoint metadata {json_path}: not a JSON object")
    for key in ("model_config", "data", "step", "seed", "stage"):
        if key not in info:
            raise CheckpointError(f"checkpoint metadata {json_path} lacks {key!r}")
    if not isinstance(info.get("sha256"), dict):
        raise CheckpointError(f"checkpoint metadata {json_path} records no sha256 of its tensor files "
                              f"(written before checkpoints carried digests), so its weights cannot be verified")
    return info


def _read_verified(json_path: Path, suffix: str, info: dict | None = None) -> dict[str, torch.Tensor]:
    """The tensors of `<stem><suffix>` after checking its bytes against the sha256 in the JSON."""
    json_path = Path(json_path)
    path = json_path.with_name(json_path.name[: -len(".json")] + suffix)
    info = read_info(json_path) if info is None else info
    expected = info["sha256"].get(path.name)
    if expected is None:
        raise CheckpointError(f"checkpoint metadata {json_path} records no sha256 for {path.name}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"unreadable checkpoint file {path}: {error.strerror or error}") from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise CheckpointError(f"checkpoint file {path} does not match the sha256 recorded in {json_path.name} "
                              f"(altered or truncated after writing)")
    try:
        return load_tensor_bytes(data)
    except Exception as error:  # safetensors raises several types for a damaged file
        raise CheckpointError(f"unreadable checkpoint file {path}: {error}") from None


def load_weights_into(model: nn.Module, weights: dict[str, torch.Tensor], source) -> None:
    """Copy weights into `model`, or raise a one-line CheckpointError naming the first mismatch."""
    model = unwrap(model)
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {source} does not fit this model: "
                              f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    for name, tensor in own.items():
        if tuple(weights[name].shape) != tuple(tensor.shape):
            raise CheckpointError(f"checkpoint {source} does not fit this model: {name} has shape "
                                  f"{tuple(weights[name].shape)} in the file, {tuple(tensor.shape)} in the model")
    model.load_state_dict(weights)


def read_weights(json_path: Path, info: dict | None = None) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint, verified against the sha256 its JSON records."""
    return _read_verified(json_path, ".safetensors", info)


def read_train_tensors(json_path: Path, info: dict | None = None) -> dict[str, torch.Tensor]:
    """Optimizer moments and RNG state of a checkpoint, verified like the weights."""
    json_path = Path(json_path)
    state_path = json_path.with_name(json_path.name[: -len(".json")] + ".state.safetensors")
    if not state_path.is_file():
        raise CheckpointError(f"checkpoint {json_path.name} has no training state ({state_path.name})")
    return _read_verified(json_path, ".state.safetensors", info)


def verify_checkpoint(json_path: Path) -> dict:
    """Read a checkpoint's JSON and check every tensor file it records; returns the JSON."""
    info = read_info(json_path)
    read_weights(json_path, info)
    if isinstance(info.get("train_state"), dict) and "optimizer" in info["train_state"]:
        read_train_tensors(json_path, info)
    return info


def verify_good(json_path: Path) -> dict:
    """`verify_checkpoint`, and a finite held-out loss where the checkpoint records one (a
    checkpoint whose weights already give NaN is no place to resume from)."""
    info = verify_checkpoint(json_path)
    if "heldout_loss" in info and info["heldout_loss"] is None:
        raise CheckpointError(f"checkpoint {json_path} records a non-finite held-out loss (the run had diverged)")
    return info


def prune_checkpoints(directory: Path, stage: str, keep: int) -> None:
    """Delete all but the newest `keep` numbered checkpoints of `stage` (the final one is kept),
    and the leftovers of numbered checkpoints older than those (tensor files whose JSON was never
    written). Each goes JSON first, so a checkpoint is never seen half-deleted."""
    numbered = [p for p in list_checkpoints(directory, stage) if not p.name.endswith("-final.json")]
    if len(numbered) <= keep:
        return
    oldest_kept = checkpoint_order(numbered[-keep])
    for json_path in numbered[:-keep]:
        json_path.unlink(missing_ok=True)
    for path in Path(directory).glob(f"{stage}-*"):
        step = path.name[len(stage) + 1:].split(".", 1)[0]
        if step.isdigit() and (STAGES.index(stage), int(step)) < oldest_kept:
            path.unlink(missing_ok=True)


def resume_checkpoint(run_dir: Path, stage: str) -> Path | None:
    """The checkpoint `--resume` continues `stage` from (None when the stage has none yet).

    Only the newest checkpoint is a candidate: if it is damaged (or records a non-finite held-out
    loss), this does not fall back silently but raises one line naming the files to delete and the
    previous checkpoint that is good.
    """
    directory = RunDir(run_dir).checkpoints
    found = RunDir(run_dir).checkpoint_files(stage)
    if not found:
        return None
    latest = found[-1]
    try:
        verify_good(latest)
        return latest
    except CheckpointError as error:
        problem = str(error)
    stem = latest.name[: -len(".json")]
    previous = None
    for candidate in reversed(found[:-1]):
        try:
            verify_good(candidate)
        except CheckpointError:
            continue
        previous = candidate.name[: -len(".json")]
        break
    then = (f"to resume from the previous good checkpoint {previous}" if previous
            else f"({stage} restarts from step 0: no earlier {stage} checkpoint verifies)")
    raise CheckpointError(f"cannot resume: {problem}; delete {directory / stem}.* and rerun --resume {then}")


def load_model(path, device="cpu") -> tuple[GraphTransformer, dict]:
    """Rebuild the model from a checkpoint alone; eval mode on `device`. Returns (model, info)."""
    json_path = find_checkpoint(path)
    info = read_info(json_path)
    try:
        config = ModelConfig.from_dict(info["model_config"])
    except (ConfigError, TypeError) as error:
        raise CheckpointError(f"checkpoint {json_path}: bad model_config: {error}") from None
    model = GraphTransformer(config)
    load_weights_into(model, read_weights(json_path, info), json_path)
    info = {key: value for key, value in info.items() if key != "train_state"}
    info["path"] = str(json_path)
    return model.to(device).eval(), info
