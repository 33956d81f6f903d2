"""graphpath.evaluation.report on synthetic eval.json documents: the study table, findings per seed, the sections."""
from __future__ import annotations

import pytest

from graphpath.evaluation import report
from graphpath.evaluation.scores import mean_ci

SEEDS = (0, 1, 2)
# per-seed MSE of the learned model: on-path small targets generalize on average (mean 0.2333 <= 0.25)
# but not in seed 2 (0.5); off-path targets fail in every seed; pre-training fails in every seed
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
    mean, low, high = mean_ci(values)
    return {"count": 100, "mse": mean, "mse_ci95": None if low is None else [max(low, 0.0), high], "accuracy": 0.5, "runs": len(values),
            "ci_kind": "seeds", "per_run": {"mse": list(values), "accuracy": [0.5] * len(values)}}


def pooled_doc(per_run=PER_RUN, phases=None) -> dict:
    models = {"learned": {"results": {}, "info": [{"seed": s} for s in SEEDS], "runs": 3},
              "learned-pretrain": {"results": {}, "info": [{"seed": s} for s in SEEDS], "runs": 3}}
    for (model, name), values in per_run.items():
        models[model]["results"][name] = block(values)
    doc = {"title": "pooled", "primary": "learned", "models": models, "set_data": {}, "eval": {}}
    phases = phases or [{"phase_changes": [{"label": "1", "step": 5, "stage": "pretrain"}],
                         "finetune": {"loss_before": 1.0, "loss_after": 0.1}} for _ in SEEDS]
    doc["phases"] = phases
    doc["reproduction"] = report.study_rows(doc)
    doc["findings"] = report.findings(doc, phases)
    report.attach_findings(doc)
    return doc


def test_each_finding_is_judged_in_every_seed():
    doc = pooled_doc()
    found = {f["key"]: f for f in doc["findings"]}
    small = found["onpath-small-generalizes"]
    assert small["holds"] is True and small["runs_holding"] == "2/3"
    assert [r["holds"] for r in small["per_run"]] == [True, True, False]
    assert report.seed_agreement(small) == "on average only"
    assert report.seed_agreement(found["offpath-fails"]) == "every seed"
    assert report.seed_agreement(found["pretrain-low-loss"]) == "in no seed"
    assert report.seed_agreement(found["finetune-cheap"]) == "every seed"
    # "partly": small < large < 1 holds in every seed here, and on the means (0.2333 < 0.3667)
    assert report.seed_agreement(found["onpath-large-partly"]) == "every seed"


def test_report_says_which_findings_hold_in_every_seed():
    text = report.render_markdown(pooled_doc())
    section = text.split("## Across seeds")[1].split("\n## ")[0]
    assert "3 runs pooled (seed 0, seed 1, seed 2)" in section
    every = next(line for line in section.splitlines() if line.startswith("- **Holds in every seed:**"))
    average = next(line for line in section.splitlines() if line.startswith("- **Holds on average only:**"))
    assert "off-path targets fail" in every and "on-path small targets generalize" not in every
    assert average == "- **Holds on average only:** on-path small targets generalize"
    assert "- **Holds in no seed:** pre-training reaches a low loss" in section
    assert "| test: on-path small target | 0.2333 | 0.1 | 0.1 | 0.5 |" in section


def test_a_finding_failing_on_average_but_holding_in_one_seed():
    per_run = {**PER_RUN, ("learned", "test-onpath-small"): [0.1, 0.6, 0.5]}
    found = {f["key"]: f for f in pooled_doc(per_run)["findings"]}
    assert found["onpath-small-generalizes"]["holds"] is False
    assert report.seed_agreement(found["onpath-small-generalizes"]) == "in some seeds only"


def test_one_run_has_no_seed_section_and_keeps_every_other_section():
    doc = pooled_doc({key: values[:1] for key, values in PER_RUN.items()}, phases=[None])
    for model in doc["models"].values():
        model["info"] = model["info"][:1]
        for b in model["results"].values():
            b.pop("per_run")
    doc["reproduction"] = report.study_rows(doc)
    doc["findings"] = report.findings(doc, [None])
    text = report.render_markdown(doc)
    assert "## Across seeds" not in text and "## The study's findings here" in text
    assert all("per_run" not in f for f in doc["findings"])


def test_the_pretrain_row_is_the_pretraining_checkpoint():
    doc = pooled_doc({**PER_RUN, ("learned", "pretrain"): [5.0, 5.0, 5.0]})
    row = next(r for r in doc["reproduction"] if r["key"] == "pretrain")
    assert row["mse"] == pytest.approx(0.6) and row["source"] == "learned-pretrain model on set pretrain"
    assert row["per_run"] == [0.5, 0.6, 0.7]


def test_render_markdown_is_its_sections_in_order():
    doc = pooled_doc()
    doc["line_probe"] = {"lengths": [1, 2], "label": [1, 2], "target": 2,
                         "models": {"handcrafted": {"answers": [1.0, 2.0], "per_run": [[1.0, 2.0]],
                                                    "rounded_exact": 2, "max_abs_error": 0.0}}}
    text = report.render_markdown(doc)
    assert text == "\n".join(line for section in report.SECTIONS for line in section(doc)) + "\n"
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## The study's numbers (MSE)", "## The study's findings here", "## Across seeds",
                        "## Every set", "## Line-graph probe"]
    assert "| 2 | 2 |" in text and "| rounds to L | 2/2 |" in text


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
