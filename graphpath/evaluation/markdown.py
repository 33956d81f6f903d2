"""report.md, written from eval.json alone: findings first (each on its subgroup, with its test),
then every set broken down by subgroup, the on-path grid, the training overlap, the departures
from the study, the study's own mixed numbers (the reproduction table), the per-set tables, and
last the provenance footer (how the runs and this evaluation were made).

Every number says what it pools: "S seeds x N graphs" (an interval over seeds and test graphs)
or "1 seed" (an interval over test graphs only).
"""
from __future__ import annotations

import math

from graphpath_common.rundir import run_names, seed_names, too_few_note
from graphpath_common.study import STUDY_FIRST_BELOW_STEPS, STUDY_SETTLE_STEPS

def _num(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.4g}"


def _section_header(doc: dict) -> list[str]:
    primary, models = doc.get("primary"), doc.get("models", {})
    lines = [f"# Evaluation report: {doc.get('title', primary)}", ""]
    for name, model in models.items():
        lines.append(f"- model `{name}`: {model.get('description', model.get('kind'))}"
                     f" ({model.get('runs', 1)} run(s), vocabulary {model.get('vocabulary')})")
    tuned = sorted({i.get("finetune_optimizer") for i in models.get("learned", {}).get("info") or []} - {None})
    if tuned:  # a fresh AdamW (the post) or the pre-training optimizer stepped on (the study's notebook)
        lines.append(f"- fine-tuned with a {' / '.join('continued' if t == 'continue' else t for t in tuned)} optimizer")
    ev = doc.get("eval", {})
    return lines + [f"- data (`study_presets` keywords): `{doc.get('data')}`",
                    f"- evaluation data: seed {ev.get('seed')}, {ev.get('size')} graphs per set, "
                    f"{ev.get('grid_size')} per grid cell; identical for every model (hashes in eval.json)",
                    f"- evaluated in {_num(ev.get('seconds', {}).get('total'))} s on {ev.get('device')}", ""]


def _section_sets(doc: dict) -> list[str]:
    primary, models = doc.get("primary"), doc.get("models", {})
    header = " | ".join(f"{m} MSE" for m in models)
    kinds = {b.get("ci_kind") for b in models.get(primary, {}).get("results", {}).values()}
    lines = ["## Every set", "", "Constant-mean MSE is the label variance: what predicting the set's mean "
             "label would score. The CI is " + ("over seeds and test graphs (log scale)." if kinds == {"seeds+graphs"} else
                                                "over the set's graphs (one seed: evaluation noise only)."), "",
             f"| set | graphs | {header} | {primary} 95% CI | {primary} accuracy | constant-mean MSE |",
             "|---|---|" + "---|" * len(models) + "---|---|---|"]
    for name in doc.get("set_data", {}):
        blocks = [m.get("results", {}).get(name) for m in models.values()]
        main = models.get(primary, {}).get("results", {}).get(name)
        any_block = next((b for b in blocks if b), None)
        if any_block is None:
            continue
        lines.append(f"| {name} | {any_block['count']} | " + " | ".join(_num(b and b['mse']) for b in blocks)
                     + f" | {_interval(main and main.get('mse_ci95'))} | "
                     f"{_num(main and main['accuracy'])} | {_num(any_block['label_variance'])} |")
    return lines


def _section_skipped(doc: dict) -> list[str]:
    skipped = {f"{m}: {s}": why for m, model in doc.get("models", {}).items()
               for s, why in model.get("skipped", {}).items()}
    return ["", "## Skipped", ""] + [f"- {k}: {v}" for k, v in skipped.items()] if skipped else []


def _section_grid(doc: dict) -> list[str]:
    primary = doc.get("primary")
    grid = doc.get("models", {}).get(primary, {}).get("results", {}).get("grid")
    if not grid:
        return []
    cells = grid["cells"]
    lines = ["", f"## Grid: MSE of `{primary}` by graph size n (rows) and target t (columns)", "",
             "Each cell pools every kind of target the (n, t) graphs hold: on a shortest 1-2 path, reachable "
             "off it, unreachable, and (t > n) not in the graph; a cell's MSE is that mixture's, not an on-path "
             "number (the on-path grid above splits on-path targets by distance).", "",
             "| n \\ t | " + " | ".join(map(str, cells["t"])) + " |", "|---|" + "---|" * len(cells["t"])]
    for n, row in zip(cells["n"], cells["mse"]):
        lines.append(f"| {n} | " + " | ".join(_num(v) if v is not None else "" for v in row) + " |")
    return lines


