"""`graphpath.analysis.basin`: the search widens until recovery fails and brackets a known boundary,
says when it is censored, pools runs with Wilson intervals, refuses a model outside its range
(keeping the others), and bad input exits 2."""
from __future__ import annotations

import json

import pytest
from scipy import stats

from graphpath.analysis import basin as B
from graphpath.analysis.intervals import wilson


def boundary_at(edge: float, calls: list, runs: int = 10):
    def trial(sigma):
        calls.append(sigma)
        k = runs if sigma < edge else 0
        return {"sigma": sigma, "holds": sigma < edge, "recovered": k, "runs": runs, "ci95": wilson(k, runs),
                "by_model": {"m": [sigma < edge] * runs}}
    return trial


@pytest.mark.parametrize("edge", [0.0037, 0.05, 0.37, 0.99, 4.2])
def test_search_brackets_a_known_boundary(edge):
    calls = []
    found = B.search(boundary_at(edge, calls), B.Search(start=0.1, factor=2, ratio=1.2, budget=30))
    assert found["closed"] and found["censored"] is None
    assert found["lo"]["sigma"] < edge <= found["hi"]["sigma"] <= 1.2 * found["lo"]["sigma"] * (1 + 1e-9)
    assert [t["sigma"] for t in found["trials"]] == calls
    if edge > 0.1:  # widened from the start until recovery failed, never past the first failure
        assert calls[:2] == [0.1, 0.2] and max(calls) < 2 * edge


def test_a_radius_beyond_the_budget_is_censored_above_and_says_so():
    calls = []
    found = B.search(boundary_at(1e9, calls), B.Search(start=0.1, factor=2, budget=4))
    assert found["censored"] == "above" and found["hi"] is None and not found["closed"]
    assert calls == [0.1, 0.2, 0.4, 0.8] and found["lo"]["sigma"] == 0.8
    calls = []
    below = B.search(boundary_at(1e-9, calls), B.Search(start=0.1, factor=10, budget=9, floor=1e-3))
    assert below["censored"] == "below" and below["lo"] is None and min(calls) == pytest.approx(1e-3)


def test_search_settings_are_checked():
    with pytest.raises(B.PerturbError, match="factor > 1"):
        B.Search(factor=1.0)
    with pytest.raises(B.PerturbError, match="budget >= 2"):
        B.Search(budget=1)


def test_wilson_matches_its_formula():
    k, m, z = 7, 10, stats.norm.ppf(0.975)
    p = k / m
    centre = (p + z * z / (2 * m)) / (1 + z * z / m)
    half = z / (1 + z * z / m) * (p * (1 - p) / m + z * z / (4 * m * m)) ** 0.5
    assert wilson(k, m) == pytest.approx([centre - half, centre + half], rel=1e-9)
    assert wilson(10, 10)[1] == pytest.approx(1.0) and wilson(10, 10)[0] > 0.69


