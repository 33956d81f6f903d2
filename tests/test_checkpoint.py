"""Checkpoints: rebuilt from files alone, clean names, one-line errors for missing, misfit or
altered ones (sha256 recorded at save, verified by every loader)."""
import hashlib
import json
import struct

import pytest
import torch
from safetensors.torch import load_file

from data_gen import sample, study_presets
from data_gen.spec import study_sizes_up_to
from graphpath.core.checkpoint import CheckpointError, find_checkpoint, load_model, save_checkpoint
from graphpath.analysis import basin
from graphpath.evaluation import suite as evaluate
from graphpath.analysis import interpret as inspect
from graphpath.analysis import llc
from graphpath.analysis import perturb
from graphpath.core.checkpoint import read_weights
from graphpath.core.model import ModelConfig, build_model
from graphpath.training.run import main

SPECS = study_presets(8, 5, 5, 4, 3)


def info(model, stage="pretrain", step=3):
    return {"model_config": model.config.to_dict(), "data": {"n_max": 8}, "step": step, "seed": 5, "stage": stage,
            "examples": step * 16}


def tiny(seed):
    torch.manual_seed(seed)
    return build_model(ModelConfig(max_vertices=8, d_model=16, n_layers=1))


def test_load_model_rebuilds_the_same_function(tmp_path):
    model, data = tiny(0), sample(SPECS["test-any-large"], 32, 0)
    save_checkpoint(tmp_path / "checkpoints", "pretrain-final", model, info(model))
    loaded, meta = load_model(tmp_path)
    assert not loaded.training
    assert (meta["stage"], meta["step"], meta["seed"], meta["data"]) == ("pretrain", 3, 5, {"n_max": 8})
    assert meta["model_config"] == model.config.to_dict()
    with torch.no_grad():
        assert torch.equal(loaded(data), model.eval()(data))


def test_run_directory_resolves_to_the_latest_stage(tmp_path):
    first, second = tiny(0), tiny(1)
    directory = tmp_path / "checkpoints"
    save_checkpoint(directory, "pretrain-2", first, info(first, step=2))
    assert find_checkpoint(tmp_path).name == "pretrain-2.json"
    save_checkpoint(directory, "pretrain-final", first, info(first, step=4))
    save_checkpoint(directory, "finetune-1", second, info(second, "finetune", 1))
    assert find_checkpoint(tmp_path).name == "finetune-1.json"
    save_checkpoint(directory, "finetune-final", second, info(second, "finetune", 2))
    assert load_model(tmp_path)[1]["stage"] == "finetune"
    for name in ("pretrain-final.json", "pretrain-final.safetensors", "pretrain-final"):
        assert load_model(directory / name)[1]["stage"] == "pretrain"
    assert find_checkpoint(directory, stage="pretrain").name == "pretrain-final.json"


def test_compiled_and_wrapped_models_save_clean_names(tmp_path):
    model = tiny(0)
    compiled = torch.compile(model)  # not run: only the wrapper's naming matters here
    assert any(k.startswith("_orig_mod.") for k in compiled.state_dict())
    save_checkpoint(tmp_path, "pretrain-final", compiled, info(model))
    assert set(load_file(str(tmp_path / "pretrain-final.safetensors"))) == set(model.state_dict())


