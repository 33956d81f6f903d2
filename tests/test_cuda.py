"""CUDA paths, checked on a GPU (skipped where torch sees none, as in CI).

Each test trains or scores a tiny model on both devices and compares:
- one training run on CUDA in fp32 (TF32 off) matches the same run on the CPU within fp32
  accumulation-order tolerance, step for step in the loss and at the end in every weight;
- a checkpoint written by a CUDA run loads on the CPU with every tensor bit-identical to the CUDA
  model's own weights, and to the bytes in the safetensors file;
- `precision = "tf32"` switches the CUDA matmul flags on, "fp32" off; bf16 is opt-in, runs the
  blocks under bf16 autocast and trains to a finite loss;
- pinned, non-blocking batch transfers and the evaluation loop give the CPU's predictions.

The CPU stand-ins for the same choices (precision refused or mapped off CUDA) are in
tests/test_config.py; these tests are the ones `scripts/gpu_check.sh` runs on a GPU machine.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from data_gen import sample, study_presets
from graphpath.core.checkpoint import load_model
from graphpath.core.model import GraphTransformer, ModelConfig
from graphpath.evaluation.predict import predict
from graphpath.training.run import main as train_main
from graphpath.training.stage import Runtime

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

TINY = ["--data.n_max", "6", "--data.finetune_n_max", "4", "--data.small_target", "4",
        "--model.d_model", "32", "--model.n_layers", "2", "--train.batch_size", "64",
        "--train.steps", "12", "--train.warmup_steps", "2", "--train.log_every", "1",
        "--train.eval_every", "6", "--train.eval_size", "256", "--train.buckets", "1",
        "--train.checkpoint_every", "6", "--finetune.steps", "4", "--finetune.batch_size", "64",
        "--finetune.eval_size", "256", "--finetune.buckets", "1", "--finetune.eval_every", "2",
        "--threads", "1", "--no-figures", "--no-eval"]


def run_tiny(out, device: str, *extra: str) -> None:
    assert train_main(["--out", str(out), "--device", device, "--stage", "pretrain", *TINY, *extra]) == 0


def losses(run_dir) -> list[float]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [m["loss"] for m in lines if m["stage"] == "pretrain"]


def test_cuda_training_matches_cpu_in_fp32(tmp_path):
    run_tiny(tmp_path / "cpu", "cpu", "--train.precision", "fp32")
    run_tiny(tmp_path / "cuda", "cuda", "--train.precision", "fp32")
    cpu, cuda = losses(tmp_path / "cpu"), losses(tmp_path / "cuda")
    assert len(cpu) == len(cuda) > 0
    np.testing.assert_allclose(cuda, cpu, rtol=1e-4, atol=1e-5)
    a, _ = load_model(tmp_path / "cpu" / "checkpoints" / "pretrain-final.json")
    b, _ = load_model(tmp_path / "cuda" / "checkpoints" / "pretrain-final.json")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(y, x, rtol=1e-3, atol=1e-4, msg=lambda m: f"{name}: {m}")


def test_checkpoint_written_on_cuda_loads_on_cpu_bit_identically(tmp_path):
    run_tiny(tmp_path, "cuda")
    final = tmp_path / "checkpoints" / "pretrain-final.json"
    on_cpu, _ = load_model(final, device="cpu")
    on_cuda, _ = load_model(final, device="cuda")
    stored = load_file(str(final.with_suffix(".safetensors")))
    for name, tensor in on_cpu.state_dict().items():
        assert tensor.device.type == "cpu"
        assert torch.equal(tensor, on_cuda.state_dict()[name].cpu()), name
        assert tensor.numpy().tobytes() == stored[name].tobytes(), name


def test_precision_flags_and_bf16_opt_in(tmp_path):
    runtime = Runtime(torch.device("cuda"))
    assert runtime.with_precision("tf32").precision.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    assert not runtime.with_precision("fp32").precision.allow_tf32
    assert not torch.backends.cuda.matmul.allow_tf32
    bf16 = runtime.with_precision("bf16")
    model = GraphTransformer(ModelConfig(max_vertices=6, d_model=32, n_layers=2)).cuda()
    batch = sample(study_presets(n_max=6, finetune_n_max=4, small_target=4)["pretrain"], 32, 0).to("cuda")
    seen = []
    linear = next(m for m in model.blocks[0].modules() if isinstance(m, torch.nn.Linear))
    handle = linear.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    with bf16.autocast():
        out = model(batch)
    handle.remove()
    assert seen == [torch.bfloat16] and out.dtype == torch.float32  # read-out in float32
    run_tiny(tmp_path, "cuda", "--train.precision", "bf16")
    trained = losses(tmp_path)
    assert all(np.isfinite(trained)) and np.mean(trained[-3:]) < np.mean(trained[:3])


def test_pinned_transfer_and_evaluation_match_cpu():
    spec = study_presets(n_max=8, finetune_n_max=5, small_target=5)["test-onpath-large"]
    batch = sample(spec, 512, 3)
    moved = batch.pin_memory().to(torch.device("cuda"), non_blocking=True)
    torch.cuda.synchronize()
    assert torch.equal(moved.edges.cpu(), batch.edges) and torch.equal(moved.label.cpu(), batch.label)
    torch.manual_seed(0)
    model = GraphTransformer(ModelConfig(max_vertices=8, d_model=32, n_layers=2))
    torch.backends.cuda.matmul.allow_tf32 = False
    on_cpu = predict(model, batch, "cpu", chunk=128)
    on_cuda = predict(model.cuda(), batch, "cuda", chunk=128)
    np.testing.assert_allclose(on_cuda, on_cpu, rtol=1e-4, atol=1e-5)


def test_cuda_run_resumes_on_the_batches_it_would_have_trained_on(tmp_path):
    """The prefetching feed on CUDA: a run stopped at step 6 and resumed ends where an uninterrupted
    run ends (equal up to CUDA's non-deterministic reductions)."""
    run_tiny(tmp_path / "whole", "cuda", "--train.precision", "fp32")
    run_tiny(tmp_path / "split", "cuda", "--train.precision", "fp32", "--stop-after", "6")
    run_tiny(tmp_path / "split", "cuda", "--train.precision", "fp32", "--resume")
    np.testing.assert_allclose(losses(tmp_path / "split"), losses(tmp_path / "whole"), rtol=1e-5, atol=1e-6)
    a, _ = load_model(tmp_path / "whole" / "checkpoints" / "pretrain-final.json")
    b, _ = load_model(tmp_path / "split" / "checkpoints" / "pretrain-final.json")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")
