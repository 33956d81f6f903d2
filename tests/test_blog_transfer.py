"""The page's transfer section: shown when the run directory holds studies/*/transfer.json, with
the study's own numbers (matrix with CIs, dendrogram, findings); absent, it says how to add it."""
import json
import shutil
from pathlib import Path

import numpy as np

import blog
from blog.values import fmt

FIXTURE = Path(__file__).parent / "fixtures" / "run_fixture"
TASKS = ["distance-12", "reachable", "degree"]


def transfer_doc():
    """experiments.transfer.analyse on synthetic losses: distance-12 and reachable help each other."""
    from experiments.transfer import analyse

    gain = {a: {b: 0.0 for b in TASKS} for a in TASKS}
    gain["distance-12"]["reachable"], gain["reachable"]["distance-12"] = 0.4, 0.2
    gain["degree"]["reachable"] = -0.3
    rng = np.random.default_rng(0)
    rows = []
    for seed in (0, 1, 2):
        for b in TASKS:
            rows.append({"seed": seed, "source": None, "target": b, "kind": "baseline",
                         "loss": 1.0 + rng.normal(0, 0.02), "accuracy": 0.6})
            for a in TASKS:
                rows.append({"seed": seed, "source": a, "target": b, "kind": "transferred",
                             "loss": 1.0 - gain[a][b] + rng.normal(0, 0.02), "accuracy": 0.7})
                rows.append({"seed": seed, "source": a, "target": b, "kind": "zero_shot", "loss": 3.0, "accuracy": 0.1})
    report = {str(s): {t: {"drawn": 100, "collisions": 2} for t in TASKS} for s in (0, 1, 2)}
    return analyse({"tasks": TASKS, "seeds": [0, 1, 2]}, rows, {t: [2.0] * 3 for t in TASKS}, report)


def test_transfer_section_shows_the_matrix_dendrogram_and_findings(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    doc = transfer_doc()
    (run / "studies" / "transfer").mkdir(parents=True)
    (run / "studies" / "transfer" / "transfer.json").write_text(json.dumps(doc))
    html = blog.render(run, tmp_path / "out").read_text()
    assert "Which graph tasks transfer to which?" in html
    cell = next(c for c in doc["cells"] if (c["source"], c["target"]) == ("distance-12", "reachable"))
    low, high = cell["relative"]["ci95"]
    assert cell["relative"]["mean"] > 0.15 and f"{fmt(cell['relative']['mean'])} [{fmt(low)}, {fmt(high)}]" in html
    assert "transfer-matrix-plot" in html and "transfer-dendrogram-plot" in html
    assert "strongest is distance-12 -&gt; reachable" in html or "strongest is distance-12 -> reachable" in html
    assert "6 collisions" not in html and f"{doc['test_sets']['collisions_total']} collisions" in html
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
