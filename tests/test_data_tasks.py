"""The task suite (data_gen/tasks.py): every task's labels against networkx, balance, baselines,
spec validation, and datasets of a task."""
import numpy as np
import pytest

from data_gen import GraphSpec, SpecError, load_dataset, sample_arrays
from data_gen.build import build_dataset
from data_gen.examples import hand_drawn_batch
from data_gen.fast import fast_arrays
from data_gen.spec import TASKS
from data_gen.tasks import SUITE, SUITE_FIELDS, constant_baseline, task_labels, task_spec
from oracle import HAND_DRAWN, task_label


def check_task(spec: GraphSpec, arrays: dict) -> None:
    for i in range(len(arrays["label"])):
        n, t = int(arrays["num_vertices"][i]), int(arrays["target"][i])
        edges = arrays["edges"][i]
        expected = task_label(spec.task, n, edges, t, spec.max_vertices)
        assert arrays["label"][i] == expected, (spec.task, i, n, edges[edges[:, 0] > 0].tolist(), t)
        if spec.target == "source":
            assert t == 1
        elif spec.target == "any":
            assert 2 <= t <= spec.target_max


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("name", SUITE)
def test_every_task_matches_networkx(name, backend):
    spec = task_spec(name, n_max=10)
    arrays = sample_arrays(spec, 1200, np.random.default_rng(3), backend=backend)
    check_task(spec, arrays)
    assert len(np.unique(arrays["label"])) >= 2, "a task whose label never varies teaches nothing"


def test_task_labels_on_the_hand_drawn_graphs():
    batch = hand_drawn_batch(8).numpy()
    for task, target in (("reachable", "any"), ("degree", "any"), ("reach_count", "source"),
                         ("eccentricity", "source")):
        spec = GraphSpec(n_max=8, task=task, target=target)
        label, new_target = task_labels(spec, batch)
        for i in range(len(label)):
            t = int(new_target[i])
            assert label[i] == task_label(task, int(batch["num_vertices"][i]), batch["edges"][i], t, 8), (task, i)
    # a few answers worked out by hand on HAND_DRAWN[10]: 1-3-2, 1-4-2, 1-5-6-2 (n = 6)
    row = HAND_DRAWN[10]
    assert row["num_vertices"] == 6 and len(row["edges"]) == 7
    one = {"edges": np.array([row["edges"]]), "num_vertices": np.array([6]), "target": np.array([2])}
    assert task_labels(GraphSpec(n_max=6, task="degree", target="any"), one)[0][0] == 3
    assert task_labels(GraphSpec(n_max=6, task="reach_count", target="source"), one)[0][0] == 5
    assert task_labels(GraphSpec(n_max=6, task="eccentricity", target="source"), one)[0][0] == 2


@pytest.mark.parametrize("name", [n for n in SUITE if SUITE_FIELDS[n]["balance"] == "uniform"])
def test_balanced_tasks_have_equal_label_counts(name):
    arrays = sample_arrays(task_spec(name), 2001, 4)
    counts = np.bincount(arrays["label"])
    counts = counts[counts > 0]
    assert len(counts) >= 2 and counts.max() - counts.min() <= 1
    assert len(np.unique(arrays["label"][:60])) == len(counts)  # interleaved


def test_distance_task_is_the_kernel_stream_untouched():
    """task = "distance" (the default) samples exactly what the kernel draws from the same key."""
    spec = task_spec("distance-onpath", n_max=9)
    assert GraphSpec().task == "distance" and GraphSpec.from_dict({}).to_dict()["task"] == "distance"
    rng = np.random.default_rng(8)
    key = int(np.random.default_rng(8).integers(0, 2**64, dtype=np.uint64))
    got = sample_arrays(spec, 700, rng)
    expected, _ = fast_arrays(spec, 700, key)
    for field, value in expected.items():
        assert np.array_equal(got[field], value.astype(np.int64)), field


def test_constant_baseline_is_the_best_constant():
    labels = sample_arrays(task_spec("reach-count", n_max=9), 3000, 5)["label"]
    baseline = constant_baseline(labels)
    mse = lambda c: float(((labels - c) ** 2).mean())  # noqa: E731
    assert baseline["mse"] == pytest.approx(mse(baseline["constant"]))
    assert all(mse(baseline["constant"] + d) > baseline["mse"] for d in (-0.3, -0.01, 0.01, 0.3))


def test_task_specs_are_validated():
    assert set(TASKS) == {SUITE_FIELDS[n]["task"] for n in SUITE}
    with pytest.raises(SpecError, match="unknown task"):
        GraphSpec(task="diameter")
    with pytest.raises(SpecError, match="takes target"):
        GraphSpec(task="reach_count", target="fixed")
    with pytest.raises(SpecError, match="takes target"):
        GraphSpec(task="distance", target="source")
    with pytest.raises(SpecError, match="study"):
        GraphSpec(task="degree", target="any", balance="study")
    with pytest.raises(SpecError, match="unknown task"):
        task_spec("girth")


def test_a_task_dataset_round_trips(tmp_path):
    spec = task_spec("eccentricity", n_max=8)
    out = build_dataset(spec, 500, seed=2, out=tmp_path / "ecc", shard_size=200, progress=False)
    batch = load_dataset(out).numpy()
    check_task(spec, batch)
    again = build_dataset(spec, 500, seed=2, out=tmp_path / "again", shard_size=200, progress=False)
    assert all((out / f).read_bytes() == (again / f).read_bytes() for f in ("shard-00000.npy", "shard-00002.npy"))
