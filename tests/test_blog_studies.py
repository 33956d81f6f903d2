"""The page's studies section: shown only when the run directory holds studies/*/<kind>.json,
with the numbers the study wrote; a missing kind says how to add it."""
import json
import math
import shutil
from pathlib import Path

import blog
from blog.values import fmt

FIXTURE = Path(__file__).parent / "fixtures" / "run_fixture"
EDT_STUDY = """
seeds = [0, 1]
data_sizes = [32, 64, 128]
scratch_extra = [4096]
bootstrap = 50
[data]
n_max = 5
finetune_n_max = 4
small_target = 4
[[models]]
d_model = 8
n_layers = 1
n_heads = 1
[[models]]
d_model = 16
n_layers = 2
n_heads = 2
"""


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
