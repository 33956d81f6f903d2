"""`python -m data_gen.build` / `load_dataset`: determinism, round trip, tamper detection, bad input."""
import json

import numpy as np
import pytest
import torch

from data_gen import DatasetError, load_dataset, open_dataset, preset
from data_gen.build import build_dataset, main
from data_gen.dataset import shard_key
from data_gen.fast import fast_arrays
from data_gen.summarize import main as summarize_main

SMALL = ["--size", "2500", "--seed", "4", "--shard-size", "1000"]


def build(tmp_path, name, *extra):
    out = tmp_path / name
    assert main(["--preset", "finetune", *SMALL, "--out", str(out), *extra]) == 0
    return out


def leftovers(tmp_path):
    """What a build left in its parent folder, besides the (empty, persistent) lock file of each
    dataset it built (graphpath_common.locks)."""
    return sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".graphpath.lock"))


def test_one_and_three_workers_give_identical_bytes(tmp_path):
    one = build(tmp_path, "one", "--workers", "1")
    three = build(tmp_path, "three", "--workers", "3")
    names = sorted(p.name for p in one.glob("shard-*.npy"))
    assert names == ["shard-00000.npy", "shard-00001.npy", "shard-00002.npy"]
    for name in names:
        assert (one / name).read_bytes() == (three / name).read_bytes()
    manifest_one = json.loads((one / "manifest.json").read_text())
    manifest_three = json.loads((three / "manifest.json").read_text())
    assert manifest_one["shards"] == manifest_three["shards"]
    assert (one / "label_distribution.html").stat().st_size > 0
    assert leftovers(tmp_path) == ["one", "three"]  # no temporary directory left behind


def test_load_dataset_round_trip(tmp_path):
    out = build(tmp_path, "ds")
    batch = load_dataset(out)
    manifest = json.loads((out / "manifest.json").read_text())
    spec = preset("finetune")
    assert len(batch) == manifest["count"] == 2500 and batch.max_vertices == spec.max_vertices
    assert batch.edges.shape == (2500, spec.max_edges, 2)
    # shard i is the kernel's stream keyed by (seed, i): rebuild it independently
    expected = [fast_arrays(spec, count, shard_key(4, i))[0] for i, count in enumerate([1000, 1000, 500])]
    for field, value in batch.numpy().items():
        assert np.array_equal(value, np.concatenate([e[field] for e in expected]).astype(np.int64)), field
    histogram = np.bincount(batch.label.numpy())
    assert manifest["label_histogram"] == {str(d): int(c) for d, c in enumerate(histogram) if c}
    assert manifest["seed"] == 4 and manifest["spec"]["target"] == "on_path"
    assert [s["count"] for s in manifest["shards"]] == [1000, 1000, 500]
    reader = open_dataset(out)
    assert len(reader) == 2500 and reader[:].equal(batch) and reader[7].equal(batch[7])
    picks = np.array([2499, 0, 1500, 999, 1000, 1500])  # across shards, any order, repeats
    assert reader[picks].equal(batch[torch.from_numpy(picks)])


def test_cpu_sizes_and_spec_files(tmp_path):
    out = tmp_path / "small"
    assert main(["--preset", "pretrain", "--n-max", "8", "--finetune-n-max", "5", "--small-target", "5",
                 *SMALL, "--out", str(out)]) == 0
    assert load_dataset(out).max_vertices == 8
    data_file = tmp_path / "data.toml"
    data_file.write_text('preset = "pretrain"\n[data]\nn_max = 8\nfinetune_n_max = 5\nsmall_target = 5\n')
    assert main(["--spec", str(data_file), *SMALL, "--out", str(tmp_path / "from_toml")]) == 0
    assert (tmp_path / "small" / "shard-00000.npy").read_bytes() == \
        (tmp_path / "from_toml" / "shard-00000.npy").read_bytes()
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text('[spec]\nfamily = "tree"\nn_max = 20\ntarget = "any"\n')
    assert main(["--spec", str(spec_file), *SMALL, "--out", str(tmp_path / "trees")]) == 0
    assert load_dataset(tmp_path / "trees").num_edges.eq(load_dataset(tmp_path / "trees").num_vertices - 1).all()


def test_tampered_or_missing_shard_is_named(tmp_path, capsys):
    out = build(tmp_path, "ds")
    shard = out / "shard-00001.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="shard-00001.npy"):
        load_dataset(out)
    assert summarize_main([str(out)]) == 2
    assert "shard-00001.npy" in capsys.readouterr().err
    shard.unlink()
    with pytest.raises(DatasetError, match="shard-00001.npy.*missing"):
        load_dataset(out)
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetError, match="malformed"):
        load_dataset(out)


