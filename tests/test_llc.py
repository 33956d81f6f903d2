"""`graphpath.analysis.llc`, `llc_known`, `mcmc` and `llc_run`: the estimator against models of known LLC,
the chain diagnostics against simulated chains, the calibration rule, and bad input (exit 2)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from graphpath.analysis import llc as L
from graphpath.analysis import llc_known as K
from graphpath.analysis import llc_run as R
from graphpath.analysis import mcmc


def features(n: int, d: int, seed: int, noise: float = 0.3):
    """Production-like data: correlated features, labels linear in them plus noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) @ (torch.eye(d) + 0.3 * torch.randn(d, d, generator=g))
    y = x @ torch.randn(d, generator=g) + 2.0 + noise * torch.randn(n, generator=g)
    return x, y


def test_known_models_share_one_function_and_the_degenerate_one_has_flat_directions():
    x, y = features(500, 5, seed=0)
    known = K.known_models(x, y, hidden=3)
    (regular, truth), (degenerate, truth2) = known["regular"], known["degenerate"]
    assert truth == truth2 == 3.0  # rank of [x, 1] / 2
    with torch.no_grad():
        assert torch.allclose(regular(known["x"]), degenerate(known["x"]), atol=1e-4)
        loss = K.loss_on(known["x"], known["y"])
        rows = torch.arange(500)
        before = loss(degenerate, rows).item()
        degenerate.a.mul_(2.0)  # the rescaling (c A, b / c) is exactly flat
        degenerate.b.div_(2.0)
        assert loss(degenerate, rows).item() == pytest.approx(before, rel=1e-5)
        degenerate.b.add_(0.5)  # a direction that is not flat
        assert loss(degenerate, rows).item() > before * 1.5


def test_localised_truth_is_d_over_2_without_localisation_and_less_with_it():
    x, _ = features(400, 4, seed=1)
    xb = K.with_bias(x).float()
    assert K.localised_truth(xb, nbeta=1e6, gamma=1e-6) == pytest.approx(2.5, rel=1e-4)
    assert K.localised_truth(xb, nbeta=10.0, gamma=100.0) < 1.0


def test_mixing_reports_the_hessian_spectrum_and_the_stable_step_sgld_obeys():
    x, _ = features(300, 3, seed=4)
    xb = K.with_bias(x).float()
    mix = K.mixing(xb, nbeta=50.0, gammas=[1.0, 100.0])
    h = np.linalg.eigvalsh(2 * xb.double().numpy().T @ xb.double().numpy() / 300)
    assert mix["d"] == 4 and mix["hessian_max"] == pytest.approx(h.max()) and mix["hessian_min"] == pytest.approx(h.min())
    assert [r["localised_truth"] for r in mix["by_gamma"]] == [K.localised_truth(xb, 50.0, g) for g in (1.0, 100.0)]
    # one constant feature: every minibatch has the Hessian 2 c^2, so the stability bound is exact
    c, nbeta, gamma = 3.0, 20.0, 5.0
    ones = torch.full((64, 1), c)
    bound = K.mixing(ones, nbeta, [gamma])["by_gamma"][0]
    assert bound["eps_stable"] == pytest.approx(4 / (nbeta * 2 * c * c + gamma))
    assert bound["relax_steps"] == pytest.approx(2 / (bound["eps_stable"] / 2 * (nbeta * 2 * c * c + gamma)))
    loss = K.loss_on(ones, torch.full((64,), 2 * c))
    for share, diverges in ((0.8, False), (1.2, True)):
        cfg = L.LLCConfig(eps=share * bound["eps_stable"], gamma=gamma, nbeta=nbeta, chains=2, steps=400, burn_in=0)
        model = K.Regular(torch.tensor([2.0]))  # the minimum: w * c = 2 c
        run = lambda: L.sgld_chain(model, loss, 64, cfg, nbeta, torch.Generator().manual_seed(0),  # noqa: E731
                                   torch.Generator().manual_seed(1))
        if diverges:
            with pytest.raises(L.LLCError, match="diverged"):
                run()
        else:
            assert all(math.isfinite(v) for v in run())


