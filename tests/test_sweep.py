"""graphpath.sweeps.runner: grids expand, complete jobs are skipped, foreign run directories are refused,
a failed job is reported with its log and retried alone, and submitit's local executor runs the
same jobs as the process pool."""
import json

import pytest

from graphpath.sweeps.runner import (Job, SweepError, SweepFailed, check_jobs, job_dir, load_grid, main, require_complete,
                             run_sweep, save_study)

TINY = {"name": "tiny", "data": {"n_max": 5, "finetune_n_max": 4, "small_target": 4},
        "model": {"d_model": 8, "n_layers": 1, "n_heads": 1},
        "train": {"steps": 4, "batch_size": 16, "eval_every": 4, "eval_size": 32, "log_every": 2,
                  "checkpoint_every": 100, "buckets": 1},
        "finetune": {"steps": 3, "batch_size": 16, "eval_every": 3, "eval_size": 32, "log_every": 1,
                     "checkpoint_every": 100, "buckets": 1}}

GRID = """
name = "g"
stage = "all"
[grid]
seed = [0, 1]
"train.lr" = [0.001, 0.003, 0.01]
[base]
name = "g"
[base.data]
n_max = 5
"""


def tiny(seed=0, **finetune):
    return {**TINY, "seed": seed, "finetune": {**TINY["finetune"], **finetune}}


