"""The convergence gate (graphpath.sweeps.convergence) on curves whose state is known."""
from __future__ import annotations

import json

import numpy as np
import pytest

from graphpath.sweeps.convergence import (Criterion, ConvergenceError, check_halving, check_job, check_series,
                                          criteria, doubling_check, gate_summary, halved_stage)

STEPS = np.arange(100, 2001, 100)  # 20 evaluations of a 2000-step stage


def test_a_curve_still_falling_fails_and_a_plateau_passes():
    rule = Criterion(window=0.25, tolerance=0.05)
    falling = 5.0 * (STEPS / 100.0) ** -0.7  # a power law: still 20% lower per doubling at the end
    flat = 0.05 + 4.0 * np.exp(-STEPS / 100.0)  # at its floor (to 1e-3) by step ~1000
    assert not check_series(STEPS, falling, 2000, rule)["converged"]
    verdict = check_series(STEPS, flat, 2000, rule)
    assert verdict["converged"] and verdict["plateau"] and abs(verdict["change"]) < 0.01
    assert verdict["points"] == [5, 5]


def test_overfitting_is_a_plateau_more_steps_would_not_help():
    rising = 0.2 + 1e-4 * STEPS  # held-out loss climbing on a small fixed dataset
    verdict = check_series(STEPS, rising, 2000, Criterion())
    assert verdict["plateau"] and verdict["change"] < 0


def test_a_flat_model_that_never_learned_fails_the_ratio():
    flat_but_bad = np.full(STEPS.shape, 1.5)
    rule = Criterion(max_ratio=0.1)
    verdict = check_series(STEPS, flat_but_bad, 2000, rule, baseline=6.85)  # the 1.5 of 6.85
    assert verdict["plateau"] and verdict["learned"] is False and not verdict["converged"]
    assert "constant predictor" in verdict["reason"]
    assert check_series(STEPS, flat_but_bad / 100, 2000, rule, baseline=6.85)["converged"]
    assert "no constant-predictor" in check_series(STEPS, flat_but_bad, 2000, rule)["reason"]


def test_the_floor_passes_a_power_law_whose_remaining_gain_is_small_on_the_task_scale():
    tail = 0.5 * (STEPS / 100.0) ** -1.0  # 0.05 -> 0.025 over the last half: 25% better per window
    assert not check_series(STEPS, tail, 2000, Criterion(), baseline=4.0)["plateau"]
    floored = check_series(STEPS, tail, 2000, Criterion(floor=0.005), baseline=4.0)  # gains < 0.02 of 4.0
    assert floored["plateau"] and floored["change"] > 0.05
    assert not check_series(STEPS, 100 * tail, 2000, Criterion(floor=0.005), baseline=4.0)["plateau"]


def test_windows_ending_at_the_decay_judge_the_stable_phase_not_the_anneal():
    """A warmup-stable-decay curve at its constant-lr plateau by step 1000, which the decay
    (steps 1600-2000) lowers by a third: the windows at the stage's end see the anneal and fail it;
    windows ending at the decay (end 0.8) see the plateau. A curve still falling at constant lr
    fails either way."""
    plateau = 0.3 + 4.0 * np.exp(-STEPS / 100.0)
    annealed = np.where(STEPS > 1600, plateau * (1 - (STEPS - 1600) / 1200), plateau)  # 0.3 -> 0.2
    at_end, before_decay = Criterion(window=0.2), Criterion(window=0.2, end=0.8)
    assert not check_series(STEPS, annealed, 2000, at_end)["plateau"]
    verdict = check_series(STEPS, annealed, 2000, before_decay)
    assert verdict["converged"] and verdict["points"] == [4, 4] and verdict["last"] == pytest.approx(0.3, abs=1e-4)
    falling = np.where(STEPS > 1600, 1.0, 5.0 * (STEPS / 100.0) ** -0.7)
    assert not check_series(STEPS, falling, 2000, before_decay)["plateau"]
    assert "before 80% of the steps" in before_decay.describe() and "end" not in at_end.to_dict()
    assert before_decay.to_dict()["end"] == 0.8
    with pytest.raises(ConvergenceError, match="end must lie"):
        Criterion(window=0.25, end=0.4)