@pytest.mark.parametrize("name", ["regular", "degenerate"])
def test_estimator_reads_the_known_llc_at_minibatch_settings(name):
    """d/2 for both: the degenerate model's 3 (D + 2) - (D + 1) flat directions are not counted."""
    x, y = features(2000, 5, seed=2)
    known = K.known_models(x, y, hidden=3)
    model, truth = known[name]
    cfg = L.LLCConfig(eps=1e-4, gamma=1.0, chains=4, steps=1000, burn_in=300, batch_size=64, seed=1)
    est = L.estimate_llc(model, K.loss_on(known["x"], known["y"]), 2000, cfg)
    assert est["llc"] == pytest.approx(truth, rel=0.2), est["llc"]
    assert est["ok"], est["failed"]
    params = sum(p.numel() for p in model.parameters())
    assert est["llc"] < 0.75 * params / 2 or name == "regular"


def test_a_model_off_its_minimum_is_refused():
    x, y = features(1000, 4, seed=3)
    known = K.known_models(x, y)
    model, _ = known["regular"]
    with torch.no_grad():
        model.w.add_(0.5)  # far from the least-squares fit: SGLD descends, the LLC goes negative
    cfg = L.LLCConfig(eps=3e-4, gamma=1.0, chains=4, steps=300, burn_in=100, batch_size=64)
    est = L.estimate_llc(model, K.loss_on(known["x"], known["y"]), 1000, cfg)
    assert not est["ok"] and est["llc"] < 0 and est["below_init"] > 0.5
    assert any("not a local minimum" in reason for reason in est["failed"])


def test_diverging_setting_raises():
    x, y = features(300, 3, seed=4)
    known = K.known_models(x, y)
    with pytest.raises(L.LLCError, match="diverged"):
        L.estimate_llc(known["regular"][0], K.loss_on(known["x"], known["y"]), 300,
                       L.LLCConfig(eps=10.0, gamma=1.0, chains=2, steps=50, burn_in=10))


