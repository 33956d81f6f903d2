"""`graphpath.analysis.basin`: the bisection brackets a known boundary, respects its budget, CLI input checks."""
from __future__ import annotations

import json
import math

import pytest

from graphpath.analysis import basin as B


def boundary_at(edge: float, calls: list):
    def succeeds(sigma):
        calls.append(sigma)
        return {"sigma": sigma, "success": sigma < edge}
    return succeeds


@pytest.mark.parametrize("edge", [0.0037, 0.05, 0.37, 0.99, 4.2])
def test_bracket_closes_around_a_known_boundary(edge):
    calls = []
    found = B.bracket(boundary_at(edge, calls), lo=0.01, hi=1.0, budget=20, ratio=1.2)
    assert found["closed"] and found["lo"] < edge <= found["hi"] and found["hi"] / found["lo"] <= 1.2
    assert [t["sigma"] for t in found["trials"]] == calls and len(calls) <= 20
    assert all(t["success"] == (t["sigma"] < edge) for t in found["trials"])


def test_bracket_stops_at_its_budget_with_an_open_or_wide_interval():
    calls = []
    found = B.bracket(boundary_at(0.37, calls), lo=0.01, hi=1.0, budget=3, ratio=1.01)
    assert len(calls) == 3 and not found["closed"]
    assert found["lo"] < 0.37 <= found["hi"]
    calls = []
    never = B.bracket(boundary_at(1e-9, calls), lo=0.01, hi=1.0, budget=10, ratio=1.5, expand=2)
    assert never["lo"] is None and not never["closed"] and math.isclose(min(calls), 1e-4)


def test_bracket_rejects_bad_bounds():
    with pytest.raises(B.PerturbError, match="0 < lo < hi"):
        B.bracket(boundary_at(0.3, []), lo=1.0, hi=0.5)


@pytest.mark.parametrize("args,needle", [
    (["nowhere"], "unknown model"),
    (["handcrafted"], "--n in [3, 64]"),
    (["handcrafted", "--n", "4", "--lo", "2", "--hi", "1"], "0 < lo < hi"),
    (["handcrafted", "--n", "4", "--budget", "x"], "invalid int"),
    (["EMPTY"], "no checkpoint"),
    (["handcrafted", "--n", "4", "--config", "GROUP"], "matches no parameter"),  # an unknown layer
])
def test_bad_input_exits_2(args, needle, capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "group.toml").write_text('[perturb]\nkind = "group"\ngroup = "blocks.99.*"\nsteps = 2\nseeds = [0]\n')
    args = [{"EMPTY": str(tmp_path / "empty"), "GROUP": str(tmp_path / "group.toml")}.get(a, a) for a in args]
    code = B.main(args + ["--out", str(tmp_path / "basin.json"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "basin.json").exists()


@pytest.mark.slow
def test_cli_handcrafted_end_to_end(capsys, tmp_path):
    out = tmp_path / "basin.json"
    code = B.main(["handcrafted", "--n", "4", "--steps", "4", "--seeds", "0", "--budget", "3", "--lo", "0.01",
                   "--hi", "10", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert set(doc["models"]) == {"handcrafted", "handcrafted-soft"}
    for result in doc["models"].values():
        assert 1 <= len(result["trials"]) <= 3 and result["loss_before"] < 1e-3
        assert ("note" in result) == (result["loss_before"] > doc["settings"]["threshold"])
        for t in result["trials"]:
            assert t["success"] == (sum(t["recovered"]) >= len(t["recovered"]) / 2)
        succeeded = [t["sigma"] for t in result["trials"] if t["success"]]
        failed = [t["sigma"] for t in result["trials"] if not t["success"]]
        # the bracket is the largest sigma that recovered and the smallest that did not (None: none tried)
        assert result["lo"] == (max(succeeded) if succeeded else None)
        assert result["hi"] == (min(failed) if failed else None)
