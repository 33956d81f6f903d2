"""The issue's bad input, for every analysis command: a run without the needed checkpoint, a model
outside the range its measurement is defined in, a calibration that diverges. Each is one line on
stderr and exit 2; nothing is written when nothing was measured, and what was measured is kept."""
from __future__ import annotations

import json

import pytest

from graphpath.analysis import basin, interpret, llc_run, perturb
from test_perturb import _group_of_seeds


def _tools(group, out):
    return {
        "basin": lambda stage: basin.main([str(group), "--stage", stage, "--steps", "1", "--budget", "2",
                                           "--out", str(out / "basin.json"), "--quiet"]),
        "llc": lambda stage: llc_run.main([str(group), "--stage", stage, "--out", str(out / "llc.json"), "--quiet"]),
        "interpret": lambda stage: interpret.main([str(group), "--stage", stage, "--no-figures",
                                                   "--out", str(out / "interpret.json")]),
        "perturb": lambda stage: perturb.main(["--model", str(group), "--stage", stage, "--steps", "1",
                                               "--no-figures", "--out", str(out / "perturb.json"), "--quiet"]),
    }


@pytest.mark.parametrize("tool", ["basin", "llc", "interpret", "perturb"])
def test_a_run_without_the_needed_checkpoint_is_one_line_exit_2_and_nothing_written(tool, capsys, tmp_path):
    group = _group_of_seeds(tmp_path / "group")  # pre-trained only: no fine-tuned checkpoint
    out = tmp_path / "out"
    assert _tools(group, out)[tool]("finetune") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no finetune checkpoint" in err, err
    assert not out.exists()  # refused before any folder was made


def test_models_outside_the_basin_s_range_are_refused_in_one_line_and_recorded(capsys, tmp_path):
    group = _group_of_seeds(tmp_path / "group")  # untrained: R^2 <= 0.5 on their own data
    out = tmp_path / "out"
    assert _tools(group, out)["basin"]("pretrain") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 model(s) refused" in err and "R^2 <= 0.5" in err, err
    doc = json.loads((out / "basin.json").read_text())
    refused = doc["groups"]["pretrain"]["refused"]
    assert [r["key"] for r in refused] == ["pretrain/seed-0", "pretrain/seed-1"]
    for r in refused:  # the measurement that refused it is kept: its own loss against its label variance
        assert r["loss_before"] > 0 and "R^2 <= 0.5" in r["refused"]
    assert doc["groups"]["pretrain"]["trials"] == [] and doc["provenance"]["status"] == "finished"


def test_a_calibration_that_diverges_keeps_the_rows_it_measured(capsys, tmp_path):
    group = _group_of_seeds(tmp_path / "group", seeds=(0,))
    out = tmp_path / "llc.json"
    code = llc_run.main([str(group), "--eps", "1e-9", "10", "--gamma", "1", "--chains", "2", "--steps", "8",
                         "--burn-in", "2", "--data-size", "64", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "calibration failed" in err, err
    rows = json.loads(out.read_text())["calibration"]["rows"]
    assert [r["eps"] for r in rows] == [1e-9, 10.0]  # the row measured before the divergence is kept
    assert rows[0]["checks"]["whitened_regular"]["llc"] is not None and rows[1]["checks"]["own_features"]["diverged"]
