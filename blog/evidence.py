"""The page's evidence: the findings as tests on their subgroups, the subgroups themselves, the
order distances were learned in, every departure from the study, and the study's mixed numbers.

Every provider reads eval.json (and config.toml, perturb.json for the departures) and says what
each number pools: "S seeds x N graphs" (an interval over seeds and test graphs) or "1 seed".

    findings_lead          Html  the findings table (subgroup, estimate [95% CI], threshold, p, verdict)
    findings_scope         Text  what this run's seed count and sizes can and cannot answer
    table_subgroups        Html  the test sets by target x size and by target kind
    details_subgroups      Html  every set by every subgroup dimension, collapsed
    table_onpath_grid      Html  on-path targets t != 2 by graph size and distance
    overlap_summary        Text  how many test graphs the training stream already held
    table_phase_changes    Html  every seed's detected changes (held-out curves)
    thresholds_note        Text  when the findings' thresholds were written, and which seeds are fresh
    seen_definition        Text  what "seen in training" means
    finetune_caveat        Text  what the fine-tuning numbers cannot show (normalised MSE, seen share, no control)
    phase_order            Html  the step each distance settled below 0.1, per seed, against the study's 1, 2, 3
    detector_null_rate     Text  the detector's false-positive rate on curves with no transition
    departures_summary     Text  how many settings differ from the study
    table_departures       Html  this run vs the study, setting by setting
    table_reproduction     Html  the study's numbers on its own mixed sets, raw and normalized
"""
from __future__ import annotations

import math

from graphpath_common.rundir import run_names, too_few_note
from graphpath_common.study import STUDY_FIRST_BELOW_STEPS, STUDY_SETTLE_STEPS, departures

from .html import Html, Text, escape, table
from .rundir import Run
from .values import count, fmt, model_parameters

STATUS_WORD = {"holds": "holds", "does not hold": "does not hold", "inconclusive": "inconclusive",
               "not applicable": "not applicable", "not measured": "not measured"}


def _interval(ci) -> str:
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "(no interval)"


def _basis(block: dict) -> str:
    seeds, graphs = block.get("seeds") or 1, block.get("graphs") or 0
    return f"pooled: {seeds} seeds × {count(graphs)} graphs" if seeds > 1 else f"1 seed, {count(graphs)} graphs"


def _p(value) -> str:
    if value is None:
        return "—"
    return "< 0.0001" if value < 1e-4 else f"{value:.2g}"


def _seeds(run: Run) -> int:
    info = (run.eval.get("models", {}).get("learned") or {}).get("info") or []
    return max(1, len(info))


def _findings(run: Run) -> list[dict]:
    found = run.eval.get("findings") or []
    if not found or "status" not in found[0]:
        raise ValueError("eval.json has no tested findings (re-run python -m graphpath.evaluate)")
    return found


THRESHOLDS_WRITTEN = ("Thresholds written in code (graphpath/evaluation/findings.py) after an earlier run on seeds "
                      "0-2 was seen; seeds 3+ are fresh.")
SEEN_DEFINITION = ("A test graph counts as seen in training when the hash of its edge set (the multiset of edge "
                   "tokens; the target token and n are ignored) occurs among the hashes of the union of the run's "
                   "pre-training and fine-tuning streams, replayed from the run's config and seed")


def thresholds_note(run: Run) -> Text:
    """When the thresholds were written and which of this run's seeds are fresh (eval.json)."""
    return Text((run.eval.get("threshold_provenance") or {}).get("text") or THRESHOLDS_WRITTEN)


def seen_definition(run: Run) -> Text:
    return Text(SEEN_DEFINITION + ".")


def _seen(seen: dict | None, set_name: str = "") -> str:
    if not seen:
        return "—" if "training curves" in set_name else "not checked"
    some = f" (+{seen['some-seeds']:.0%} some seeds)" if seen.get("some-seeds") else ""
    return f"{seen['every-seed']:.0%}{some} of {count(seen['graphs'])}"