def test_grid_expands_to_the_product_with_finetune_after_pretrain(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(GRID)
    name, jobs = load_grid(path)
    assert name == "g" and len(jobs) == 2 * 3 * 2
    pre = [j for j in jobs if j.stage == "pretrain"]
    assert {(j.config["seed"], j.config["train"]["lr"]) for j in pre} == {(s, lr) for s in (0, 1)
                                                                         for lr in (0.001, 0.003, 0.01)}
    assert all(j.after == j.key.replace("/finetune", "/pretrain") for j in jobs if j.stage == "finetune")


@pytest.mark.parametrize("text,needle", [
    (GRID.replace('[0.001, 0.003, 0.01]', '[]'), "zero jobs"),
    (GRID.replace('"train.lr"', '"train.nope"'), "nope"),
    (GRID + "\nextra = 1\n", "extra"),
    (GRID.replace('stage = "all"', 'stage = "finetune"'), "stage"),
])
def test_bad_grids_are_one_line_exit_2(tmp_path, capsys, text, needle):
    path = tmp_path / "grid.toml"
    path.write_text(text)
    assert main([str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unknown_executor_and_bad_workers_exit_2(tmp_path, capsys):
    path = tmp_path / "grid.toml"
    path.write_text(GRID)
    assert main([str(path), "--executor", "kubernetes", "--out", str(tmp_path / "o")]) == 2
    assert "unknown executor 'kubernetes'" in capsys.readouterr().err
    assert main([str(path), "--workers", "0", "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()
    with pytest.raises(SweepError, match="zero jobs"):
        run_sweep([], tmp_path / "o")


def test_help_exits_0(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0 and "--executor" in capsys.readouterr().out


def test_foreign_run_directories_are_refused_before_anything_runs(tmp_path):
    jobs = [Job("a", tiny(0)), Job("b", tiny(1))]
    check_jobs(jobs, tmp_path)  # fresh: fine
    (job_dir(tmp_path, jobs[1]) / "checkpoints").mkdir(parents=True)
    (job_dir(tmp_path, jobs[1]) / "job.json").write_text(json.dumps({"config_sha256": "0123456789abcdef"}))
    with pytest.raises(SweepError, match="different config"):
        run_sweep(jobs, tmp_path)
    assert not job_dir(tmp_path, jobs[0]).exists()  # nothing ran, nothing claimed
    (job_dir(tmp_path, jobs[1]) / "job.json").unlink()
    with pytest.raises(SweepError, match="not a job directory"):
        check_jobs(jobs, tmp_path)


def test_finetune_jobs_name_their_pretraining(tmp_path):
    with pytest.raises(SweepError, match="after="):
        check_jobs([Job("a", tiny()), Job("b", tiny(), "finetune")], tmp_path)
    with pytest.raises(SweepError, match="after="):
        check_jobs([Job("a", tiny()), Job("b", tiny(), "finetune", after="c")], tmp_path)


@pytest.mark.slow
def test_local_pool_runs_skips_and_retries_only_failed_jobs(tmp_path):
    missing = tmp_path / "no-such-dataset"
    jobs = [Job("s0/pre", tiny(0)), Job("s0/ft", tiny(0), "finetune", after="s0/pre"),
            Job("s1/pre", tiny(1)), Job("s1/ft", tiny(1, dataset=str(missing)), "finetune", after="s1/pre"),
            Job("bad/pre", {**tiny(2), "train": {**TINY["train"], "dataset": str(missing)}}),
            Job("bad/ft", tiny(2), "finetune", after="bad/pre")]
    status = run_sweep(jobs, tmp_path, workers=2, progress=False)
    assert {k: s["status"] for k, s in status.items()} == {
        "s0/pre": "ran", "s0/ft": "ran", "s1/pre": "ran", "s1/ft": "failed", "bad/pre": "failed", "bad/ft": "blocked"}
    log = status["s1/ft"]["log"]
    assert log == str(job_dir(tmp_path, jobs[3]) / "job.log") and "does not exist" in open(log).read()
    with pytest.raises(SweepFailed, match="3 of 6 jobs"):
        require_complete(status)
    done = job_dir(tmp_path, jobs[1]) / "checkpoints" / "finetune-final.json"
    stamp = done.stat().st_mtime_ns
    # the same (unfixed) grid again: the finished jobs are skipped, only the failed ones run
    again = run_sweep(jobs, tmp_path, workers=1, progress=False)
    assert {k: s["status"] for k, s in again.items()} == {
        "s0/pre": "done", "s0/ft": "done", "s1/pre": "done", "s1/ft": "failed", "bad/pre": "failed", "bad/ft": "blocked"}
    assert done.stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_submitit_local_executor_runs_a_pretrain_and_its_finetune(tmp_path):
    jobs = [Job("pre", tiny(3)), Job("ft", tiny(3), "finetune", after="pre")]
    status = run_sweep(jobs, tmp_path, executor="submitit-local", workers=2, progress=False)
    assert {k: s["status"] for k, s in status.items()} == {"pre": "ran", "ft": "ran"}
    metrics = [json.loads(line) for line in (job_dir(tmp_path, jobs[1]) / "metrics.jsonl").read_text().splitlines()]
    assert {m["stage"] for m in metrics} == {"finetune"} and max(m["step"] for m in metrics) == 3
    assert (tmp_path / "submitit").is_dir()  # submitit's own bookkeeping


@pytest.mark.slow
def test_cli_writes_sweep_json(tmp_path, capsys):
    path = tmp_path / "grid.toml"
    base = "\n".join(f"{k} = {json.dumps(v)}" for k, v in TINY["train"].items())
    path.write_text('name = "c"\n[grid]\nseed = [0, 1]\n[base]\nname = "c"\n[base.data]\nn_max = 5\n'
                    'finetune_n_max = 4\nsmall_target = 4\n[base.model]\nd_model = 8\nn_layers = 1\nn_heads = 1\n'
                    f"[base.train]\n{base}\n")
    assert main([str(path), "--out", str(tmp_path / "out"), "--workers", "2", "--quiet"]) == 0
    doc = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert [j["key"] for j in doc["jobs"]] == ["seed=0", "seed=1"]
    assert all(j["status"] == "ran" and j["best_eval_loss"] > 0 for j in doc["jobs"])
    assert main([str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0  # all skipped now
    doc = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert all(j["status"] == "done" for j in doc["jobs"])


def test_save_study_writes_figures_then_the_json_and_skips_figures_when_asked(tmp_path):
    seen = []

    def figures(doc, folder):
        seen.append((dict(doc), folder))
        return [str(folder / "a.html")]

    path = save_study({"cells": 3}, tmp_path, "study.json", figures)
    assert path == tmp_path / "study.json"
    assert seen == [({"cells": 3}, tmp_path / "figures")]
    assert json.loads(path.read_text()) == {"cells": 3, "figures": [str(tmp_path / "figures" / "a.html")]}
    path = save_study({"cells": 4}, tmp_path, "study.json", figures, figures=False)
    assert json.loads(path.read_text()) == {"cells": 4} and len(seen) == 1