def near_integer_share(histogram: dict) -> float | None:
    """Share of all graphs whose raw output lies in an integer-centred bin (within 1/(2 per_hop)
    of an integer), counting each label by its graphs: 1 means the model "guesses integers"."""
    total = sum(histogram["count"])
    if not total:
        return None
    on_integer = [abs(c - round(c)) < 1e-9 for c in histogram["bins"]["centres"]]
    share = sum(n * sum(f for f, keep in zip(row, on_integer) if keep)
                for n, row in zip(histogram["count"], histogram["fraction"]))
    return share / total


def diagonal_share(histogram: dict) -> float | None:
    """Share of all graphs whose raw output lies in the bin centred on their own label."""
    total = sum(histogram["count"])
    if not total:
        return None
    column = {round(c, 6): k for k, c in enumerate(histogram["bins"]["centres"])}
    return sum(n * row[column[float(label)]] for label, n, row in
               zip(histogram["labels"], histogram["count"], histogram["fraction"])) / total


def _section_raw_outputs(doc: dict) -> list[str]:
    rows = []
    for label, model in doc.get("models", {}).items():
        for name, block in model.get("results", {}).items():
            histogram = block.get("raw_histogram")
            if histogram:
                rows.append(f"| {label} | {name} | {_num(diagonal_share(histogram))} | "
                            f"{_num(near_integer_share(histogram))} | {_num(block.get('accuracy'))} |")
    if not rows:
        return []
    per_hop = next(b["raw_histogram"]["bins"]["per_hop"] for m in doc["models"].values()
                   for b in m.get("results", {}).values() if b.get("raw_histogram"))
    return ["", "## Raw outputs", "",
            f"eval.json keeps, for every model and set, a histogram of the raw (unrounded) output per true "
            f"label (`raw_histogram`: {per_hop} bins per hop centred on multiples of 1/{per_hop}, each label's "
            "row sums to 1; figures `raw-<model>-<set>`). *On its label*: share of graphs whose output is in "
            "the bin centred on their label. *Near an integer*: share in any integer-centred bin, whether or "
            "not it is the right one (the study's un-fine-tuned model \"just guesses integers\").", "",
            "| model | set | on its label | near an integer | rounded accuracy |", "|---|---|---|---|---|", *rows]