def findings_lead(run: Run) -> Html:
    rows = []
    for f in _findings(run):
        estimate = f.get("estimate")
        value = (f"{fmt(estimate['value'])} {_interval(estimate.get('ci95'))} ({_basis(estimate)})" if estimate
                 else f.get("evidence", ""))
        if f.get("counts"):
            value += (f"; {count(f['counts']['subgroup'])} graphs against a reference of "
                      f"{count(f['counts']['reference'])} ({f['reference']['subgroup']}, MSE "
                      f"{fmt(f['reference']['mse'])})")
        rows.append([f["finding"], f"{f['set']}: {f['subgroup']}", f["criterion"], value, _seen(f.get("seen"), f["set"]),
                     f"{_p(f.get('p'))} ({_p(f.get('p_adjusted'))})", STATUS_WORD[f["status"]]])
    found = table(["the study's finding", "judged on", "criterion", "this run [95% CI]",
                   "subgroup seen in training", "p (corrected)", "verdict"], rows,
                  caption="Each finding tested on the subgroup it is about; p-values corrected together "
                          "(Benjamini-Hochberg, controlling the false discovery rate); holds = corrected p < 0.05, "
                          "does not hold = the opposite test is significant, inconclusive = neither. Seen: the "
                          "share of the subgroup's graphs in every seed's training streams (defined below).")
    why = "".join(f"<li>{escape(f['finding'])}: {escape(f['rationale'])}</li>" for f in _findings(run))
    return Html(found + f"\n<details><summary>Why each threshold</summary><ul>{why}</ul></details>")


def finetune_caveat(run: Run) -> Text:
    """What the fine-tuning numbers cannot show (eval.json finding finetune-cheap `caveats`)."""
    found = {f["key"]: f for f in run.eval.get("findings") or []}.get("finetune-cheap") or {}
    caveats = found.get("caveats")
    if not caveats:
        return Text("This evaluation did not measure how the pre-trained model compares with a constant "
                    "predictor on the fine-tune set, nor how much of that set the training streams hold; no model "
                    "was fine-tuned from scratch, so nothing here separates what pre-training gave from what "
                    "fine-tuning learns alone.")
    text = caveats["text"]
    return Text(text[0].upper() + text[1:])


def findings_scope(run: Run) -> Text:
    seeds = _seeds(run)
    data = run.eval.get("data") or run.config.get("data") or {}
    differ = sum(bool(r["differs"]) for r in table_rows(run))
    pooled = (f"Every interval here pools {seeds} seeds and the test graphs: it covers both a new seed of this "
              f"recipe and a new draw of test graphs, and its seed-to-seed part rests on {seeds - 1} degree(s) of "
              f"freedom, so it is wide wherever the seeds disagree." if seeds > 1 else
              "This is one seed: every interval covers the sampling of test graphs only, not the variation from "
              "seed to seed, so no statement here is about the recipe rather than this one model.")
    note = run.eval.get("findings_note", "")
    return Text(f"{pooled} {note} This run answers the study's questions at graphs up to n = {data.get('n_max')} "
                f"(fine-tuning up to {data.get('finetune_n_max')}) and {differ} settings that differ from the "
                f"study's (listed below); it cannot say whether the study's own numbers, at n <= 15 with its "
                f"recipe, would come out the same.")


def _subgroup_cells(block: dict) -> list[str]:
    return [f"{fmt(block['mse']['value'])} {_interval(block['mse'].get('ci95'))}",
            f"{fmt(block['accuracy']['value'])} {_interval(block['accuracy'].get('ci95'))}"]