def test_missing_incomplete_and_misfit_checkpoints_are_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_model(tmp_path)
    model = tiny(0)
    save_checkpoint(tmp_path, "pretrain-final", model, info(model))
    (tmp_path / "pretrain-final.json").unlink()  # the JSON is written last: without it, incomplete
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "pretrain-final.safetensors")
    save_checkpoint(tmp_path, "pretrain-final", model, info(model))
    meta = json.loads((tmp_path / "pretrain-final.json").read_text())
    meta["model_config"]["d_model"] = 32
    (tmp_path / "pretrain-final.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="shape") as error:
        load_model(tmp_path)
    assert "\n" not in str(error.value)


def test_finetuning_a_differently_shaped_model_exits_2(tmp_path, capsys):
    out = tmp_path / "run"
    small = ["--data.n_max", "5", "--data.finetune_n_max", "4", "--data.small_target", "4", "--data.pretrain_threshold",
             "3", "--data.finetune_threshold", "2", "--train.batch_size", "32", "--train.eval_size", "64",
             "--finetune.eval_size", "64", "--no-eval", "--no-figures", "--threads", "1"]
    before = torch.get_num_threads()
    try:
        assert main(["--out", str(out), "--stage", "pretrain", *small, "--model.d_model", "16", "--model.n_layers", "1",
                     "--train.steps", "2"]) == 0
        assert main(["--out", str(out), "--stage", "finetune", *small, "--model.d_model", "32",
                     "--model.n_layers", "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]  # the run's own config.toml refuses it first
        assert "cannot change now: model.d_model (16 -> 32)" in err
        (out / "config.toml").unlink()  # a run dir holding only the checkpoint (as a sweep's fine-tuning job)
        assert main(["--out", str(out), "--stage", "finetune", *small, "--model.d_model", "32",
                     "--model.n_layers", "1"]) == 2
    finally:
        torch.set_num_threads(before)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("python -m graphpath.train: checkpoint") and "shape" in err


def flip_tensor_bytes(path, count=4):
    """Flip bytes in the middle of a safetensors file's tensor data; the JSON header stays intact."""
    data = bytearray(path.read_bytes())
    start = 8 + struct.unpack("<Q", data[:8])[0]  # 8-byte header length, then the header, then data
    middle = (start + len(data)) // 2
    for i in range(middle, middle + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    json.loads(data[8:start])  # still a readable header: only the tensor values changed


def test_save_records_the_sha256_of_each_tensor_file(tmp_path):
    model = tiny(0)
    optimizer = torch.optim.AdamW(model.parameters())
    model(sample(SPECS["pretrain"], 4, 0)).sum().backward()
    optimizer.step()
    save_checkpoint(tmp_path, "pretrain-3", model, info(model), optimizer)
    recorded = json.loads((tmp_path / "pretrain-3.json").read_text())["sha256"]
    assert set(recorded) == {"pretrain-3.safetensors", "pretrain-3.state.safetensors"}
    for name, digest in recorded.items():
        assert digest == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()


def test_flipped_weight_bytes_are_refused_by_load_model(tmp_path):
    model = tiny(0)
    save_checkpoint(tmp_path, "pretrain-final", model, info(model))
    before = read_weights(tmp_path / "pretrain-final.json")
    flip_tensor_bytes(tmp_path / "pretrain-final.safetensors")
    # the damaged file still parses as safetensors, with other values: without the digest it would load
    from safetensors.torch import load_file as unchecked
    changed = unchecked(str(tmp_path / "pretrain-final.safetensors"))
    assert any(not torch.equal(before[k], changed[k]) for k in before)
    with pytest.raises(CheckpointError, match="pretrain-final.safetensors") as error:
        load_model(tmp_path)
    assert "\n" not in str(error.value) and "sha256" in str(error.value)


def test_a_checkpoint_without_digests_is_refused_in_one_line(tmp_path):
    model = tiny(0)
    save_checkpoint(tmp_path, "pretrain-final", model, info(model))
    meta = json.loads((tmp_path / "pretrain-final.json").read_text())
    del meta["sha256"]
    (tmp_path / "pretrain-final.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="records no sha256") as error:
        load_model(tmp_path)
    assert "\n" not in str(error.value) and "pretrain-final.json" in str(error.value)


def tiny_run(directory, n=5):
    config = ModelConfig(max_vertices=n, d_model=16, n_layers=1, n_heads=2)
    torch.manual_seed(0)
    save_checkpoint(directory / "checkpoints", "pretrain-final", build_model(config),
                    {"model_config": config.to_dict(), "data": study_sizes_up_to(n), "step": 0, "seed": 0,
                     "stage": "pretrain"})
    flip_tensor_bytes(directory / "checkpoints" / "pretrain-final.safetensors")
    return directory


@pytest.mark.parametrize("command", ["evaluate", "perturb", "inspect", "llc", "basin"])
def test_every_loader_cli_refuses_altered_weights_in_one_line(tmp_path, capsys, command):
    run = str(tiny_run(tmp_path / "run"))
    argv = {"evaluate": (evaluate.main, [run, "--no-cache", "--size", "16", "--grid-size", "1", "--quiet",
                                         "--no-figures", "--no-handcrafted", "--threads", "1"]),
            "perturb": (perturb.main, ["--model", run, "--quiet", "--no-figures", "--threads", "1"]),
            "inspect": (inspect.main, [run, "--no-figures"]),
            "llc": (llc.main, [run, "--quiet"]),
            "basin": (basin.main, [run, "--quiet"])}
    main_function, args = argv[command]
    assert main_function(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pretrain-final.safetensors" in err[0] and "sha256" in err[0]
    assert not (tmp_path / "run" / f"{command}.json").exists()