def collinear(n: int, seed: int):
    """Nearly collinear features like the read-out's: 6 columns, two near copies of others, one tiny."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 4, generator=g) * torch.tensor([3.0, 1.0, 0.3, 0.1])
    x = torch.cat([base, base[:, :1] + 1e-3 * torch.randn(n, 1, generator=g), 1e-7 * torch.randn(n, 1, generator=g)], 1)
    y = base @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 2.0 + 0.3 * torch.randn(n, generator=g)
    return x, y


def test_whitening_makes_the_design_orthonormal_and_drops_near_null_directions():
    x, y = collinear(1000, seed=0)
    xb = K.with_bias(x)
    z = K.whiten(xb)
    assert z.shape == (1000, 6)  # 7 columns, the 1e-7 one (variance 1e-14 of the largest) dropped
    assert torch.allclose(z.T @ z / 1000, torch.eye(6, dtype=torch.float64), atol=1e-8)
    h = K.hessian_eigenvalues(xb)
    assert h.max() / h.min() > 1e8  # the raw design is as ill-conditioned as the read-out's
    known = K.known_models(x, y)
    assert known["regular"][1] == known["degenerate"][1] == 3.0 and known["x"].shape == (1000, 6)
    assert K.known_models(x, y, whitened=False)["regular"][1] == 3.5  # rank 7: the raw design counts it


def test_chain_expectation_tends_to_the_localised_truth_and_flags_instability():
    x, _ = collinear(500, seed=1)
    xb = K.with_bias(x)
    h_max = float(K.hessian_eigenvalues(xb).max())
    truth = K.localised_truth(xb, nbeta=50.0, gamma=5.0)
    assert K.chain_expectation(xb, 50.0, 5.0, 1e-4, 40000, 30000) == pytest.approx(truth, rel=0.02)
    short = K.chain_expectation(xb, 50.0, 5.0, 1e-4, 200, 100)
    assert short < 0.8 * truth  # 200 steps do not relax the flattest seen directions
    assert K.chain_expectation(xb, 50.0, 5.0, 4.1 / (50 * h_max + 5), 10, 0) == float("inf")


def test_default_nbeta_is_devinterps_for_the_sample_size():
    utils = pytest.importorskip("devinterp.utils")
    assert L.default_nbeta(2048) == pytest.approx(utils.default_nbeta(2048))


def test_sampler_reads_the_exact_expectation_on_an_ill_conditioned_quadratic_and_k_over_2_when_whitened():
    """The calibration's checks (a) and (c) on a synthetic quadratic: on the raw collinear design the
    SGLD reading is the exact expectation of its chain (well below rank / 2: localisation and short
    chains), on the whitened one it is K / 2, each within the calibration's tolerance."""
    x, y = collinear(2000, seed=2)
    cfg = L.LLCConfig(eps=1e-4, gamma=1.0, chains=4, steps=800, burn_in=100, batch_size=64, seed=3)
    row = L.calibration_row(x, y, cfg)
    raw, white = row["checks"]["own_features"], row["checks"]["whitened_regular"]
    assert raw["llc"] == pytest.approx(raw["chain_expected"], rel=L.SAMPLER_TOLERANCE), raw
    assert raw["chain_expected"] < 0.8 * raw["rank_half"] and raw["share_seen"] < 1
    assert white["llc"] == pytest.approx(3.0, rel=L.KNOWN_TOLERANCE), white
    assert raw["passes"] and white["passes"], row


def test_calibration_rule_picks_a_passing_setting_and_reports_failing_ones():
    x, y = collinear(2000, seed=2)
    base = L.LLCConfig(chains=4, steps=800, burn_in=100, batch_size=64, seed=3)
    chosen, rows = L.calibrate(x, y, base, [1e-4, 10.0], [1.0, 1e4])
    by = {(r["eps"], r["gamma"]): r for r in rows}
    assert by[(10.0, 1.0)]["checks"]["whitened_regular"]["diverged"] and not by[(10.0, 1.0)]["passes"]
    strong = by[(1e-4, 1e4)]  # localisation hides every direction: the estimate is far below K / 2
    assert not strong["passes"] and strong["checks"]["own_features"]["localised_truth"] < 0.5
    assert not strong["checks"]["whitened_regular"]["near_truth"]
    assert by[(1e-4, 1.0)]["passes"], by[(1e-4, 1.0)]
    assert (chosen.eps, chosen.gamma) == (1e-4, 1.0)
    assert L.calibrate(x, y, base, [10.0], [1.0])[0] is None


def test_choice_is_the_smallest_passing_gamma_then_the_largest_eps():
    rows = [{"eps": e, "gamma": g, "passes": p} for e, g, p in
            [(1e-4, 1.0, False), (3e-5, 10.0, True), (1e-4, 10.0, True), (1e-4, 100.0, True)]]
    assert (L.choose(rows)["eps"], L.choose(rows)["gamma"]) == (1e-4, 10.0)
    assert L.choose([dict(r, passes=False) for r in rows]) is None