def table_subgroups(run: Run) -> Html:
    sub = (run.eval.get("subgroups") or {}).get("models", {}).get("learned")
    if not sub:
        raise LookupError("eval.json has no subgroups")
    shares = (run.eval.get("subgroups") or {}).get("shares", {})
    plan = [("test-onpath-small", "target-size"), ("test-onpath-large", "target-size"),
            ("test-any-small", "kind"), ("test-any-large-smalltarget", "kind"), ("test-any-large", "kind")]
    rows = []
    for name, dimension in plan:
        for group, block in (sub.get(name, {}).get(dimension) or {}).items():
            share = shares.get(name, {}).get(dimension, {}).get(group, 0.0)
            rows.append([name, group, f"{count(block['count'])} ({share:.0%})", *_subgroup_cells(block)])
    seeds = _seeds(run)
    return table(["set", "subgroup", "graphs (share)", "MSE [95% CI]", "accuracy [95% CI]"], rows,
                 caption=(f"Pooled over {seeds} seeds; intervals over seeds and test graphs." if seeds > 1 else
                          "One seed; intervals over test graphs only.") + too_few_note(run.eval.get("subgroups") or {})
                 + " Every set by every subgroup follows, collapsed.")


def details_subgroups(run: Run) -> Html:
    """Every set, every subgroup dimension, in one collapsed block (eval.json `subgroups`)."""
    sub = (run.eval.get("subgroups") or {}).get("models", {}).get("learned")
    if not sub:
        raise LookupError("eval.json has no subgroups")
    shares = (run.eval.get("subgroups") or {}).get("shares", {})
    parts = []
    for name, dimensions in sub.items():
        rows = [[dimension, group, f"{count(block['count'])} "
                 f"({shares.get(name, {}).get(dimension, {}).get(group, 0.0):.0%})", *_subgroup_cells(block)]
                for dimension, groups in dimensions.items() for group, block in groups.items()]
        parts.append(table(["dimension", "subgroup", "graphs (share)", "MSE [95% CI]", "accuracy [95% CI]"],
                           rows, caption=name))
    return Html("<div class=\"subgroups\"><details><summary>Every set by every subgroup (target, size, target kind, distance, seen in "
                "training)</summary>\n" + "\n".join(parts) + "\n</details></div>")


def table_onpath_grid(run: Run) -> Html:
    grid = run.eval.get("onpath_grid")
    if not grid or not grid.get("cells"):
        raise LookupError("eval.json has no on-path grid")
    rows = [[n] + ["" if c is None else f"{fmt(c['mse'])} ({c['accuracy']:.0%}, {count(c['count'])})" for c in row]
            for n, row in zip(grid["n"], grid["cells"])]
    return table(["n \\ d", *map(str, grid["d"])], rows,
                 caption=f"MSE (accuracy, graphs) of on-path targets t != 2 in {grid['set']}, by graph size n and "
                         f"distance d; pooled over {_seeds(run)} seed(s).")


def overlap_summary(run: Run) -> Text:
    overlap = run.eval.get("overlap")
    if not overlap:
        return Text("The training stream was not replayed for this evaluation, so no test graph is marked as "
                    "seen in training.")
    stages = overlap["stages"][0]
    how = "; ".join(f"{s['stage']}: {s['source']}" for s in stages)
    verified = all(s.get("verified") for runs in overlap["stages"] for s in runs)
    parts = []
    for name in ("test-onpath-small", "test-onpath-large", "test-any-large"):
        shares = overlap["shares"].get(name)
        if shares:
            parts.append(f"{shares.get('seen-in-training', 0):.0%} of {name}")
    return Text(f"Of the test graphs, {', '.join(parts)} are seen in every seed's own training streams ({how}"
                f"{'; each replay ends in the state its checkpoint saved' if verified else ''}); each finding's "
                "subgroup has its own share in the findings table, and the seen / unseen split of every set is in "
                "report.md.")


def _label_name(label, unreachable: str) -> str:
    return "total" if label == "all" else ("unreachable" if str(label) == unreachable else f"d = {label}")


def detector_null_rate(run: Run) -> Text:
    """The detector's pinned false-positive rate per curve on simulated null curves (phases.json)."""
    rate = (run.phases.get("detector") or {}).get("null_false_positive_rate")
    if rate is None:
        raise LookupError("phases.json has no detector settings (a run older than the held-out detector)")
    return Text(f"{rate:.1%}")


