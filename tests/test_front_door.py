"""The front door: `import graphpath` is light, its names resolve lazily, `graphpath.train` and
`graphpath.evaluate` are one callable whatever was imported first, and the Python API trains the
same bytes as the command line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

import graphpath
from graphpath.evaluation.predict import predict

ROOT = Path(__file__).resolve().parent.parent
TINY = {"data.n_max": 5, "data.finetune_n_max": 4, "data.small_target": 4, "data.pretrain_threshold": 3,
        "data.finetune_threshold": 2, "model.d_model": 16, "model.n_layers": 1, "train.steps": 4,
        "finetune.steps": 2, "train.batch_size": 32, "finetune.batch_size": 32, "train.eval_size": 64,
        "finetune.eval_size": 64, "train.log_every": 2, "finetune.log_every": 1}


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_import_graphpath_loads_no_torch_and_lists_its_names():
    code = ("import sys; before = set(sys.modules); import graphpath; "
            "heavy = [m for m in ('torch', 'numpy', 'data_gen', 'graphpath.core') if m in sys.modules]; "
            "print(heavy, len(set(sys.modules) - before)); print(sorted(set(graphpath.__all__) - set(dir(graphpath))))")
    done = python(code)
    assert done.returncode == 0, done.stderr
    heavy, missing = done.stdout.splitlines()
    assert heavy.startswith("[] ") and int(heavy.split()[1]) <= 5, heavy  # graphpath itself and nothing heavy
    assert missing == "[]"


def test_every_public_name_resolves():
    for name in graphpath.__all__:
        assert getattr(graphpath, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'trainer'"):
        graphpath.trainer  # noqa: B018


@pytest.mark.parametrize("name", ["train", "evaluate"])
@pytest.mark.parametrize("order", ["function first", "module first", "from import"])
def test_the_command_and_the_function_are_one_name_in_either_order(name, order):
    code = {
        "function first": f"import graphpath; f = graphpath.{name}; import graphpath.{name} as m; "
                          f"assert graphpath.{name} is f is m",
        "module first": f"import graphpath.{name} as m; import graphpath; assert graphpath.{name} is m",
        "from import": f"from graphpath import {name} as f; import graphpath.{name}; assert graphpath.{name} is f",
    }[order]
    target = {"train": "graphpath.training.run:train", "evaluate": "graphpath.evaluation.suite:evaluate_run"}[name]
    code += (f"; assert callable(graphpath.{name}) and graphpath.{name}.FUNCTION == {target!r}"
             f"; import sys; assert 'torch' not in sys.modules")  # nothing heavy until called
    done = python(code)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow  # two fresh interpreters importing torch: ~10 s each on a busy 2-core machine
@pytest.mark.parametrize("command", ["graphpath.train", "graphpath.evaluate"])
def test_the_commands_still_run_with_python_m(command):
    done = subprocess.run([sys.executable, "-m", command, "--help"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0 and f"usage: python -m {command}" in done.stdout, done.stderr
    assert "RuntimeWarning" not in done.stderr  # the package did not import the command before runpy


def test_train_from_python_writes_the_bytes_the_command_line_writes(tmp_path):
    from graphpath.training.run import main

    run = graphpath.train(None, tmp_path / "api", overrides=TINY, evaluate=False, figures=False, threads=1,
                          progress=False)
    assert isinstance(run, graphpath.RunDir) and run.finished("finetune")
    flags = [part for key, value in TINY.items() for part in (f"--{key}", str(value))]
    assert main(["--out", str(tmp_path / "cli"), *flags, "--no-eval", "--no-figures", "--threads", "1"]) == 0
    for name in ("pretrain-final.safetensors", "finetune-final.safetensors", "finetune-final.state.safetensors"):
        assert (run.checkpoints / name).read_bytes() == (tmp_path / "cli" / "checkpoints" / name).read_bytes()
    assert run.config.read_text() == (tmp_path / "cli" / "config.toml").read_text()
    timing = ("examples_per_s", "elapsed_s")
    strip = lambda rows: [{k: v for k, v in row.items() if k not in timing} for row in rows]  # noqa: E731
    assert strip(run.read_metrics()) == strip(graphpath.RunDir(tmp_path / "cli").read_metrics())
    made = json.loads(run.provenance.read_text())["invocations"]
    assert len(made) == 1 and made[0]["status"] == "finished" and made[0]["command"].startswith("graphpath.train(")
    cli = json.loads((tmp_path / "cli" / "provenance.json").read_text())["invocations"][0]
    assert cli["command"][:3] == ["python -m graphpath.train", "--out", str(tmp_path / "cli")]
    with pytest.raises(graphpath.ConfigError, match="unknown key"):
        graphpath.train(None, tmp_path / "bad", overrides={"train.lrr": 1.0})
    assert not (tmp_path / "bad").exists()


def test_load_predicts_edge_lists_networkx_and_batches_alike(tmp_path):
    graphpath.train(None, tmp_path / "run", overrides=TINY, evaluate=False, figures=False, threads=1,
                    progress=False)
    model = graphpath.load(tmp_path / "run")
    assert model.stage == "finetune" and model.answers == "distance" and model.max_vertices == 5
    edges = [[(1, 3), (3, 2)], [(2, 1)], [(1, 4), (4, 5)]]
    by_edges = model.predict(edges, target=[2, 2, 5])
    graphs = []
    for pairs in edges:
        graph = nx.Graph(pairs)
        graph.add_nodes_from(range(1, max(max(p) for p in pairs) + 1))
        graphs.append(graph)
    by_nx = model.predict(graphs, target=[2, 2, 5])
    batch = graphpath.GraphBatch.from_edges(edges, 5, target=[2, 2, 5])
    assert np.array_equal(by_edges.output, by_nx.output)
    assert np.array_equal(by_edges.output, predict(model.model, batch))
    assert by_edges.label.tolist() == [2, 1, 2]
    assert by_edges.answer.tolist() == np.floor(by_edges.output + 0.5).astype(int).tolist()
    with pytest.raises(ValueError, match="graph 0: edge \\(1, 6\\) has a vertex id outside"):
        model.predict([(1, 6)], num_vertices=5)


def test_load_refuses_in_one_line(tmp_path):
    graphpath.train(None, tmp_path / "run", overrides={**TINY, "finetune.steps": 1}, stage="pretrain",
                    evaluate=False, figures=False, threads=1, progress=False)
    weights = tmp_path / "run" / "checkpoints" / "pretrain-final.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    for path, needle in ((tmp_path / "run", "does not match the sha256"), (tmp_path / "none", "no run directory"),
                         (ROOT / "docs", "is not a run directory")):
        with pytest.raises(graphpath.CheckpointError, match=needle) as caught:
            graphpath.load(path)
        assert "\n" not in str(caught.value)


def test_evaluate_from_python_pools_a_group_of_seeds(tmp_path):
    group = graphpath.train(None, tmp_path / "group", seeds=[0, 1], stage="pretrain", overrides=TINY,
                            figures=False, threads=1, progress=False)
    doc = graphpath.evaluate(group, sets=["pretrain"], size=32, grid_size=1, cache_dir=tmp_path / "cache",
                             compare_handcrafted=False, figures=False, progress=False)
    assert doc["models"]["learned"]["sources"] == [str(group.seed(0).path), str(group.seed(1).path)]
    assert doc["sets"]["pretrain"]["runs"] == 2 and doc["sets"]["pretrain"]["ci_kind"] == "seeds"
    assert json.loads(group.eval.read_text())["title"] == "group" and group.report.is_file()
    assert [run["run"] for run in doc["provenance"]["runs"]] == doc["models"]["learned"]["sources"]
    with pytest.raises(Exception, match="seeds must be distinct"):  # a UsageError: one line, nothing written
        graphpath.train(None, tmp_path / "bad", seeds=[1, 1], overrides=TINY)
    assert not (tmp_path / "bad").exists()