def test_chain_diagnostics_against_simulated_chains():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(4, 2000))
    assert mcmc.split_rhat(iid) == pytest.approx(1.0, abs=0.01)
    assert mcmc.ess(iid) == pytest.approx(8000, rel=0.15)
    rho, ar = 0.9, np.zeros((4, 5000))
    noise = rng.normal(size=(4, 5000))
    for t in range(1, 5000):
        ar[:, t] = rho * ar[:, t - 1] + noise[:, t]
    assert mcmc.ess(ar) == pytest.approx(20000 * (1 - rho) / (1 + rho), rel=0.2)  # AR(1): N (1 - rho) / (1 + rho)
    assert mcmc.mcse_mean(ar) == pytest.approx(ar.std() / math.sqrt(20000 * (1 - rho) / (1 + rho)), rel=0.2)
    apart = iid.copy()
    apart[0] += 2.0  # one chain two standard deviations away
    assert mcmc.split_rhat(apart) > 1.1
    trend = np.cumsum(np.full((4, 400), 0.01), axis=1) + rng.normal(scale=0.1, size=(4, 400))
    assert mcmc.split_rhat(trend) > 1.1  # still climbing: split halves disagree
    with pytest.raises(ValueError):
        mcmc.ess(iid[:1])


@pytest.mark.parametrize("args,needle", [
    (["nowhere"], "no run directory"),
    (["handcrafted"], "--n in [3, 64]"),
    (["handcrafted", "--n", "5", "--eps", "-1"], "eps must be"),
    (["handcrafted", "--n", "5", "--burn-in", "800"], "burn_in"),
    (["handcrafted", "--n", "5", "--chains", "1"], "chains must be >= 2"),
    (["handcrafted", "--n", "5", "--steps", "x"], "invalid int"),
    (["handcrafted", "--n", "5", "--data", "nope"], "unknown data set"),
])
def test_bad_input_exits_2(args, needle, capsys, tmp_path):
    code = R.main(args + ["--out", str(tmp_path / "llc.json"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "llc.json").exists()


def test_run_dir_without_checkpoints_exits_2(capsys, tmp_path):
    (tmp_path / "run").mkdir()
    code = R.main([str(tmp_path / "run"), "--quiet"])
    assert code == 2 and "not a run directory" in capsys.readouterr().err


def test_a_calibration_that_fails_every_setting_keeps_its_rows_and_exits_2(capsys, tmp_path):
    out = tmp_path / "llc.json"
    code = R.main(["handcrafted", "--n", "4", "--eps", "10", "1e-9", "--gamma", "1", "--chains", "2", "--steps", "8",
                   "--burn-in", "2", "--data-size", "64", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "calibration failed" in err and err.count("\n") == 1, err
    doc = json.loads(out.read_text())
    rows = doc["calibration"]["rows"]
    assert [r["eps"] for r in rows] == [10.0, 1e-9] and rows[0]["checks"]["own_features"]["diverged"]
    assert rows[1]["checks"]["whitened_regular"]["llc"] is not None and not rows[1]["passes"]
    assert "own_features diverged" in err and "whitened_regular" in err  # the figures, in the one line
    assert doc["calibration"]["chosen"] is None and doc["models"] == []
    assert doc["production"]["eps"] is None and doc["production"]["gamma"] is None  # nothing ran at a setting
    assert doc["provenance"]["status"] == "failed: calibration failed"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".graphpath.lock", "llc.json"]  # no temporary left


def test_calibration_may_fail_records_the_failure_and_exits_0(capsys, tmp_path):
    """The main job's form: a calibration where no setting passes is a measured outcome (llc.json
    says so, the page says no LLC is reported), not an error that stops the chain of commands."""
    out = tmp_path / "llc.json"
    code = R.main(["handcrafted", "--n", "4", "--eps", "10", "1e-9", "--gamma", "1", "--chains", "2", "--steps", "8",
                   "--burn-in", "2", "--data-size", "64", "--quiet", "--out", str(out), "--calibration-may-fail"])
    err = capsys.readouterr().err
    assert code == 0 and err.count("\n") == 1 and "no LLC reported: calibration failed" in err, err
    doc = json.loads(out.read_text())
    assert doc["calibration"]["chosen"] is None and doc["models"] == []
    assert doc["provenance"]["status"] == "failed: calibration failed"


def test_chain_expectation_adds_the_minibatch_gradient_noise_at_the_minimum():
    """One constant feature c: h = 2 c^2, the batch gradient at w* has variance 4 / B * mean r^2 c^2,
    so the stationary variance is (eps + (eps nbeta / 2)^2 * that) / (1 - (1 - eps a / 2)^2)."""
    c, n, nbeta, gamma, eps, batch = 2.0, 400, 30.0, 3.0, 1e-3, 16
    x = torch.full((n, 1), c, dtype=torch.float64)
    r = torch.tensor([0.5, -0.5] * (n // 2), dtype=torch.float64)  # mean r = 0: w* is the least-squares fit
    h = 2 * c * c
    a = nbeta * h + gamma
    extra = (eps * nbeta / 2) ** 2 * 4 / batch * (r.pow(2).mean().item() * c * c)
    stationary = nbeta * h / 2 * (eps + extra) / (1 - (1 - eps * a / 2) ** 2)
    got = K.chain_expectation(x, nbeta, gamma, eps, 4000, 3000, residuals=r, batch_size=batch)
    assert got == pytest.approx(stationary, rel=1e-6)
    assert K.chain_expectation(x, nbeta, gamma, eps, 4000, 3000) < got  # full batch: no gradient noise


@pytest.mark.slow
def test_models_side_by_side_give_the_same_llc_json_as_one_after_another(tmp_path, monkeypatch):
    """--workers 2 runs each model in its own process; the chains are seeded from the setting, so
    every model's estimate is the same number as in this process (only the order of finishing differs)."""
    from test_perturb import _group_of_seeds

    group = _group_of_seeds(tmp_path / "group")
    setting = L.LLCConfig(eps=1e-5, gamma=100.0, chains=2, steps=12, burn_in=2, batch_size=16)
    monkeypatch.setattr(R, "calibrate", lambda *args, **kwargs: (setting, []))  # the calibration is not under test
    docs = {}
    for workers in (1, 2):
        out = tmp_path / f"llc-{workers}.json"
        assert R.main([str(group), "--stage", "pretrain", "--workers", str(workers), "--data-size", "64",
                       "--quiet", "--out", str(out)]) == 0
        docs[workers] = json.loads(out.read_text())
    one, two = ([(m["key"], m["estimate"]) for m in docs[w]["models"]] for w in (1, 2))
    assert [key for key, _ in one] == ["pretrain/seed-0", "pretrain/seed-1"] == [key for key, _ in two]
    for (_, a), (_, b) in zip(one, two):
        assert a["llc_per_chain"] == b["llc_per_chain"] and a["init_loss"] == b["init_loss"]
    assert docs[1]["groups"] == docs[2]["groups"]
    assert (docs[1]["production"]["eps"], docs[1]["production"]["gamma"]) == (1e-5, 100.0)  # the chosen setting


def test_workers_below_one_exit_2(capsys, tmp_path):
    code = R.main(["handcrafted", "--n", "5", "--workers", "0", "--out", str(tmp_path / "llc.json"), "--quiet"])
    assert code == 2 and "--workers must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "llc.json").exists()


def test_diagnostic_rule_holds_vehtaris_thresholds():
    """R-hat <= 1.01 and bulk ESS >= 400 (Vehtari et al. 2021): near-agreeing chains and short ones fail."""
    rng = np.random.default_rng(1)
    good = 1.0 + 0.01 * rng.normal(size=(4, 700))
    assert L.diagnose(good, 0.99, 100.0)["ok"]
    shifted = good.copy()
    shifted[0] += 0.005  # R-hat about 1.02: passed the old 1.1, fails 1.01
    assert 1.01 < mcmc.split_rhat(shifted) < 1.1
    assert any("R-hat" in r for r in L.diagnose(shifted, 0.99, 100.0)["failed"])
    short = good[:, :60]  # ESS about 240: passed the old 40, fails 400
    assert 40 < mcmc.ess(short) < 400
    assert any("ESS" in r for r in L.diagnose(short, 0.99, 100.0)["failed"])