def _phase_runs(run: Run) -> list[dict]:
    """Every seed's phases.json as the evaluator read it (a group), else the run's own."""
    runs = run.eval.get("phases") or []
    return runs if len(runs) > 1 else [run.phases]


def table_phase_changes(run: Run) -> Html:
    runs = _phase_runs(run)
    unreachable = str(run.eval.get("max_vertices") or run.config["data"]["n_max"])
    rows = []
    for name, phases in zip(run_names(run.eval, len(runs)), runs):
        for pc in sorted((phases or {}).get("phase_changes", []), key=lambda c: (c["stage"], c["step"])):
            rows.append([name, pc["stage"], _label_name(pc["label"], unreachable), count(pc["step"]),
                         count(pc["examples"]), fmt(pc.get("reference")), fmt(pc["loss_before"]),
                         fmt(pc["loss_after"]), count(pc.get("fall_steps", 0))])
    if not rows:
        return Html('<p class="none-found">No phase change was detected in any seed.</p>')
    return table(["run", "stage", "label", "step", "examples", "mean-guess loss", "plateau loss", "loss after",
                  "fall (steps)"], rows)


def phase_order(run: Run) -> Html:
    """The step each of distances 1, 2, 3 settled below 0.1 in each seed, beside the study's log."""
    order = {f["key"]: f for f in _findings(run)}.get("phase-order") or {}
    settle = order.get("settle")
    if not settle:
        return Html("<p>This evaluation has no per-distance held-out curves to measure the order of learning "
                    "from (re-run <code>python -m graphpath.evaluate</code> on a run that logged them).</p>")
    study = ", ".join(str(v) for v in STUDY_SETTLE_STEPS.values())
    first = ", ".join(str(v) for v in STUDY_FIRST_BELOW_STEPS.values())
    rows = [["the study's log", *map(str, STUDY_SETTLE_STEPS.values()), "shortest first"]]
    rows += [[name, *["never" if item["steps"].get(d) is None else count(item["steps"][d]) for d in ("1", "2", "3")],
              item["order"]] for name, item in zip(run_names(run.eval, len(settle)), settle)]
    matching = sum(item["order"] == "shortest first" for item in settle)
    threshold = fmt(order.get("threshold", 0.1))
    text = (f"<p>Measured without the detector, the order of learning is in the curves: the first logged step "
            f"from which each distance's held-out loss stays below {threshold} (the study's committed log, per-step "
            f"training-batch losses at 2^15 graphs a step, gives {study} by the same rule applied to a different curve; "
            f"first below {threshold} at {first}; its steps are not this run's steps: compare the order, not the "
            f"numbers. Here curve points lie every other step through the warm-up and about every 1/48 of the "
            f"stage after it, which bounds how finely steps are resolved). {matching} of "
            f"{len(settle)} seed(s) learned distances 1, 2, 3 in the study's order; against a random order of "
            f"three (chance 1/6 per seed, an exact binomial test), \"shorter distances are learned first\" "
            f"{escape(order.get('status', 'was not tested'))} (p = {_p(order.get('p'))}, corrected "
            f"{_p(order.get('p_adjusted'))}).</p>")
    return Html(text + "\n" + table(["", "d = 1", "d = 2", "d = 3", "order"], rows,
                                    caption=f"Step from which each distance's held-out loss stays below {threshold}."))


def detector_scope(run: Run) -> Text:
    """Which distances the detector judged, and which it leaves out by construction (phases.json)."""
    found = {f["key"]: f for f in _findings(run)}.get("phase-changes") or {}
    runs = [*(run.eval.get("phases") or []), run.phases]  # eval.json's copies, then the run's own
    excluded = sorted({d for p in runs for d in (((p or {}).get("settle") or {}).get("not_judged") or {})}, key=int)
    minimum = fmt(((run.phases.get("detector") or {}).get("min_reference")) or 1.0)
    if excluded:
        return Text(f"Distances {', '.join(excluded)} sit near the mean label (mean-guess loss under {minimum}), "
                    f"so they have no plateau to fall from and the detector excludes them by construction: its "
                    f"verdict (\"phase changes occur\": {found.get('status', 'not tested')}) says nothing about them.")
    return Text(f"The detector judges only distances whose mean-guess loss is at least {minimum}; its verdict "
                f"(\"phase changes occur\") is {found.get('status', 'not tested')}.")


