"""The page's studies section: shown only when the run directory holds studies/*/<kind>.json,
with the numbers the study wrote (built by each study's own analysis on synthetic losses); a
missing kind says how to add it; every section states the gate and what its preset can answer."""
import json
import math
import shutil
from pathlib import Path

import numpy as np

import blog
from blog.values import fmt
from tiny_studies import TINY_DATA, TINY_FINETUNE, TINY_PRETRAIN, TINY_STEPS, two_models

FIXTURE = Path(__file__).parent / "fixtures" / "run_fixture"
ANSWERS = """
[answers]
can = "a question this preset answers"
cannot = "a question beyond it"
"""
EDT_STUDY = """
seeds = [0, 1, 2]
data_sizes = [32, 64, 128, 256]
scratch_extra = [4096]
low_data_max = 256
bootstrap = 50
""" + ANSWERS + TINY_DATA + two_models() + TINY_PRETRAIN + TINY_FINETUNE + TINY_STEPS


def converged(keys, failing=()):
    return {key: {"converged": key not in failing, "reason": "test"} for key in keys}


def edt_doc(tmp_path, failing=()):
    """experiments.edt.analyse on power-law curves with D_T = 3 (m + 1) D_F^0.5 (m: model index)."""
    from experiments.edt import analyse, load_study

    (tmp_path / "edt.toml").write_text(EDT_STUDY)
    study = load_study(tmp_path / "edt.toml")
    cells, losses, keys = {}, {}, []
    for seed in (0, 1, 2):
        for m in (0, 1):
            keys.append(f"seed{seed}-model{m}/pretrain")
            for arm, ladder in (("scratch", (32, 64, 128, 256, 4096)), ("finetuned", (32, 64, 128, 256)),
                                ("doubled", (4096,))):
                for d in ladder:
                    cells[(seed, m, arm, d)] = f"seed{seed}-model{m}/{arm}-D{d}"
                    keys.append(cells[(seed, m, arm, d)])
                    effective = d + 3 * (m + 1) * d ** 0.5 if arm == "finetuned" else d
                    losses[(seed, m, arm, d)] = 2.0 * effective ** -0.5 * (1 + 0.02 * seed)
    return analyse(study, losses, converged(keys, failing), cells, 50)


def test_no_studies_no_section(tmp_path):
    html = blog.render(FIXTURE, tmp_path / "out").read_text()
    assert "Beyond the paper" not in html


