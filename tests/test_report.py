"""graphpath.evaluation.report and .markdown on synthetic eval.json documents: the study's rows, the
sections in order (the findings and their subgroups: tests/test_findings.py)."""
from __future__ import annotations

import pytest

from graphpath.evaluation import markdown, report

SEEDS = (0, 1, 2)
PER_RUN = {
    ("learned-pretrain", "pretrain"): [0.5, 0.6, 0.7],
    ("learned-pretrain", "finetune"): [0.9, 0.8, 0.7],
    ("learned", "finetune"): [0.01, 0.02, 0.03],
    ("learned", "test-onpath-small"): [0.1, 0.1, 0.5],
    ("learned", "test-onpath-large"): [0.3, 0.2, 0.6],
    ("learned", "test-any-small"): [20.0, 30.0, 40.0],
    ("learned", "test-any-large-smalltarget"): [10.0, 11.0, 12.0],
    ("learned", "test-any-large"): [50.0, 60.0, 70.0],
}


def block(values):
    return {"count": 100, "mse": sum(values) / len(values), "mse_ci95": None, "accuracy": 0.5, "runs": len(values),
            "ci_kind": "seeds+graphs", "per_run": {"mse": list(values), "accuracy": [0.5] * len(values)},
            "label_variance": 1.0}


def pooled_doc(per_run=PER_RUN) -> dict:
    models = {"learned": {"results": {}, "info": [{"seed": s} for s in SEEDS], "runs": 3},
              "learned-pretrain": {"results": {}, "info": [{"seed": s} for s in SEEDS], "runs": 3}}
    for (model, name), values in per_run.items():
        models[model]["results"][name] = block(values)
    doc = {"title": "pooled", "primary": "learned", "models": models, "set_data": {}, "eval": {}, "findings": []}
    doc["reproduction"] = report.study_rows(doc)
    return doc


def test_the_pretrain_row_is_the_pretraining_checkpoint():
    doc = pooled_doc({**PER_RUN, ("learned", "pretrain"): [5.0, 5.0, 5.0]})
    row = next(r for r in doc["reproduction"] if r["key"] == "pretrain")
    assert row["mse"] == pytest.approx(0.6) and row["source"] == "learned-pretrain model on set pretrain"
    assert row["model"] == "learned-pretrain" and row["per_run"] == [0.5, 0.6, 0.7]


def test_without_the_pretraining_checkpoint_the_final_model_stands_in():
    per_run = {k: v for k, v in PER_RUN.items() if k[0] != "learned-pretrain"}
    doc = pooled_doc({**per_run, ("learned", "pretrain"): [5.0, 5.0, 5.0]})
    row = next(r for r in doc["reproduction"] if r["key"] == "pretrain")
    assert row["model"] == "learned" and row["source"].startswith("final (fine-tuned) model")


def test_fine_tune_rows_fall_back_to_phases_with_seed_intervals():
    per_run = {k: v for k, v in PER_RUN.items() if k[0] != "learned-pretrain"}
    doc = pooled_doc(per_run)
    phases = [{"finetune": {"loss_before": b, "loss_after": a}} for b, a in ((0.6, 0.02), (0.7, 0.03), (0.8, 0.04))]
    report.fill_from_phases(doc["reproduction"], phases)
    rows = {r["key"]: r for r in doc["reproduction"]}
    assert rows["finetune-before"]["mse"] == pytest.approx(0.7) and rows["finetune-before"]["per_run"] == [0.6, 0.7, 0.8]
    assert rows["finetune-after"]["source"].startswith("phases.json")


def test_attach_findings_copies_the_verdict_onto_its_rows():
    doc = pooled_doc()
    doc["findings"] = [{"finding": "off-path targets fail", "holds": True, "status": "holds"}]
    report.attach_findings(doc)
    rows = {r["key"]: r for r in doc["reproduction"]}
    assert rows["test-any-small"]["status"] == "holds" and rows["test-any-small"]["holds"] is True
    # the off-path finding is judged on test-any-small only: the large-graph rows carry no verdict
    assert rows["test-any-large"]["status"] is None and rows["test-any-large-smalltarget"]["holds"] is None
    assert rows["pretrain"]["status"] is None


def test_render_markdown_is_its_sections_in_order():
    doc = pooled_doc()
    doc["line_probe"] = {"lengths": [1, 2], "label": [1, 2], "target": 2,
                         "models": {"handcrafted": {"answers": [1.0, 2.0], "per_run": [[1.0, 2.0]],
                                                    "rounded_exact": 2, "max_abs_error": 0.0}}}
    doc["departures"] = [{"field": "model.n_layers", "group": "architecture", "what": "layers", "study": "11",
                          "run": "6", "differs": True, "note": ""}]
    text = report.render_markdown(doc)
    assert text == "\n".join(line for section in markdown.SECTIONS for line in section(doc)) + "\n"
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## This run vs the study", "## The study's numbers on its own (mixed) sets",
                        "## Every set", "## Line-graph probe"]
    assert "| architecture | layers | 11 | 6 | **differs** |" in text and "1 of 1 settings differ" in text
    assert "| 2 | 2 |" in text and "| rounds to L, per seed | 2 of 2 (1 run) |" in text


def test_the_report_ends_with_how_the_runs_were_made():
    from graphpath.evaluation.report import render_markdown
    from graphpath_common.provenance import entry, finish

    made = finish(entry(["python -m graphpath.train", "--seeds", "0,1"], "cpu", 1), "finished")
    scored = finish(entry(["python -m graphpath.evaluate", "runs/x"], "cpu", 2), "finished")
    doc = {"provenance": {"evaluation": scored, "runs": [{"run": "runs/x/seed-0", "invocations": [made]},
                                                         {"run": "runs/x/seed-1", "invocations": []}]}}
    lines = render_markdown(doc).splitlines()
    start = lines.index("## Provenance")
    footer = "\n".join(lines[start:])
    assert lines[-1].startswith("- this evaluation: `python -m graphpath.evaluate runs/x`")
    assert "`python -m graphpath.train --seeds 0,1` — graphpath" in footer and "cpu, 1 thread(s)" in footer
    assert "- `runs/x/seed-1`:\n  - made before provenance was recorded" in footer
