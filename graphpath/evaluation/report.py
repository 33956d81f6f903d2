"""The reproduction table: the study's numbers next to this run's, on the study's own (mixed) sets.

`study_rows(doc)` fills eval.json's "reproduction" rows from the scored sets: each of the study's
numbers is an MSE over a whole set, a mixture dominated by the pre-training target (t = 2) on the
on-path sets; the findings are judged on the subgroups they are about instead
(graphpath.evaluation.findings), and the rows only say which finding bears on them.
`render_markdown(doc)` writes report.md from eval.json alone (graphpath.evaluation.markdown).
"""
from __future__ import annotations

# (key, quantity, study value, the study's word, model, set): the table of docs/study.md (Stages)
STUDY = [
    ("pretrain", "pre-train: final MSE (t = 2)", 0.001623, "", "learned-pretrain", "pretrain"),
    ("finetune-before", "fine-tune set: MSE before fine-tuning", 0.5531, "", "learned-pretrain", "finetune"),
    ("finetune-after", "fine-tune set: MSE after fine-tuning", 0.01472, "", "learned", "finetune"),
    ("test-onpath-small", "test: on-path small target", 0.1020, "good", "learned", "test-onpath-small"),
    ("test-onpath-large", "test: on-path target", 0.1451, "moderate", "learned", "test-onpath-large"),
    ("test-any-small", "test: any target, small graphs", 61.44, "fails", "learned", "test-any-small"),
    ("test-any-large-smalltarget", "test: any small target, large graphs", 47.06, "", "learned",
     "test-any-large-smalltarget"),
    ("test-any-large", "test: any target, large graphs", 72.87, "", "learned", "test-any-large"),
]
OFF_PATH_SETS = ("test-any-small", "test-any-large-smalltarget", "test-any-large")


def _result(doc: dict, model: str, name: str) -> dict | None:
    return doc.get("models", {}).get(model, {}).get("results", {}).get(name)


NOT_JUDGED = "none (off-path targets fail is judged on test-any-small only)"
FINDING_OF = {"pretrain": "pre-training reaches a low loss", "finetune-before": "fine-tuning is cheap",
              "finetune-after": "fine-tuning is cheap", "test-onpath-small": "on-path small targets generalize",
              "test-onpath-large": "large on-path targets generalize partly",
              "test-any-small": "off-path targets fail",
              # the off-path finding is judged on test-any-small only: these rows bear on no finding
              "test-any-large-smalltarget": NOT_JUDGED, "test-any-large": NOT_JUDGED}


def study_rows(doc: dict) -> list[dict]:
    """One row per study number: ours from the scored sets, with its CI and where it came from.
    `finding`/`holds` are filled in by `attach_findings`."""
    rows = []
    for key, quantity, value, word, model, name in STUDY:
        model = doc.get("primary", "learned") if model == "learned" else model
        block, source = _result(doc, model, name), f"{model} model on set {name}"
        if block is None and model == "learned-pretrain" and name == "pretrain":
            block, source = _result(doc, "learned", name), "final (fine-tuned) model on set pretrain"
        if block is not None and source.startswith("final"):
            model = "learned"
        rows.append({"key": key, "set": name, "model": model, "quantity": quantity, "study_mse": value,
                     "study_verdict": word,
                     "mse": None if block is None else block["mse"],
                     "mse_ci95": None if block is None else block.get("mse_ci95"),
                     "ci_kind": None if block is None else block.get("ci_kind"),
                     "runs": None if block is None else block.get("runs"),
                     "per_run": None if block is None else (block.get("per_run") or {}).get("mse"),
                     "source": source if block is not None else "not evaluated",
                     "finding": FINDING_OF[key], "holds": None})
    return rows


def fill_from_phases(rows: list[dict], phases_per_run: list[dict | None]) -> None:
    """Without a pre-training checkpoint there is no "before" evaluated here: both fine-tune rows
    then take the trainer's numbers (phases.json), so before and after share one source."""
    from graphpath.evaluation.scores import mean_ci

    by_key = {row["key"]: row for row in rows}
    if by_key["finetune-before"]["mse"] is not None or by_key["finetune-after"]["source"].startswith("the run has no"):
        return
    for key, field in (("finetune-before", "loss_before"), ("finetune-after", "loss_after")):
        values = [((p or {}).get("finetune") or {}).get(field) for p in phases_per_run]
        if not values or any(v is None for v in values):
            return
        mean, low, high = mean_ci(values)
        by_key[key].update(mse=mean, mse_ci95=None if low is None else [low, high],
                           ci_kind="seeds" if len(values) > 1 else None, runs=len(values),
                           per_run=[float(v) for v in values] if len(values) > 1 else None,
                           source=f"phases.json finetune.{field} (the trainer's held-out set)")


def attach_findings(doc: dict) -> None:
    """Copy each finding's verdict (`holds`, `status`) onto the reproduction rows that bear on it."""
    by_name = {f["finding"]: f for f in doc["findings"]}
    for row in doc["reproduction"]:
        finding = by_name.get(row["finding"], {})
        row["holds"], row["status"] = finding.get("holds"), finding.get("status")


def render_markdown(doc: dict) -> str:
    """report.md from an eval.json document (graphpath.evaluation.markdown)."""
    from graphpath.evaluation.markdown import render

    return render(doc)