def test_force_replaces_and_refusal_keeps_the_old(tmp_path, capsys):
    out = build(tmp_path, "ds")
    before = (out / "shard-00000.npy").read_bytes()
    assert main(["--preset", "finetune", *SMALL, "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "shard-00000.npy").read_bytes() == before
    assert main(["--preset", "finetune", "--size", "10", "--seed", "5", "--out", str(out), "--force"]) == 0
    assert len(load_dataset(out)) == 10 and not (out / "shard-00001.npy").exists()
    assert leftovers(tmp_path) == ["ds"]


BAD_SPECS = {
    "unknown family": '[spec]\nfamily = "lattice"\n',
    "n_min > n_max": "[spec]\nn_min = 9\nn_max = 5\n",
    "n_min >= 3": "[spec]\nn_min = 2\n",
    "t_max": '[spec]\ntarget = "any"\nt_max = 40\n',
    "malformed": "[spec\nfamily = ",
    "unknown key": "[spec]\nfamliy = 'tree'\n",
    "bad data key": 'preset = "pretrain"\n[data]\nn_maxx = 8\n',
    "unknown preset": 'preset = "pretrian"\n',
}


@pytest.mark.parametrize("problem", sorted(BAD_SPECS))
def test_bad_spec_files(problem, tmp_path, capsys):
    spec_file = tmp_path / "bad.toml"
    spec_file.write_text(BAD_SPECS[problem])
    assert main(["--spec", str(spec_file), "--size", "10", "--seed", "1", "--out", str(tmp_path / "out")]) == 2
    assert_one_line_and_nothing_left(capsys, tmp_path, {"bad.toml"}, SPEC_MESSAGES[problem])


# a fragment each message must contain: the error names the problem, not merely some problem
SPEC_MESSAGES = {"unknown family": "unknown family 'lattice'", "n_min > n_max": "n_min (9) > n_max (5)",
                 "n_min >= 3": "n_min must be >= 3", "t_max": "t_max (40)", "malformed": "malformed",
                 "unknown key": "famliy", "bad data key": "n_maxx", "unknown preset": "'pretrian'"}
ARG_MESSAGES = {"unknown preset": "'pretrian'", "zero size": "size must be >= 1",
                "negative size": "size must be >= 1", "zero workers": "workers must be >= 1",
                "negative seed": "seed must be >= 0", "n_max too small": "n_max=2",
                "n_max too large": "max_vertices (65)", "small target": "small_target (99)",
                "missing spec file": "does not exist", "not a number": "'ten'",
                "preset and spec": "not allowed with"}


BAD_ARGS = {
    "unknown preset": ["--preset", "pretrian", "--size", "10", "--seed", "1"],
    "zero size": ["--preset", "pretrain", "--size", "0", "--seed", "1"],
    "negative size": ["--preset", "pretrain", "--size", "-5", "--seed", "1"],
    "zero workers": ["--preset", "pretrain", "--size", "10", "--seed", "1", "--workers", "0"],
    "negative seed": ["--preset", "pretrain", "--size", "10", "--seed", "-1"],
    "n_max too small": ["--preset", "pretrain", "--size", "10", "--seed", "1", "--n-max", "2"],
    "n_max too large": ["--preset", "pretrain", "--size", "10", "--seed", "1", "--n-max", "65"],
    "small target": ["--preset", "test-any-small", "--size", "10", "--seed", "1", "--small-target", "99"],
    "missing spec file": ["--spec", "no/such.toml", "--size", "10", "--seed", "1"],
    "not a number": ["--preset", "pretrain", "--size", "ten", "--seed", "1"],
    "preset and spec": ["--preset", "pretrain", "--spec", "x.toml", "--size", "10", "--seed", "1"],
}


@pytest.mark.parametrize("problem", sorted(BAD_ARGS))
def test_bad_arguments(problem, tmp_path, capsys):
    assert main([*BAD_ARGS[problem], "--out", str(tmp_path / "out")]) == 2
    assert_one_line_and_nothing_left(capsys, tmp_path, set(), ARG_MESSAGES[problem])


def assert_one_line_and_nothing_left(capsys, tmp_path, expected, message=""):
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("python -m data_gen.build: ") and message in err, err
    assert set(p.name for p in tmp_path.iterdir()) == expected


def test_build_dataset_api_and_help(tmp_path, capsys):
    out = build_dataset(preset("test-any-small"), 300, seed=0, out=tmp_path / "api", progress=False)
    assert len(load_dataset(out)) == 300
    assert main(["--help"]) == 0 and "--preset" in capsys.readouterr().out


def test_unwritable_output_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["--preset", "pretrain", "--size", "10", "--seed", "1", "--out", str(blocker / "ds")]) == 2
    assert_one_line_and_nothing_left(capsys, tmp_path, {"file"}, "cannot write")


@pytest.mark.slow
def test_command_line_end_to_end(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "cli"
    command = [sys.executable, "-m", "data_gen.build", "--preset", "test-onpath-small", "--size", "3000",
               "--seed", "7", "--workers", "2", "--shard-size", "1000", "--out", str(out)]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(load_dataset(out)) == 3000
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    summary = subprocess.run([sys.executable, "-m", "data_gen.summarize", str(out)], cwd=root,
                             capture_output=True, text=True, timeout=300)
    assert summary.returncode == 0 and "3000 graphs" in summary.stdout