def test_edt_section_shows_the_study_numbers_the_gate_and_the_answers(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    doc = edt_doc(tmp_path, failing={"seed1-model1/scratch-D4096"})
    (run / "studies" / "edt").mkdir(parents=True)
    (run / "studies" / "edt" / "edt.json").write_text(json.dumps(doc))
    html = blog.render(run, tmp_path / "out").read_text()
    assert "Beyond the paper" in html and "Effective data transferred per model size" in html
    fit = doc["fit"]["fit"]
    assert fit is not None and f"α = {fmt(fit['alpha']['value'])}" in html
    assert "β not estimated (2 model sizes; a size law needs at least 4)" in html
    assert fmt(doc["summary"][0]["D_T"]["mean"]) in html
    assert f"{doc['gate']['converged']} of {doc['gate']['jobs']} jobs met it" in html
    assert "1 cells whose jobs did not all converge are marked" in html  # model 1's top scratch rung
    assert "This preset can answer a question this preset answers" in html and "a question beyond it" in html
    assert "Doubling the steps at the largest from-scratch rung (D = 4096)" in html
    assert "experiments.partial --out RUN_DIR/studies/partial" in html  # the missing kinds say how
    assert "experiments.mixture --out RUN_DIR/studies/mixture" in html
    assert "edt-loss-plot" in html and "edt-transfer-plot" in html


PARTIAL = """
name = "partial-tiny"
seeds = [0, 1, 2]
pairs = [["distance-12", "distance-onpath"], ["degree", "distance-onpath"]]
modes = ["full", "readout"]
lrs = [1e-3, 3e-3]
sets = ["shift-tree"]
""" + ANSWERS + TINY_DATA + """[model]
d_model = 16
n_layers = 3
n_heads = 2
""" + TINY_PRETRAIN + TINY_FINETUNE


def partial_doc(tmp_path):
    from experiments.partial import analyse, load_study, make_jobs, pair_name, variants

    (tmp_path / "partial.toml").write_text(PARTIAL)
    study = load_study(tmp_path / "partial.toml")
    results = {}
    for pair in study["pairs"]:
        for v in variants(study):
            base = (0.05 if v["body"] == "pretrained" else 0.8) * (1 if v["mode"] == "full" else 3)
            per_seed = [{"test": {"loss": base * (1 + 0.1 * s), "accuracy": 0.5},
                         "sets": {"shift-tree": {"mse": 2 * base, "accuracy": 0.4}}} for s in range(3)]
            results[(pair_name(pair), v["name"])] = {"lr": 3e-3, "validation": {"0.001": 0.2, "0.003": 0.1},
                                                     "per_seed": per_seed}
    return analyse(study, results, converged(make_jobs(study)))


MIXTURE = """
name = "mixture-tiny"
seeds = [0, 1, 2]
max_vertices = 5
train_size = 512
test_size = 64
gate_rationale = "a reason stated before the run."
""" + ANSWERS + two_models() + TINY_PRETRAIN + """[mixtures.reference]
components = [{family = "reference", n_max = 4, weight = 1.0}]
[mixtures.er]
components = [{family = "erdos_renyi", avg_degree = 2.0, n_max = 4, weight = 1.0}]
[tests.reference]
components = [{family = "reference", n_max = 4}]
[tests.tree]
components = [{family = "tree", n_max = 4}]
[tests.larger-n]
components = [{family = "reference", n_min = 5, n_max = 5}]
"""


def mixture_doc(tmp_path):
    from experiments.mixture import analyse, job_key, load_study

    (tmp_path / "mixture.toml").write_text(MIXTURE)
    study = load_study(tmp_path / "mixture.toml")
    coverage = {("reference", "reference"): 0.9, ("reference", "tree"): 0.3, ("reference", "larger-n"): 0.1,
                ("er", "reference"): 0.6, ("er", "tree"): 0.5, ("er", "larger-n"): 0.2}
    rng, raw = np.random.default_rng(0), []
    for (mixture, test), cov in coverage.items():
        for m in (0, 1):
            for seed in (0, 1, 2):
                raw.append({"mixture": mixture, "test": test, "model": m, "seed": seed,
                            "mse": math.exp(3 - 5 * cov + rng.normal(0, 0.05)), "accuracy": 0.5, "coverage": cov,
                            "label_support": 1.0, "unseen_ids": 0.0})
    keys = [job_key(mix, m, s) for mix in ("reference", "er") for m in (0, 1) for s in (0, 1, 2)]
    return analyse(study, raw, converged(keys))


def test_partial_and_mixture_sections_show_tables_tests_figures_and_verdict(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    partial, mixture = partial_doc(tmp_path), mixture_doc(tmp_path)
    for kind, doc in (("partial", partial), ("mixture", mixture)):
        (run / "studies" / kind).mkdir(parents=True)
        (run / "studies" / kind / f"{kind}.json").write_text(json.dumps(doc))
    mixture["gate"]["verdicts"]["er-model1-seed2"].update(last=0.2, previous=0.3, change=0.5, ratio=0.05, half_steps=10,
                                                          reason="the verdict in words")
    for kind, doc in (("partial", partial), ("mixture", mixture)):
        (run / "studies" / kind / f"{kind}.json").write_text(json.dumps(doc))
    html = blog.render(run, tmp_path / "out").read_text()
    assert "experiments.edt --out RUN_DIR/studies/edt" in html  # the missing kind says how
    readout = next(v for v in partial["variants"] if v["name"] == "readout-pretrained")
    assert (f"<td>degree--distance-onpath</td><td>readout-pretrained</td><td>17</td><td>0.003</td>"
            f"<td>{fmt(readout['test']['loss']['mean'])}") in html
    test = partial["body_tests"][0]
    assert test["finding"] and math.exp(test["log_ratio"]["mean"]) > 10  # a random body is 16x worse here
    assert "Does the pre-trained body beat a random one" in html
    assert "partial-plot" in html and "mixture-coverage-plot" in html and "mixture-size-plot" in html
    a = mixture["analysis"]
    assert a["fit"]["coverage"]["finding"] and a["fit"]["coverage"]["value"] < -4  # built to follow coverage
    assert "log_N" not in a["fit"] and "Model size is not in the regression: 2 model sizes" in html
    assert f"on input coverage {fmt(a['fit']['coverage']['value'])}" in html and "excludes 0: a finding" in html
    assert html.count("This preset can answer a question this preset answers") == 2
    assert "Why this criterion: a reason stated before the run." in html  # the mixture gate's stated rationale
    assert "Pre-training schedule: 20 steps of batch 32" in html
    # the gate per job: the half run's and the full run's values, the improvement, the constant predictor's loss
    assert ("<td>er-model1-seed2</td><td>10</td><td>0.3</td><td>0.2</td><td>50.0%</td><td>4</td><td>the verdict in words</td>"
            in html)
