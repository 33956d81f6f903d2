"""`python -m graphpath.train --resume` on a run whose newest checkpoint is damaged: one line,
exit 2, naming the files to delete and the previous good checkpoint; following that advice
resumes exactly."""
import pytest
import torch
from safetensors.torch import load_file

from graphpath.training.run import main

TINY = ["--data.n_max", "5", "--data.finetune_n_max", "4", "--data.small_target", "4",
        "--data.pretrain_threshold", "3", "--data.finetune_threshold", "2",
        "--model.d_model", "16", "--model.n_layers", "1", "--train.batch_size", "32",
        "--train.warmup_steps", "2", "--train.log_every", "2", "--train.eval_every", "4", "--train.eval_size", "64",
        "--train.steps", "9", "--train.checkpoint_every", "4", "--no-eval", "--no-figures", "--threads", "1"]


def corrupt_json(checkpoints):
    (checkpoints / "pretrain-6.json").write_text('{"model_config": {"d_model": 16,')  # cut short


def truncate_weights(checkpoints):
    path = checkpoints / "pretrain-6.safetensors"
    path.write_bytes(path.read_bytes()[:-100])


def truncate_state(checkpoints):
    path = checkpoints / "pretrain-6.state.safetensors"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


@pytest.mark.parametrize("damage, what", [(corrupt_json, "pretrain-6.json"),
                                          (truncate_weights, "pretrain-6.safetensors"),
                                          (truncate_state, "pretrain-6.state.safetensors")])
def test_damaged_newest_checkpoint_names_what_to_delete_and_the_previous_good_one(tmp_path, capsys, damage, what):
    before = torch.get_num_threads()
    try:
        whole, parts = tmp_path / "whole", tmp_path / "parts"
        assert main(["--out", str(whole), "--stage", "pretrain", *TINY]) == 0
        assert main(["--out", str(parts), "--stage", "pretrain", *TINY, "--stop-after", "6"]) == 0
        checkpoints = parts / "checkpoints"
        assert {p.name for p in checkpoints.glob("*.json")} == {"pretrain-4.json", "pretrain-6.json"}
        damage(checkpoints)
        capsys.readouterr()
        assert main(["--out", str(parts), "--stage", "pretrain", "--resume", "--threads", "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        line = err[0]
        assert line.startswith("python -m graphpath.train: cannot resume") and what in line
        assert f"delete {checkpoints / 'pretrain-6'}.*" in line and "previous good checkpoint pretrain-4" in line
        assert not (checkpoints / "pretrain-final.json").exists()  # nothing trained, nothing written
        for path in checkpoints.glob("pretrain-6.*"):  # the advice, followed
            path.unlink()
        assert main(["--out", str(parts), "--stage", "pretrain", "--resume", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(before)
    a = load_file(str(whole / "checkpoints" / "pretrain-final.safetensors"))
    b = load_file(str(parts / "checkpoints" / "pretrain-final.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_no_good_checkpoint_left_says_the_stage_restarts(tmp_path, capsys):
    before = torch.get_num_threads()
    try:
        parts = tmp_path / "parts"
        assert main(["--out", str(parts), "--stage", "pretrain", *TINY, "--stop-after", "3"]) == 0
        (parts / "checkpoints" / "pretrain-3.json").write_text("{not json")
        capsys.readouterr()
        assert main(["--out", str(parts), "--stage", "pretrain", "--resume"]) == 2
    finally:
        torch.set_num_threads(before)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pretrain-3.json" in err[0] and "restarts from step 0" in err[0]