@pytest.mark.parametrize("args,needle", [
    (["nowhere"], "no run directory"),
    (["handcrafted"], "--n in [3, 64]"),
    (["handcrafted", "--n", "4", "--factor", "0.5"], "factor > 1"),
    (["handcrafted", "--n", "4", "--budget", "x"], "invalid int"),
    (["handcrafted", "--n", "4", "--perturbations", "0"], "--perturbations must be >= 1"),
    (["EMPTY"], "not a run directory"),
    (["handcrafted", "--n", "4", "--config", "GROUP"], "matches no parameter"),  # an unknown layer
])
def test_bad_input_exits_2(args, needle, capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "group.toml").write_text('[perturb]\nkind = "group"\ngroup = "blocks.99.*"\nsteps = 2\n')
    args = [{"EMPTY": str(tmp_path / "empty"), "GROUP": str(tmp_path / "group.toml")}.get(a, a) for a in args]
    code = B.main(args + ["--out", str(tmp_path / "basin.json"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "basin.json").exists()


def _untrained_group(tmp_path):
    """Two seeds of an untrained model: outside the basin's range, so both are refused."""
    from graphpath.core.checkpoint import save_checkpoint
    from graphpath.core.model import ModelConfig, build_model
    from data_gen.spec import study_sizes_up_to

    for seed in (0, 1):
        run = tmp_path / "group" / f"seed-{seed}"
        config = ModelConfig(max_vertices=5, d_model=16, n_layers=1, n_heads=2)
        info = {"model_config": config.to_dict(), "data": study_sizes_up_to(5), "step": 0, "seed": seed,
                "stage": "pretrain"}
        save_checkpoint(run / "checkpoints", "pretrain-final", build_model(config), info)
        (run / "config.toml").write_text(f'name = "g"\nseed = {seed}\n[data]\nn_max = 5\nfinetune_n_max = 5\n'
                                         'small_target = 5\n[model]\nd_model = 16\nn_layers = 1\nn_heads = 2\n')
    return tmp_path / "group"


@pytest.mark.slow
def test_cli_refuses_untrained_seeds_but_measures_and_writes_the_hand_built_model(capsys, tmp_path):
    group = _untrained_group(tmp_path)
    out = tmp_path / "basin.json"
    code = B.main([str(group), "--with-handcrafted", "--steps", "3", "--perturbations", "2", "--budget", "2",
                   "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "2 model(s) refused" in err and "R^2 <= 0.5" in err and err.count("\n") == 1, err
    doc = json.loads(out.read_text())
    learned = doc["groups"]["pretrain"]
    assert [r["key"] for r in learned["refused"]] == ["pretrain/seed-0", "pretrain/seed-1"] and learned["lo"] is None
    assert learned["refused"][0]["data"]["source"] == "trained"
    hand = doc["groups"]["handcrafted"]
    assert hand["models"][0]["loss_before"] < 1e-6 and hand["models"][0]["threshold"] == pytest.approx(2e-4)
    assert hand["models"][0]["data"]["source"] == "run-pretrain"
    for t in hand["trials"]:
        assert t["runs"] == 4 and t["ci95"] == pytest.approx(wilson(t["recovered"], 4))  # as many as 2 seeds pool
    assert doc["recovery_rule"] and doc["recovery_factor"] == 2.0 and "threshold" not in doc["settings"]
    assert doc["settings"]["kind"] == "all" and len(hand["trials"]) <= 2


def test_thorough_preset_is_a_valid_configuration():
    from pathlib import Path

    from graphpath_common.toml import tomllib

    table = tomllib.loads((Path(__file__).parent.parent / "experiments" / "basin-thorough.toml").read_text())
    cfg, plan = B.PerturbConfig(model=None, **table["perturb"]), B.Search(**table["search"])
    assert cfg.kind == "all" and len(cfg.seeds) == 8 and plan.budget == 10 and plan.ratio == 1.2


def fake_trials(monkeypatch, edge: float, stop_at: int | None = None, stop=KeyboardInterrupt):
    """Group.trial replaced by a known boundary at `edge` (every draw recovers below it, none above);
    the call numbered `stop_at` (from 1) raises `stop` instead. Returns the list of (group size,
    draws) seen per call."""
    seen = []

    def trial(self, sigma, bar=None, lr=None):
        if sigma is None:  # the control: every run within its bar, at every lr
            runs = len(self.members) * len(self.draws)
            return {"sigma": None, "lr": lr, "recovered": runs, "runs": runs}
        seen.append((len(self.members), len(self.draws)))
        if stop_at is not None and len(seen) == stop_at:
            raise stop("stopped by the test") if stop is not KeyboardInterrupt else stop()
        runs = len(self.members) * len(self.draws)
        k = runs if sigma < edge else 0
        return {"sigma": sigma, "recovered": k, "runs": runs, "rate": k / runs, "ci95": wilson(k, runs),
                "holds": sigma < edge, "by_model": {row["key"]: [sigma < edge] * len(self.draws)
                                                   for *_, row in self.members},
                "final": {row["key"]: [0.0] * len(self.draws) for *_, row in self.members}}

    monkeypatch.setattr(B.Group, "trial", trial)
    return seen


def test_a_lone_model_after_a_measured_group_gets_the_group_s_pooled_draws(monkeypatch):
    from graphpath.analysis.targets import subjects

    seen = fake_trials(monkeypatch, edge=0.3)
    three = [subjects("handcrafted", "test", n=4)[0] for _ in range(3)]
    groups = {"seeds": three, "handcrafted": subjects("handcrafted", "test", n=4)}
    cfg = B.PerturbConfig(model=None, kind="all", seeds=[0, 1], steps=2, eval_size=64)
    saved = []
    out = B.measure(groups, cfg, B.Search(start=0.1, factor=2, ratio=1.5, budget=6), "cpu", False,
                    save=lambda g: saved.append({k: (v["complete"], len(v["trials"])) for k, v in g.items()}))
    assert {draws for size, draws in seen if size == 3} == {2}  # a group: the configured draws per model
    assert {draws for size, draws in seen if size == 1} == {6}  # alone: as many runs as 3 models x 2 draws
    for g in out.values():
        assert g["complete"] and g["lo"]["sigma"] < 0.3 <= g["hi"]["sigma"]
    assert saved[0] == {"seeds": (False, 0)}  # written after the control, before any sigma
    assert saved[1] == {"seeds": (False, 1)}  # and after the first sigma, before the group finished
    assert len(saved) == len(seen) + 2 + 2  # after every control, every sigma and every group


@pytest.mark.parametrize("stop,code,status", [(KeyboardInterrupt, 130, "interrupted"),
                                              (B.PerturbError, 2, "failed: stopped by the test")])
def test_measurements_made_before_an_interrupt_or_a_failure_are_kept(monkeypatch, capsys, tmp_path, stop, code,
                                                                    status):
    seen = fake_trials(monkeypatch, edge=10.0, stop_at=3, stop=stop)
    out = tmp_path / "basin.json"
    assert B.main(["handcrafted", "--n", "4", "--steps", "2", "--out", str(out), "--quiet"]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    doc = json.loads(out.read_text())
    group = doc["groups"]["handcrafted"]
    assert len(seen) == 3 and [t["sigma"] for t in group["trials"]] == [0.1, 0.2]  # the two sigmas finished
    assert not group["complete"] and group["lo"] is None and doc["provenance"]["status"] == status
    assert sorted(p.name for p in tmp_path.iterdir()) == [".graphpath.lock", "basin.json"]  # no temporary left


def test_recovery_bar_is_the_same_multiple_of_every_models_own_loss():
    """The absolute bar (max(0.1, 2 x loss)) judged a model at loss 0.02 at 5x its loss and one at 0.2 at
    2x; the relative bar is 2x for both, and floored for a model exact to rounding."""
    from graphpath.analysis.perturb import PerturbConfig
    cfg = PerturbConfig(model=None, threshold_factor=2.0)
    for before in (0.02, 0.2, 1.5):
        assert B.recovery_threshold(cfg, before) / before == pytest.approx(2.0)
    assert B.recovery_threshold(cfg, 0.0) == pytest.approx(2 * B.RECOVERY_FLOOR)


def test_recovery_is_judged_after_the_budget_and_the_control_runs_unperturbed(monkeypatch):
    """A run that starts within its bar but is pushed out of it by the retraining has not recovered
    (the old rule counted any point of the curve, step 0 included); the control is not perturbed."""
    from graphpath.analysis.targets import subjects

    perturbed = []
    cfg = B.PerturbConfig(model=None, kind="all", seeds=[0, 1], steps=2, eval_size=64)
    group = B.Group(subjects("handcrafted", "test", n=4), cfg, "cpu")
    monkeypatch.setattr(B, "perturb_", lambda *a, **k: perturbed.append(a[2]))
    monkeypatch.setattr(B, "recover", lambda *a, **k: [[0, 0.0], [2, 1.0]])  # within at the start, out at the end
    control = group.control()
    assert perturbed == [] and control["sigma"] is None and control["recovered"] == 0
    assert control["within_at_start"] == 2
    t = group.trial(0.1)
    assert perturbed == [0.1, 0.1] and t["recovered"] == 0 and not t["holds"]


def lr_stub(monkeypatch, passing_below: float | None, edge: float = 0.3):
    """Group.trial replaced: the unperturbed control recovers in every draw only at lr <=
    `passing_below` (None: at no lr; at larger lrs one run per model misses), and a perturbed run
    recovers below sigma `edge`. Returns every (sigma, lr) asked for, in order."""
    asked = []

    def trial(self, sigma, bar=None, lr=None):
        asked.append((sigma, lr))
        runs = len(self.members) * len(self.draws)
        if sigma is None:
            ok = passing_below is not None and lr <= passing_below * (1 + 1e-9)
            k = runs if ok else runs - len(self.members)
        else:
            k = runs if sigma < edge else 0
        return {"sigma": sigma, "lr": lr, "recovered": k, "runs": runs, "rate": k / runs, "ci95": wilson(k, runs),
                "holds": k / runs >= 0.5, "within_at_start": runs,
                "by_model": {row["key"]: [k == runs] * len(self.draws) for *_, row in self.members},
                "final": {row["key"]: [0.0] * len(self.draws) for *_, row in self.members}}

    monkeypatch.setattr(B.Group, "trial", trial)
    return asked


def _handcrafted_groups():
    from graphpath.analysis.targets import subjects
    return {"handcrafted": subjects("handcrafted", "test", n=4)}


def test_the_largest_lr_whose_control_recovers_in_every_draw_is_chosen_and_the_bracket_measured_at_it(monkeypatch):
    asked = lr_stub(monkeypatch, passing_below=1e-4)
    cfg = B.PerturbConfig(model=None, kind="all", seeds=[0, 1], steps=2, eval_size=64)
    out = B.measure(_handcrafted_groups(), cfg, B.Search(start=0.1, factor=2, ratio=1.5, budget=6), "cpu", False)
    g = out["handcrafted"]
    controls = [lr for sigma, lr in asked if sigma is None]
    assert controls == [1e-3, 3e-4, 1e-4]  # largest first, stopped at the first that passes
    assert [c["recovered"] for c in g["retraining_lr"]["controls"]] == [1, 1, 2]
    assert g["retraining_lr"]["lr"] == 1e-4 and g["retraining_lr"]["source"] == "calibrated"
    assert g["control"]["lr"] == 1e-4 and g["control"]["recovered"] == g["control"]["runs"]
    sigmas = [(sigma, lr) for sigma, lr in asked if sigma is not None]
    assert sigmas and {lr for _, lr in sigmas} == {1e-4}  # every sigma retrained at the chosen lr
    assert all(t["lr"] == 1e-4 for t in g["trials"])
    assert asked.index(sigmas[0]) > asked.index((None, 1e-4))  # calibrated before any perturbed run
    assert g["lo"]["sigma"] < 0.3 <= g["hi"]["sigma"] and g["complete"] and "no_radius" not in g
    assert "lr 0.0001 calibrated" in B.summary(g) and "lr 0.001: 1/2" in B.summary(g)


def test_a_group_no_lr_keeps_in_its_basin_is_reported_as_such_with_no_radius(monkeypatch):
    asked = lr_stub(monkeypatch, passing_below=None)
    cfg = B.PerturbConfig(model=None, kind="all", seeds=[0, 1], steps=2, eval_size=64)
    g = B.measure(_handcrafted_groups(), cfg, B.Search(), "cpu", False)["handcrafted"]
    assert asked == [(None, lr) for lr in B.LR_GRID]  # every lr tried, no sigma
    assert g["retraining_lr"]["lr"] is None and g["trials"] == [] and g["lo"] is None and g["hi"] is None
    assert g["no_radius"].startswith(B.NO_BUDGET) and g["complete"] and g["censored"] is None
    assert B.summary(g).startswith(B.NO_BUDGET) and "no lr on the grid passes" in B.summary(g)


def test_a_given_lr_is_not_calibrated_and_basin_json_round_trips(monkeypatch, capsys, tmp_path):
    out = tmp_path / "basin.json"
    asked = lr_stub(monkeypatch, passing_below=1e-4)
    assert B.main(["handcrafted", "--n", "4", "--steps", "2", "--lr", "3e-4", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text())
    g = doc["groups"]["handcrafted"]
    assert [lr for sigma, lr in asked if sigma is None] == [3e-4]  # one control, at the given lr
    assert {lr for _, lr in asked} == {3e-4}
    assert g["retraining_lr"]["source"] == "given" and g["retraining_lr"]["lr"] == 3e-4
    assert doc["lr_rule"] == "given" and doc["settings"]["lr"] == 3e-4 and doc["schema"] == B.SCHEMA_VERSION
    assert "lr 0.0003 given (not calibrated" in printed

    asked.clear()
    assert B.main(["handcrafted", "--n", "4", "--steps", "2", "--out", str(out), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    g = doc["groups"]["handcrafted"]
    assert doc["lr_rule"] == B.LR_RULE and doc["lr_grid"] == list(B.LR_GRID) and doc["settings"]["lr"] is None
    record = g["retraining_lr"]
    assert record["lr"] == 1e-4 and record["grid"] == list(B.LR_GRID) and record["rule"] == B.LR_RULE
    assert [(c["lr"], c["recovered"], c["runs"]) for c in record["controls"]] == [(1e-3, 1, 2), (3e-4, 1, 2),
                                                                                  (1e-4, 2, 2)]
    assert json.loads(json.dumps(doc)) == doc and doc["provenance"]["status"] == "finished"
    assert "lr 0.0001 calibrated" in capsys.readouterr().out


def test_a_bad_lr_is_one_line_and_exit_2(capsys, tmp_path):
    code = B.main(["handcrafted", "--n", "4", "--lr", "0", "--out", str(tmp_path / "basin.json"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "lr must be a finite number in (0, 1]" in err and err.count("\n") == 1, err
    assert not (tmp_path / "basin.json").exists()