def test_halving_judges_the_final_value_against_a_half_length_run(tmp_path):
    """Method "halving": the full run's last value against the half run's (written as metrics);
    a second half that gained 30% fails, one that gained 2% passes, and the floor and the ratio
    apply as for windows."""
    rule = Criterion(method="halving", tolerance=0.05, floor=0.005, max_ratio=0.1)
    assert check_halving(1.3, 1.0, 2000, Criterion(method="halving"))["change"] == pytest.approx(0.3)
    assert not check_halving(1.3, 1.0, 2000, Criterion(method="halving"))["plateau"]
    assert check_halving(0.102, 0.1, 2000, rule, baseline=10.0)["converged"]
    floored = check_halving(0.08, 0.04, 2000, rule, baseline=10.0)  # 100% better, but by 0.04 < 0.005 x 10
    assert floored["converged"] and floored["change"] == pytest.approx(1.0)
    assert not check_halving(1.02, 1.0, 2000, rule, baseline=5.0)["learned"]  # flat at 0.2 x the constant
    assert "half the steps" in rule.describe() and rule.to_dict()["method"] == "halving"
    for run, final in ((tmp_path / "full", 0.1), (tmp_path / "half", 0.13)):
        run.mkdir()
        steps = np.arange(100, (2000 if run.name == "full" else 1000) + 1, 100)
        values = np.linspace(1.0, final, len(steps))
        (run / "metrics.jsonl").write_text("".join(json.dumps({"stage": "pretrain", "step": int(t), "loss": 1.0,
                                                               "val_loss": float(v)}) + "\n"
                                                   for t, v in zip(steps, values)))
    verdict = check_job(tmp_path / "full", "pretrain", Criterion(method="halving", series="val_loss"),
                        half_run=tmp_path / "half")
    assert verdict["previous"] == pytest.approx(0.13) and verdict["last"] == pytest.approx(0.1)
    assert verdict["half_steps"] == 1000 and not verdict["converged"] and "half-length run" in verdict["reason"]
    with pytest.raises(ConvergenceError, match="half-length run"):
        check_job(tmp_path / "full", "pretrain", Criterion(method="halving", series="val_loss"))
    with pytest.raises(ConvergenceError, match="method must be"):
        Criterion(method="doubling")


def test_a_halved_stage_keeps_its_schedule_shape():
    stage = {"steps": 3000, "decay": "wsd", "decay_step": 2400, "warmup_steps": 200, "lr": 3e-3}
    assert halved_stage(stage) == {**stage, "steps": 1500, "decay_step": 1200}
    assert halved_stage({"steps": 1001}) == {"steps": 500}


def test_windows_without_points_are_not_converged():
    verdict = check_series([1000, 2000], [1.0, 1.0], 2000, Criterion(window=0.2))
    assert not verdict["converged"] and "window" in verdict["reason"]
    with pytest.raises(ConvergenceError, match="every 500 steps"):
        Criterion(window=0.2).check_every(2000, 500, "[pretrain]")
    Criterion(window=0.25).check_every(2000, 500, "[pretrain]")


def test_criteria_take_defaults_per_stage_and_reject_unknown_keys():
    got = criteria({"pretrain": {"tolerance": 0.02}}, {"pretrain": Criterion(max_ratio=0.1), "finetune": Criterion()})
    assert got["pretrain"] == Criterion(tolerance=0.02, max_ratio=0.1) and got["finetune"] == Criterion()
    for bad, needle in (({"pretrain": {"tol": 1}}, "tol"), ({"scratch": {}}, "scratch"),
                        ({"pretrain": {"window": 0.9}}, "window")):
        with pytest.raises(ConvergenceError, match=needle):
            criteria(bad, {"pretrain": Criterion(), "finetune": Criterion()})


def test_check_job_reads_the_stage_from_metrics(tmp_path):
    lines = [{"stage": "pretrain", "step": int(s), "loss": 1.0, "eval_loss": float(v)}
             for s, v in zip(STEPS, 0.05 + 4.0 * np.exp(-STEPS / 150.0))]
    lines += [{"stage": "finetune", "step": 0, "loss": 2.0, "eval_loss": 2.0},
              {"stage": "finetune", "step": 50, "loss": 1.0, "eval_loss": 1.0},
              {"stage": "finetune", "step": 100, "loss": 0.5, "eval_loss": 0.5}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert check_job(tmp_path, "pretrain", Criterion())["converged"]
    finetune = check_job(tmp_path, "finetune", Criterion(window=0.5))
    assert finetune["steps"] == 100 and not finetune["converged"] and finetune["change"] == pytest.approx(1.0)
    summary = gate_summary({"a": {"converged": True}, "b": {"converged": False}})
    assert summary == {"jobs": 2, "converged": 1, "failed": ["b"]}


def test_doubling_check_passes_only_when_doubling_no_longer_helps():
    rng = np.random.default_rng(0)
    normal = 0.1 * np.exp(rng.normal(0, 0.05, 6))
    still_helps = doubling_check(normal, normal * 0.7, tolerance=0.1)  # 30% better with twice the steps
    assert not still_helps["passed"] and still_helps["improvement"]["ci95"][0] > 0.1
    settled = doubling_check(normal, normal * np.exp(rng.normal(0, 0.01, 6)), tolerance=0.1)
    assert settled["passed"]
    assert not doubling_check(normal[:1], normal[:1], 0.1)["passed"]  # one seed: no interval, no pass
