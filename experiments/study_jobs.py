"""Jobs shared by the transfer-scaling, partial fine-tuning and mixture studies.

Every job is an ordinary run directory that `python -m graphpath.train` writes (config.toml,
metrics.jsonl, checkpoints/), run in-process through `graphpath.train.main` with one thread:
    pretrain_job(out, raw_config)            --stage pretrain
    finetune_job(out, pretrain_dir, raw)     the pre-trained run's `pretrain-final` checkpoint is
                                             copied into `out/checkpoints/`, then --stage finetune
A job whose final checkpoint exists is skipped, so a killed study reruns only what is missing; a
job left half-done is started again from scratch (its own files only). The config's hash is stored
in `out/job.json`; a directory holding another config's results is an error, never mixed.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from graphpath.config import ConfigError, from_dict, to_toml
from graphpath.train import main as train_main
from graphpath_common.files import atomic_write_text


class StudyError(ValueError):
    """Bad study input or a job that failed; one line, exit 2."""


def config_text(raw: dict) -> str:
    """The resolved config TOML of a raw (TOML-shaped) run config; ConfigError becomes StudyError."""
    try:
        return to_toml(from_dict(raw))
    except ConfigError as error:
        raise StudyError(str(error)) from None


def _claim(out: Path, text: str, stage: str) -> bool:
    """True when the job must run; False when `out` already holds this config's finished stage."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    marker = out / "job.json"
    if marker.is_file():
        recorded = json.loads(marker.read_text()).get("config_sha256")
        if recorded != digest:
            raise StudyError(f"{out} holds results of a different config (hash {recorded}, this one {digest}); "
                             "remove it or choose another --out")
        if (out / "checkpoints" / f"{stage}-final.json").is_file():
            return False
    for leftover in (out / "checkpoints").glob(f"{stage}-*") if (out / "checkpoints").is_dir() else ():
        leftover.unlink()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps({"config_sha256": digest, "stage": stage}))
    return True


def _train(out: Path, text: str, stage: str) -> None:
    config_path = out / "job-config.toml"
    atomic_write_text(config_path, text)
    code = train_main(["--config", str(config_path), "--out", str(out), "--stage", stage, "--threads", "1",
                       "--no-eval", "--no-figures"])
    if code != 0:
        raise StudyError(f"job {out} ({stage}) failed with exit status {code}")


def pretrain_job(out: Path, raw: dict) -> Path:
    out = Path(out)
    text = config_text(raw)
    if _claim(out, text, "pretrain"):
        _train(out, text, "pretrain")
    return out


def finetune_job(out: Path, pretrain_dir: Path, raw: dict) -> Path:
    out = Path(out)
    text = config_text(raw)
    if _claim(out, text + f"\n# from {Path(pretrain_dir).resolve()}\n", "finetune"):
        checkpoints = out / "checkpoints"
        checkpoints.mkdir(parents=True, exist_ok=True)
        for source in (Path(pretrain_dir) / "checkpoints").glob("pretrain-final.*"):
            shutil.copyfile(source, checkpoints / source.name)
        _train(out, text, "finetune")
    return out


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def best_eval_loss(run_dir: Path, stage: str) -> float:
    """The best held-out loss of a stage (early stopping; the fine-tune step-0 line included)."""
    losses = [m["eval_loss"] for m in read_metrics(run_dir) if m["stage"] == stage and "eval_loss" in m]
    if not losses:
        raise StudyError(f"{run_dir} has no held-out {stage} evaluation")
    return float(min(losses))


def non_embedding_parameters(model_config: dict, max_vertices: int) -> int:
    """N: parameters outside the vertex embedding (Kaplan et al.'s convention)."""
    import torch

    from graphpath.model import build_model

    with torch.random.fork_rng(devices=[]):
        model = build_model({**model_config, "max_vertices": max_vertices})
    return model.num_parameters() - model.vertex_embed.weight.numel()