def _section_line_probe(doc: dict) -> list[str]:
    probe = doc.get("line_probe")
    if not probe or not probe.get("models"):
        return []
    names = list(probe["models"])
    lines = ["", "## Line-graph probe", "",
             "The study's probe: the path 1 - (L+1) - L - ... - 3 - 2 of L hops (vertex 1 at one end, vertex 2 at "
             "the other, target 2), for every L the vocabulary allows. The answer should equal L.", "",
             "| length L | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for index, length in enumerate(probe["lengths"]):
        lines.append(f"| {length} | " + " | ".join(_num(probe["models"][m]["answers"][index]) for m in names) + " |")
    lines.append("| rounds to L, per seed | " + " | ".join(probe_counts(probe, m) for m in names) + " |")
    return lines + ["", "Answers are means over seeds; *rounds to L* counts, in each seed alone, the lengths whose "
                        "own answer rounds to L."]


def probe_counts(probe: dict, model: str) -> str:
    """'4, 5, 5 of 7' (per seed, each seed's own answers rounded) or '7 of 7 (1 run)'."""
    entry, total = probe["models"][model], len(probe["lengths"])
    runs = entry.get("per_run") or [entry["answers"]]
    labels = probe.get("label") or probe["lengths"]
    counts = [sum(round(a) == y for a, y in zip(answers, labels)) for answers in runs]
    return f"{', '.join(map(str, counts))} of {total}" + (" (1 run)" if len(counts) == 1 else "")


def _section_figures(doc: dict) -> list[str]:
    if not doc.get("figures"):
        return []
    stems = {}
    for path in doc["figures"]:
        stem, _, suffix = path.rpartition(".")
        stems.setdefault(stem, []).append(f"[{suffix}]({path})")
    return ["", "## Figures", ""] + [f"- `{stem.split('/')[-1]}`: {' · '.join(links)}" for stem, links in stems.items()]


def _section_provenance(doc: dict) -> list[str]:
    """The footer: how the scored runs were made and how this evaluation ran (eval.json `provenance`)."""
    from graphpath_common.provenance import describe_invocation

    def line(item: dict) -> str:
        command, details = describe_invocation(item)
        return f"`{command}` — {details}"

    made = doc.get("provenance") or {}
    lines = []
    for run in made.get("runs", []):
        recorded = [line(item) for item in run["invocations"]] or ["made before provenance was recorded"]
        lines += [f"- `{run['run']}`:"] + [f"  - {text}" for text in recorded]
    if made.get("evaluation"):
        lines.append(f"- this evaluation: {line(made['evaluation'])}")
    return ["", "## Provenance", ""] + lines if lines else []


def _interval(ci) -> str:
    return f"[{_num(ci[0])}, {_num(ci[1])}]" if ci else "—"


def _estimate(block: dict | None) -> str:
    """'value [low, high] (S seeds x N graphs)' from a statistics.Estimate dict."""
    if not block:
        return "—"
    seeds = block.get("seeds") or 1
    basis = f"{seeds} seeds x {block.get('graphs', 0):,} graphs" if seeds > 1 else f"1 seed, {block.get('graphs', 0):,} graphs"
    return f"{_num(block['value'])} {_interval(block.get('ci95'))} ({basis})"


def _p(value) -> str:
    return "—" if value is None else (f"{value:.2g}" if value >= 1e-4 else "< 1e-4")


SEEN_DEFINITION = ("a graph is seen when the hash of its edge set (the multiset of edge tokens; the target "
                   "token and n are ignored) occurs among the hashes of the union of the run's pre-training and "
                   "fine-tuning streams, replayed (graphpath.evaluation.overlap)")
THRESHOLDS_WRITTEN = ("Thresholds written in code (graphpath/evaluation/findings.py) after an earlier run on seeds "
                      "0-2 was seen; seeds 3+ are fresh.")


def thresholds_written(doc: dict) -> str:
    """When the findings' thresholds were written, and which of the run's seeds are fresh."""
    return (doc.get("threshold_provenance") or {}).get("text") or THRESHOLDS_WRITTEN


def seen_share(seen: dict | None, set_name: str = "") -> str:
    """'62% (+11% some seeds) of 1,234', '—' for the training-curve findings, or 'not checked'."""
    if not seen:
        return "—" if "training curves" in set_name else "not checked"
    some = f" (+{100 * seen['some-seeds']:.0f}% some seeds)" if seen.get("some-seeds") else ""
    return f"{100 * seen['every-seed']:.0f}%{some} of {seen['graphs']:,}"


def _section_findings(doc: dict) -> list[str]:
    findings = doc.get("findings") or []
    if not findings:
        return []
    seeds = len(seed_names(doc)) or 1
    lines = ["## The study's findings, each on the subgroup it is about", "",
             thresholds_written(doc), "",
             "Each finding is a one-sided test against its threshold; the p-values of all findings are corrected "
             "together (Benjamini-Hochberg, which controls the false discovery rate at 0.05). "
             "*holds*: corrected p < 0.05; *does not hold*: the opposite test is significant; *inconclusive*: "
             "neither. Intervals are 95% over " + ("seeds and test graphs." if seeds > 1 else
                                                    "test graphs only (one seed: seed-to-seed variation is not in them).")
             + " *Seen*: the share of the finding's subgroup whose graph occurs in every seed's training streams "
             "(and in some seeds' only) - " + SEEN_DEFINITION + ".",
             "", "| finding | subgroup | criterion | estimate [95% CI] | seen in training | p (corrected) | verdict |",
             "|---|---|---|---|---|---|---|"]
    for f in findings:
        estimate = _estimate(f.get("estimate")) if f.get("estimate") else f.get("evidence", "")
        if f.get("counts"):
            estimate += (f"; {f['counts']['subgroup']:,} graphs against a reference of {f['counts']['reference']:,} "
                         f"({f['reference']['subgroup']}, MSE {_num(f['reference']['mse'])})")
        lines.append(f"| {f['finding']} | {f['set']}: {f['subgroup']} | {f['criterion']} | {estimate} | "
                     f"{seen_share(f.get('seen'), f['set'])} | {_p(f.get('p'))} ({_p(f.get('p_adjusted'))}) | **{f['status']}** |")
    lines += ["", "Why each threshold:", ""] + [f"- {f['finding']}: {f['rationale']}" for f in findings]
    notes = [f"- {f['finding']}: {f['evidence']}" for f in findings if f.get("evidence")]
    lines += ["", "Evidence:", ""] + notes
    if doc.get("findings_note"):
        lines += ["", doc["findings_note"]]
    return lines + [""]


def _section_seeds(doc: dict) -> list[str]:
    findings = [f for f in doc.get("findings") or [] if f.get("per_seed")]
    names = seed_names(doc)
    if len(names) < 2 or not findings:
        return []
    lines = ["## Per seed", "", "Each finding's metric in each seed alone (the test above pools them).", "",
             "| finding | pooled | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for f in findings:
        pooled = _num((f.get("estimate") or {}).get("value")) if f.get("estimate") else f["status"]
        cells = [v if isinstance(v, str) else ("—" if v is None else (str(v) if isinstance(v, bool) else _num(v)))
                 for v in f["per_seed"]]
        lines.append(f"| {f['finding']} | {pooled} | " + " | ".join(cells) + " |")
    return lines + [""]


def _section_order(doc: dict) -> list[str]:
    """The order of learning per seed: the step each distance's held-out loss settles below 0.1."""
    order = {f["key"]: f for f in doc.get("findings") or []}.get("phase-order") or {}
    settle = order.get("settle")
    if not settle:
        return []
    names = run_names(doc, len(settle))
    lines = ["## Order of learning", "",
             f"The first logged pre-training step from which each distance's held-out loss stays below "
             f"{order.get('threshold', 0.1):g} (metrics.jsonl `curve_label_loss`). The study's order is 1, then 2, "
             "then 3; in its committed training log (per-step batch losses of 2^15 graphs, its first 300 steps) "
             "the same rule applied to a different curve gives " + ", ".join(str(v) for v in STUDY_SETTLE_STEPS.values())
             + " (first below 0.1: " + ", ".join(str(v) for v in STUDY_FIRST_BELOW_STEPS.values()) + "); its steps "
             "are not this run's steps, so compare the order, not the numbers. Curve points lie every other step "
             "through the warm-up and about every 1/48 of the stage after it (runs before that change: log-spaced "
             "and eval steps only, too coarse to order distances that settle after the warm-up).", "",
             "| | d = 1 | d = 2 | d = 3 | order |", "|---|---|---|---|---|",
             "| the study's log | " + " | ".join(str(v) for v in STUDY_SETTLE_STEPS.values()) + " | shortest first |"]
    for name, item in zip(names, settle):
        cells = ["never" if item["steps"].get(d) is None else f"{item['steps'][d]:,}" for d in ("1", "2", "3")]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {item['order']} |")
    return lines + ["", f"{order.get('evidence', '')}; verdict: **{order.get('status')}**.", ""]


def _subgroup_rows(table: dict, shares: dict) -> list[str]:
    rows = []
    for dimension, groups in table.items():
        for name, row in groups.items():
            share = shares.get(dimension, {}).get(name)
            rows.append(f"| {dimension} | {name} | {row['count']:,} ({_num(share and 100 * share)}%) | "
                        f"{_num(row['mse']['value'])} {_interval(row['mse'].get('ci95'))} | "
                        f"{_num(row['accuracy']['value'])} {_interval(row['accuracy'].get('ci95'))} | "
                        f"{_num(row['normalized_mse']['value'])} |")
    return rows


def _section_subgroups(doc: dict) -> list[str]:
    sub = doc.get("subgroups") or {}
    models = sub.get("models") or {}
    if not models:
        return []
    seeds = len(seed_names(doc)) or 1
    lines = ["## Every set by subgroup", "",
             "target: t = 2 (the pre-training target) or not; size: n within the fine-tuning sizes or beyond; "
             "kind: t on a shortest 1-2 path, reachable off it, unreachable, or not in the graph (t > n); "
             "distance: the label; seen: " + SEEN_DEFINITION + " (in every seed's streams / no seed's / some "
             "seeds'). Each dimension's subgroups sum back to the set. "
             "Normalized MSE: MSE over the whole set's constant-predictor MSE. "
             + (f"Pooled over {seeds} seeds; 95% intervals over seeds and graphs." if seeds > 1 else
                "One seed; 95% intervals over test graphs.") + too_few_note(sub), ""]
    for model, sets in models.items():
        for name, table in sets.items():
            lines += [f"### {name} (`{model}`)", "", "| dimension | subgroup | graphs (share) | MSE [95% CI] | "
                      "accuracy [95% CI] | normalized MSE |", "|---|---|---|---|---|---|",
                      *_subgroup_rows(table, (sub.get("shares") or {}).get(name, {})), ""]
    return lines


def _section_onpath_grid(doc: dict) -> list[str]:
    grid = doc.get("onpath_grid")
    if not grid or not grid.get("cells"):
        return []
    lines = [f"## On-path grid: `{grid['model']}` on {grid['set']}, {grid['subgroup']}", "",
             "MSE (accuracy, graphs) by graph size n (rows) and distance d (columns).", "",
             "| n \\ d | " + " | ".join(map(str, grid["d"])) + " |", "|---|" + "---|" * len(grid["d"])]
    for n, row in zip(grid["n"], grid["cells"]):
        lines.append(f"| {n} | " + " | ".join("" if c is None else f"{_num(c['mse'])} ({_num(c['accuracy'])}, {c['count']})"
                                              for c in row) + " |")
    return lines + [""]


def _section_overlap(doc: dict) -> list[str]:
    overlap = doc.get("overlap")
    if not overlap:
        return []
    lines = ["## Test graphs seen in training", "", SEEN_DEFINITION[0].upper() + SEEN_DEFINITION[1:] + ".", ""]
    for name, stages in zip(run_names(doc, len(overlap["stages"])), overlap["stages"]):
        lines.append(f"- {name}: " + "; ".join(
            f"{s['stage']}: {s['source']} ({s['distinct']:,} distinct graphs"
            f"{', replay verified against the final checkpoint' if s.get('verified') else ''})" for s in stages))
    lines += ["", "| set | seen in every seed's training | some seeds' | none |", "|---|---|---|---|"]
    for name, shares in overlap["shares"].items():
        lines.append(f"| {name} | {_num(100 * shares.get('seen-in-training', 0))}% | "
                     f"{_num(100 * shares.get('seen-by-some-seeds', 0))}% | {_num(100 * shares.get('unseen', 0))}% |")
    return lines + [""]


def _section_departures(doc: dict) -> list[str]:
    rows = doc.get("departures")
    if not rows:
        return []
    differ = [r for r in rows if r["differs"]]
    lines = ["## This run vs the study", "", f"{len(differ)} of {len(rows)} settings differ from the study's "
             "(rows marked **differs**; perturbation rows are filled by the page when perturb.json exists).", "",
             "| group | setting | study | this run | |", "|---|---|---|---|---|"]
    for r in rows:
        mark = {True: "**differs**", False: "same", None: "not run"}[r["differs"]]
        lines.append(f"| {r['group']} | {r['what']} | {r['study']} | {r['run']} | {mark} |")
    return lines + [""]


def _section_reproduction(doc: dict) -> list[str]:
    rows = doc.get("reproduction")
    if not rows:
        return []
    lines = ["## The study's numbers on its own (mixed) sets", "",
             "Each of the study's numbers is the MSE of a whole set; the on-path sets are mostly t = 2, the "
             "pre-training target, and the off-path sets mix reachable, unreachable and absent targets, so "
             "these rows reproduce the study's table but judge nothing (the findings above use the subgroups). "
             "Normalized MSE divides by the set's constant-predictor MSE (its label variance), the scale on "
             "which sets with different vertex counts (another unreachable label) compare; the study reports "
             "no accuracy. The pre-train row is the run's pre-training checkpoint (before fine-tuning) on the "
             "pre-train set, as the study's number is.", "",
             "| quantity | study MSE | this run MSE [95% CI] | study normalized | this run normalized | "
             "accuracy [95% CI] | basis | finding |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        word = f" ({r['study_verdict']})" if r["study_verdict"] else ""
        lines.append(f"| {r['quantity']} | {_num(r['study_mse'])}{word} | {_num(r['mse'])} {_interval(r.get('mse_ci95'))} | "
                     f"{_num(r.get('study_normalized_mse'))} | {_num(r.get('normalized_mse'))} | "
                     f"{_num(r.get('accuracy'))} {_interval(r.get('accuracy_ci95'))} | {r.get('basis') or r['source']} | "
                     f"{r['finding'] if r.get('status') is None else r['finding'] + ': ' + r['status']} |")
    return lines + [""]


SECTIONS = (_section_header, _section_findings, _section_order, _section_seeds, _section_subgroups, _section_onpath_grid,
            _section_overlap, _section_departures, _section_reproduction, _section_sets, _section_skipped,
            _section_grid, _section_raw_outputs, _section_line_probe, _section_figures, _section_provenance)


def render(doc: dict) -> str:
    """report.md from an eval.json document: each section of SECTIONS in turn (empty when the
    document lacks what it shows)."""
    return "\n".join(line for section in SECTIONS for line in section(doc)) + "\n"