def table_rows(run: Run) -> list[dict]:
    perturb = next((doc.get("settings") for doc in run.perturb
                    if doc.get("target", {}).get("model") != "handcrafted"), None)
    if perturb is None:  # no recovery study: the basin search perturbed and retrained, so its protocol departs
        perturb = _basin_settings(run)
    parameters = int(str(model_parameters(run)).replace(",", ""))
    return departures(run.config, parameters=parameters, perturb=perturb, seeds=_seeds(run))


def _basin_settings(run: Run) -> dict | None:
    """basin.json's perturbation settings in perturb.json's terms (kind all -> every matrix), or None
    when the run has no basin search. A damaged basin.json is named (blog.inside's reader)."""
    from .inside import _read, available

    if not available(run)["basin"]:
        return None
    doc = _read(run, "basin")
    settings = doc.get("settings")
    if not settings:
        return None
    if settings.get("lr") is None:  # schema 4: calibrated per group (graphpath.analysis.basin.LR_RULE)
        chosen = [f"{name} {fmt((g.get('retraining_lr') or {}).get('lr'))}" for name, g in doc.get("groups", {}).items()
                  if g.get("retraining_lr")]
        settings = {**settings, "lr": "calibrated per group" + (f" ({', '.join(chosen)})" if chosen else "")}
    return {**settings, "kind": f"{settings.get('kind')} (basin search)"}


def departures_summary(run: Run) -> Text:
    rows = table_rows(run)
    differ = [r for r in rows if r["differs"]]
    return Text(f"{len(differ)} of the {len(rows)} settings below differ from the study's.")


def table_departures(run: Run) -> Html:
    rows = [[r["group"], r["what"], r["study"], r["run"],
             {True: "differs", False: "same", None: "not run"}[r["differs"]], r["note"]] for r in table_rows(run)]
    return table(["", "setting", "the study", "this run", "", "note"], rows)


def table_reproduction(run: Run) -> Html:
    rows = run.eval.get("reproduction") or []
    if not rows:
        raise ValueError("eval.json has an empty reproduction table")
    out = []
    for r in rows:
        study = fmt(r["study_mse"]) + (f" ({r['study_verdict']})" if r.get("study_verdict") else "")
        ours = "—" if r["mse"] is None else f"{fmt(r['mse'])} {_interval(r.get('mse_ci95'))}"
        accuracy = "—" if r.get("accuracy") is None else f"{fmt(r['accuracy'])} {_interval(r.get('accuracy_ci95'))}"
        normalized = r.get("normalized_mse")
        out.append([r.get("quantity", r["set"]), study, ours, fmt(r.get("study_normalized_mse")),
                    "—" if normalized is None or not math.isfinite(normalized) else fmt(normalized), accuracy,
                    r.get("basis") or r.get("source", ""),
                    r["finding"] if r.get("status") is None else f"{r['finding']}: {r['status']}"])
    return table(["quantity (the study's mixed set)", "study MSE", "this run MSE [95% CI]", "study MSE / constant",
                  "this run MSE / constant", "accuracy [95% CI]", "pooled over", "finding (judged above)"], out,
                 caption="MSE / constant: the MSE over the constant predictor's (the set's label variance), "
                         "comparable across vocabularies; the study reports no accuracy.")


EVIDENCE = {name: provider for name, provider in list(globals().items())
            if callable(provider) and getattr(provider, "__module__", None) == __name__
            and not name.startswith("_") and name not in ("table_rows",)}
