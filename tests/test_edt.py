"""experiments.scaling_fit: D_E interpolation and flags, and recovery of known k, alpha, beta."""
import math

import numpy as np
import pytest

from experiments import scaling_fit as sf
from tiny_studies import TINY_DATA, TINY_FINETUNE, TINY_PRETRAIN, assert_bad_study, two_models


def scratch_loss(d, n):
    return 10.0 - 0.5 * math.log(d) - 0.1 * math.log(n)  # linear in log D: interpolation is exact


def synthetic(k, alpha, beta, sizes=(1e4, 3e4, 1e5, 3e5), ladder=(10, 20, 40, 80, 160, 320, 640)):
    scratch = {n: [(d, scratch_loss(d, n)) for d in np.geomspace(1, 1e9, 40)] for n in sizes}
    finetuned = {n: [(d_f, scratch_loss(d_f + k * d_f ** alpha * n ** beta, n)) for d_f in ladder] for n in sizes}
    return scratch, finetuned


@pytest.mark.parametrize("k,alpha,beta", [(20.0, 0.18, 0.38), (3.0, 0.5, 0.2), (1e3, 0.05, 0.1)])
def test_fit_recovers_known_power_law(k, alpha, beta):
    rows = sf.transfer_points(*synthetic(k, alpha, beta))
    result = sf.fit_transfer(rows, bootstrap=200, seed=0)
    fit = result["fit"]
    assert math.isclose(fit["k"]["value"], k, rel_tol=1e-6)
    assert math.isclose(fit["alpha"]["value"], alpha, abs_tol=1e-8)
    assert math.isclose(fit["beta"]["value"], beta, abs_tol=1e-8)
    assert fit["alpha"]["ci95"][0] <= alpha <= fit["alpha"]["ci95"][1]
    assert result["points"] == 4 * 4  # D_F <= median of the 7-rung ladder (80): 4 rungs x 4 sizes


def test_fit_with_noise_is_close_with_a_ci():
    rows = sf.transfer_points(*synthetic(20.0, 0.3, 0.4, ladder=tuple(np.geomspace(10, 1000, 12))))
    rng = np.random.default_rng(1)
    for row in rows:
        row["D_T"] *= math.exp(rng.normal(0, 0.05))
    fit = sf.fit_transfer(rows, bootstrap=500, seed=2)["fit"]
    for name, truth in (("alpha", 0.3), ("beta", 0.4)):
        low, high = fit[name]["ci95"]
        assert low < fit[name]["value"] < high and 0 < high - low < 0.2
        assert abs(fit[name]["value"] - truth) < 0.05


def test_effective_data_flags_and_ossification():
    d = [10, 100, 1000]
    loss = [3.0, 2.0, 1.0]
    assert sf.effective_data(d, loss, 1.5) == (pytest.approx(10 ** 2.5), "interpolated")
    value, flag = sf.effective_data(d, loss, 0.5)
    assert flag == "extrapolated-high" and value == pytest.approx(10 ** 3.5)
    assert sf.effective_data(d, loss, 3.5)[1] == "extrapolated-low"
    assert sf.effective_data(d, loss, -5.0) == (None, "out-of-range")  # 10^8: beyond 10x the ladder
    # a noisy bump is removed by the running minimum: 1000 -> 2.5 counts as 2.0
    assert sf.monotone_curve(d, [3.0, 2.0, 2.5])[1].tolist() == [3.0, 2.0, 2.0]
    rows = sf.transfer_points({1: list(zip(d, loss))}, {1: [(100, 2.5)]})
    assert rows[0]["ossified"] and rows[0]["D_T"] == pytest.approx(10 ** 1.5 - 100)
    assert rows[0]["multiplier"] == pytest.approx(10 ** 1.5 / 100)
    assert sf.fit_transfer(rows)["fit"] is None  # negative D_T is kept but never fitted


def test_fit_needs_both_n_and_d_f_to_vary():
    scratch, finetuned = synthetic(20.0, 0.2, 0.3, sizes=(1e4,))
    assert sf.fit_transfer(sf.transfer_points(scratch, finetuned))["fit"] is None


TINY_STUDY = """
name = "edt-tiny"
seeds = [0, 1]
data_sizes = [32, 64]
scratch_extra = [128]
bootstrap = 20
""" + TINY_DATA + two_models() + TINY_PRETRAIN + TINY_FINETUNE


@pytest.mark.parametrize("edit,needle", [
    (("data_sizes = [32, 64]", "data_sizes = [8, 64]"), "below the smallest sensible"),
    (("seeds = [0, 1]", "seeds = []"), "seeds must be"),
    (("bootstrap = 20", "bootstrap = 20\nwhatever = 1"), "unknown edt study key"),
    (("lr = 1e-3", "lr = 1e-3\nmode = \"sideways\""), "mode must be one of"),
])
def test_bad_study_is_one_line_exit_2(tmp_path, capsys, edit, needle):
    from experiments.edt import main

    assert_bad_study(main, TINY_STUDY.replace(*edit), tmp_path, capsys, needle)


@pytest.mark.slow
def test_edt_study_end_to_end(tmp_path):
    import json

    from experiments.edt import main
    from graphpath.sweeps.runner import best_eval_loss

    path = tmp_path / "study.toml"
    path.write_text(TINY_STUDY)
    out = tmp_path / "out"
    assert main(["--config", str(path), "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "edt.json").read_text())
    assert len(doc["rows"]) == 2 * 2 * 2  # seeds x models x D_F rungs
    row = doc["rows"][0]
    job = out / "jobs" / f"seed{row['seed']}-model{row['model']}" / f"finetuned-D{row['D_F']}"
    assert row["loss_ft"] == best_eval_loss(job, "finetune")
    scratch = [(d, best_eval_loss(out / "jobs" / f"seed{row['seed']}-model{row['model']}" / f"scratch-D{d}", "finetune"))
               for d in (32, 64, 128)]
    from experiments.scaling_fit import effective_data

    assert row["D_E"] == pytest.approx(effective_data(*zip(*scratch), row["loss_ft"])[0])
    assert all((out / "figures" / f"edt-{kind}.html").is_file() for kind in ("loss", "transfer", "multiplier"))
    before = (job / "metrics.jsonl").read_bytes()
    assert main(["--config", str(path), "--out", str(out), "--quiet"]) == 0  # finished jobs are skipped
    assert (job / "metrics.jsonl").read_bytes() == before
    path.write_text(TINY_STUDY.replace("lr = 1e-3", "lr = 2e-3"))
    assert main(["--config", str(path), "--out", str(out), "--quiet"]) == 2  # never mixes two configs


@pytest.mark.parametrize("preset", ["edt.toml", "edt-gpu.toml"])
def test_presets_load(preset):
    from pathlib import Path

    from experiments.edt import load_study

    study = load_study(Path(__file__).resolve().parents[1] / "experiments" / preset)
    assert len(study["models"]) >= 3 and len(study["seeds"]) >= 2 and len(study["data_sizes"]) >= 3
