"""The page's transfer section: shown when the run directory holds studies/*/transfer.json, with
the study's own numbers (both matrices with CIs and BH findings, dendrogram, findings, the gate and
what the preset can answer); absent, it says how to add it."""
import json
import shutil
from pathlib import Path

import numpy as np

import blog
from blog.values import fmt
from tiny_studies import TRANSFER_GRAPHS

FIXTURE = Path(__file__).parent / "fixtures" / "run_fixture"
TASKS = ["distance-12", "reachable", "degree"]
STUDY = """
name = "t"
tasks = ["distance-12", "reachable", "degree"]
seeds = [0, 1, 2, 3]
pretrain_size = 256
finetune_sizes = [32, 256]
lrs = [1e-3, 3e-3]
test_size = 128
[answers]
can = "a question this preset answers"
cannot = "a question beyond it"
""" + TRANSFER_GRAPHS + """[pretrain]
steps = 20
eval_every = 5
"""


def transfer_doc(tmp_path):
    """experiments.transfer.analyse on synthetic losses: distance-12 and reachable help each other;
    every job converged except one fine-tuning of degree -> reachable."""
    from experiments import transfer as tr

    (tmp_path / "t.toml").write_text(STUDY)
    study = tr.load_study(tmp_path / "t.toml")
    gain = {a: {b: 0.0 for b in TASKS} for a in TASKS}
    gain["distance-12"]["reachable"], gain["reachable"]["distance-12"] = 0.4, 0.2
    rng = np.random.default_rng(0)
    losses = {}
    for seed in study["seeds"]:
        for b in TASKS:
            for sample in ("validation", "test"):  # no fine-tuning: worse than every fine-tuned arm here
                for a in TASKS:
                    losses[(sample, "zero_shot", a, b, None, None, seed)] = 3.0
                losses[(sample, "control_zero_shot", None, b, None, None, seed)] = 3.5
            for size in study["finetune_sizes"]:
                for lr in study["lrs"]:
                    for sample in ("validation", "test"):
                        worse = 0.1 if lr == 1e-3 else 0.0
                        losses[(sample, "baseline", None, b, size, lr, seed)] = 1.0 + worse + rng.normal(0, 0.02)
                        losses[(sample, "control", None, b, size, lr, seed)] = 0.95 + worse + rng.normal(0, 0.02)
                        for a in TASKS:
                            losses[(sample, "transferred", a, b, size, lr, seed)] = (1.0 - gain[a][b] + worse
                                                                                    + rng.normal(0, 0.02))
    scores, choices = tr.choose(study, losses)
    keys = tr.make_jobs(study, tmp_path / "out")
    verdicts = {k: {"converged": k != f"seed0/D32/{tr.protocol.lr_name(3e-3)}/degree-to-reachable"} for k in keys}
    report = {str(s): {t: {"test": {"drawn": 100, "collisions": 2}, "validation": {"drawn": 50, "collisions": 1}}
                       for t in TASKS} for s in study["seeds"]}
    return tr.analyse(study, scores, {t: [2.0] * 4 for t in TASKS}, report, verdicts, choices)


def test_transfer_section_shows_both_matrices_findings_gate_and_answers(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    doc = transfer_doc(tmp_path)
    (run / "studies" / "transfer").mkdir(parents=True)
    (run / "studies" / "transfer" / "transfer.json").write_text(json.dumps(doc))
    html = blog.render(run, tmp_path / "out").read_text()
    assert "Which graph tasks transfer to which?" in html
    cell = next(c for c in doc["cells"] if (c["source"], c["target"], c["size"]) == ("distance-12", "reachable", 32))
    low, high = cell["relative"]["ci95"]
    assert cell["relative"]["finding"] and f"{fmt(cell['relative']['mean'])} [{fmt(low)}, {fmt(high)}] *" in html
    assert all(c["lr"] == 3e-3 for c in doc["lr_choices"].values())  # 1e-3 is worse on validation
    marked = next(c for c in doc["cells"] if (c["source"], c["target"], c["size"]) == ("degree", "reachable", 32))
    assert not marked["converged"] and marked["relative"]["q"] is None and "(not converged)" in html
    assert doc["tests"]["relative"]["tests"] == 2 * 6 - 1
    assert "Specific transfer A -&gt; B" in html or "Specific transfer A -> B" in html
    assert "transfer-matrix-plot" in html and "transfer-dendrogram-plot" in html
    assert f"{doc['test_sets']['collisions_total']} test graphs dropped" in html
    assert "This preset can answer a question this preset answers" in html
    assert "experiments.edt --out RUN_DIR/studies/edt" in html  # the other kinds still say how


def test_without_transfer_json_the_section_says_how_to_add_it(tmp_path):
    from tests.test_blog_studies import edt_doc

    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    (run / "studies" / "edt").mkdir(parents=True)
    (run / "studies" / "edt" / "edt.json").write_text(json.dumps(edt_doc(tmp_path)))
    html = blog.render(run, tmp_path / "out").read_text()
    assert "Beyond the paper" in html and "Which graph tasks transfer" not in html
    assert "experiments.transfer --out RUN_DIR/studies/transfer" in html
