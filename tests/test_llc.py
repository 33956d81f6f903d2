"""`graphpath.analysis.llc`: the SGLD estimator recovers a regular model's LLC (d/2); bad input exits 2."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from graphpath.analysis import llc as L


def regression(d: int, n: int, seed: int):
    """A linear model at its least-squares fit; loss = per-example Gaussian NLL (unit noise)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = x @ torch.randn(d, generator=g) + torch.randn(n, generator=g)
    model = nn.Linear(d, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.linalg.lstsq(x, y[:, None]).solution.T)

    def loss_on(m, rows):
        return 0.5 * (m(x[rows]).squeeze(-1) - y[rows]).pow(2).mean()
    return model, loss_on


@pytest.mark.parametrize("d", [2, 6])
def test_regular_model_has_llc_half_its_dimension(d):
    n = 2000
    model, loss_on = regression(d, n, seed=d)
    start = model.weight.detach().clone()
    cfg = L.LLCConfig(eps=2e-4, gamma=1.0, chains=4, steps=1500, burn_in=300, batch_size=n, seed=1)
    est = L.estimate_llc(model, loss_on, n, cfg)
    assert est["ok"] and est["nbeta"] == pytest.approx(n / torch.log(torch.tensor(float(n))).item())
    assert est["llc"] == pytest.approx(d / 2, rel=0.2), est["llc"]
    assert 0 < est["below_init"] < 0.5  # samples sit above the minimum, not below it
    assert torch.equal(model.weight.detach(), start)  # chains leave w* untouched


def test_diverging_setting_raises_and_calibration_skips_it():
    n = 500
    model, loss_on = regression(3, n, seed=0)
    with pytest.raises(L.LLCError, match="diverged"):
        L.estimate_llc(model, loss_on, n, L.LLCConfig(eps=10.0, gamma=1.0, chains=1, steps=200, burn_in=10))
    base = L.LLCConfig(chains=2, steps=600, burn_in=200, batch_size=n, seed=0)
    chosen, rows = L.calibrate(model, loss_on, n, base, [10.0, 1e-3], [1.0])
    assert [r["diverged"] for r in rows] == [True, False] and chosen["settings"]["eps"] == 1e-3
    assert rows[1]["llc"] == pytest.approx(1.5, rel=0.3) and chosen["llc"] == rows[1]["llc"]
    assert L.calibrate(model, loss_on, n, base, [10.0], [1.0]) == (None, [{**rows[0]}])


@pytest.mark.parametrize("args,needle", [
    (["nowhere"], "unknown model"),
    (["handcrafted"], "--n in [3, 64]"),
    (["handcrafted", "--n", "5", "--eps", "-1"], "eps must be"),
    (["handcrafted", "--n", "5", "--burn-in", "400"], "burn_in"),
    (["handcrafted", "--n", "5", "--steps", "x"], "invalid int"),
])
def test_bad_input_exits_2(args, needle, capsys, tmp_path):
    code = L.main(args + ["--out", str(tmp_path / "llc.json"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "llc.json").exists()


def test_run_dir_without_checkpoints_exits_2(capsys, tmp_path):
    (tmp_path / "run").mkdir()
    code = L.main([str(tmp_path / "run"), "--quiet"])
    assert code == 2 and "no checkpoint" in capsys.readouterr().err


def test_diverging_setting_on_the_command_line_exits_2(capsys, tmp_path):
    out = tmp_path / "llc.json"
    code = L.main(["handcrafted", "--n", "4", "--eps", "10", "--gamma", "1", "--chains", "1", "--steps", "5",
                   "--burn-in", "1", "--data-size", "64", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "diverged" in err and err.count("\n") == 1, err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == [".graphpath.lock"]  # no temporary left, only the (free) lock


@pytest.mark.slow
def test_cli_handcrafted_records_both_hand_built_models_and_the_rule(capsys, tmp_path):
    import json

    out = tmp_path / "llc.json"
    code = L.main(["handcrafted", "--n", "4", "--eps", "1e-5", "10", "--gamma", "100", "--chains", "2",
                   "--steps", "6", "--burn-in", "2", "--data-size", "64", "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert set(doc["models"]) == {"handcrafted", "handcrafted-soft"} and doc["calibration_rule"] == L.CALIBRATION_RULE
    soft = doc["models"]["handcrafted-soft"]
    assert soft["target"]["beta_hop"] == 5.0 and [r["diverged"] for r in soft["calibration"]] == [False, True]
    for result in doc["models"].values():
        est = result["estimate"]
        assert est is None or (est["settings"]["eps"] == 1e-5 and len(est["chains"]) == 2)
