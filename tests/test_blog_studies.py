"""The page's studies section: shown only when the run directory holds studies/*/<kind>.json,
with the numbers the study wrote; a missing kind says how to add it."""
import json
import math
import shutil
from pathlib import Path

import blog
from blog.values import fmt
from tiny_studies import TINY_DATA, two_models

FIXTURE = Path(__file__).parent / "fixtures" / "run_fixture"
EDT_STUDY = """
seeds = [0, 1]
data_sizes = [32, 64, 128]
scratch_extra = [4096]
bootstrap = 50
""" + TINY_DATA + two_models(second_layers=2)


def edt_doc(tmp_path):
    from experiments.edt import analyse, load_study

    (tmp_path / "edt.toml").write_text(EDT_STUDY)
    study = load_study(tmp_path / "edt.toml")
    losses = {}
    for seed in (0, 1):
        for m, n in enumerate((1e3, 1e4)):
            for d in (32, 64, 128, 4096):
                losses[(seed, m, "scratch", d)] = 5 - 0.5 * math.log(d) - 0.01 * seed
            for d in (32, 64, 128):
                losses[(seed, m, "finetuned", d)] = 5 - 0.5 * math.log(d + 3 * d ** 0.5 * (m + 1)) - 0.01 * seed
    return analyse(study, losses, 50)


def test_no_studies_no_section(tmp_path):
    html = blog.render(FIXTURE, tmp_path / "out").read_text()
    assert "Beyond the paper" not in html


def test_edt_section_shows_the_study_numbers(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    doc = edt_doc(tmp_path)
    (run / "studies" / "edt").mkdir(parents=True)
    (run / "studies" / "edt" / "edt.json").write_text(json.dumps(doc))
    html = blog.render(run, tmp_path / "out").read_text()
    assert "Beyond the paper" in html and "Effective data transferred per model size" in html
    fit = doc["fit"]["fit"]
    assert fit is not None and f"α = {fmt(fit['alpha']['value'])}" in html
    first = doc["summary"][0]
    assert fmt(first["D_T"]["mean"]) in html
    assert "experiments.partial --out RUN_DIR/studies/partial" in html  # the missing kinds say how
    assert "experiments.mixture --out RUN_DIR/studies/mixture" in html
    assert "edt-loss-plot" in html and "edt-transfer-plot" in html  # the study's figures are on the page


def partial_doc():
    from graphpath.evaluation.scores import ci_summary as mean_ci

    sets = ["finetune", "test-onpath-large", "shift-tree"]
    variants = []
    for body in ("pretrained", "random"):
        for mode, rank, trainable in (("full", None, 5000), ("readout", None, 17), ("lora", 2, 600)):
            base = 0.05 if body == "pretrained" else 0.8
            losses = [base * (1 + 1000 / trainable) * (1 + 0.1 * s) for s in range(3)]
            variants.append({"name": f"{mode}{'' if rank is None else f'-r{rank}'}-{body}", "mode": mode, "rank": rank,
                             "body": body, "trainable": trainable, "finetune_loss": mean_ci(losses),
                             "sets": {name: {"mse": mean_ci([2 * v for v in losses]), "accuracy": mean_ci([0.5] * 3)}
                                      for name in sets}})
    return {"schema": 1, "study": {"sets": sets, "bodies": ["pretrained", "random"], "seeds": [0, 1, 2]},
            "total_parameters": 5000, "variants": variants}


def mixture_doc():
    from experiments.mixture import analyse
    from graphpath.evaluation.scores import ci_summary as mean_ci

    mixtures, tests, models = ["reference", "er"], ["reference", "tree", "larger-n"], [(0, 2000), (1, 20000)]
    coverage = {("reference", "reference"): 0.9, ("reference", "tree"): 0.3, ("reference", "larger-n"): 0.0,
                ("er", "reference"): 0.6, ("er", "tree"): 0.5, ("er", "larger-n"): 0.0}
    cells = []
    for mixture in mixtures:
        for test in tests:
            for index, n in models:
                mse = [math.exp(3 - 5 * coverage[(mixture, test)]) * (1 + 0.05 * s) * (1 - 0.01 * index) for s in range(3)]
                cells.append({"mixture": mixture, "test": test, "model": index, "N": n,
                              "families_in_mixture": test == "reference", "coverage": coverage[(mixture, test)],
                              "mse": mean_ci(mse), "accuracy": mean_ci([0.5] * 3)})
    return {"schema": 1, "study": {"mixtures": {m: {} for m in mixtures}, "tests": {t: {} for t in tests}},
            "models": [{"index": i, "config": {}, "N": n} for i, n in models], "cells": cells, "raw": [],
            "analysis": analyse(cells)}


def test_partial_and_mixture_sections_show_tables_figures_and_verdict(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    partial, mixture = partial_doc(), mixture_doc()
    for kind, doc in (("partial", partial), ("mixture", mixture)):
        (run / "studies" / kind).mkdir(parents=True)
        (run / "studies" / kind / f"{kind}.json").write_text(json.dumps(doc))
    html = blog.render(run, tmp_path / "out").read_text()
    assert "experiments.edt --out RUN_DIR/studies/edt" in html  # the missing kind says how
    readout = next(v for v in partial["variants"] if v["name"] == "readout-pretrained")
    assert f"<td>readout-pretrained</td><td>17</td><td>{fmt(readout['finetune_loss']['mean'])}" in html
    assert "partial-plot" in html and "mixture-coverage-plot" in html and "mixture-size-plot" in html
    a = mixture["analysis"]
    assert a["spearman_log_mse_vs_coverage"] == -1.0 or a["spearman_log_mse_vs_coverage"] < -0.9  # built to follow coverage
    assert f"coverage is {fmt(a['spearman_log_mse_vs_coverage'])}" in html
    assert f"model size alone {fmt(a['r2_log_N'])}" in html
    assert "error tracks coverage more than model size" in html and a["r2_coverage"] > a["r2_log_N"]
