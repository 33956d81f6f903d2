"""The reproduction report: the study's numbers next to ours, and whether its findings hold.

`study_rows(doc)` and `findings(doc, phases)` fill eval.json's "study" and "findings" lists from
the scored sets; `render_markdown(doc)` writes report.md from eval.json alone (so the blog, or a
reader, can rebuild it). Criteria for a qualitative finding are the named constants below.
"""
from __future__ import annotations

import math

GOOD_MSE = 0.25  # RMS error under half a hop: most predictions round to the true distance
FAIL_MSE = 1.0  # RMS error of a whole hop or more: the answer is not the distance
LOW_MSE = 0.05  # pre-training "reaches a low loss": the study's 0.0016 with room for a CPU budget
CHEAP_RATIO = 5.0  # fine-tuning lowers the fine-tune set's MSE at least this many times

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


FINDING_OF = {"pretrain": "pre-training reaches a low loss", "finetune-before": "fine-tuning is cheap",
              "finetune-after": "fine-tuning is cheap", "test-onpath-small": "on-path small targets generalize",
              "test-onpath-large": "large on-path targets generalize partly",
              "test-any-small": "off-path targets fail", "test-any-large-smalltarget": "off-path targets fail",
              "test-any-large": "off-path targets fail"}


def study_rows(doc: dict) -> list[dict]:
    """One row per study number: ours from the scored sets, with its CI and where it came from.
    `finding`/`holds` are filled in by `attach_findings`."""
    rows = []
    for key, quantity, value, word, model, name in STUDY:
        model = doc.get("primary", "learned") if model == "learned" else model
        block, source = _result(doc, model, name), f"{model} model on set {name}"
        if block is None and model == "learned-pretrain" and name == "pretrain":
            block, source = _result(doc, "learned", name), "final (fine-tuned) model on set pretrain"
        rows.append({"key": key, "set": name, "quantity": quantity, "study_mse": value, "study_verdict": word,
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
    """Copy each finding's verdict onto the reproduction rows that bear on it."""
    verdict = {f["finding"]: f["holds"] for f in doc["findings"]}
    for row in doc["reproduction"]:
        row["holds"] = verdict.get(row["finding"])


def _finetune_pair(mse: dict, phases: dict | None) -> tuple[float | None, float | None, str]:
    if mse.get("finetune-before") is not None and mse.get("finetune-after") is not None:
        return mse["finetune-before"], mse["finetune-after"], "evaluated on the fine-tune set"
    tune = (phases or {}).get("finetune") or {}
    if tune.get("loss_before") is not None and tune.get("loss_after") is not None:
        return float(tune["loss_before"]), float(tune["loss_after"]), "phases.json finetune"
    return None, None, "no fine-tuning data"


def judge(mse: dict, phases: dict | None) -> list[dict]:
    """Each qualitative finding: holds (True/False) or None when the data to judge is missing.

    mse: {study row key: MSE}; phases: the run's phases.json (or None)."""
    small, large = mse.get("test-onpath-small"), mse.get("test-onpath-large")
    off = [mse.get(k) for k in OFF_PATH_SETS]
    before, after, where = _finetune_pair(mse, phases)
    tune = (phases or {}).get("finetune") or {}
    if where != "phases.json finetune" and tune.get("loss_before") is not None and tune.get("loss_after") is not None:
        where += f"; phases.json {tune['loss_before']:.4g} -> {tune['loss_after']:.4g}"
    changes = None if phases is None else phases.get("phase_changes")
    fmt = lambda x: "n/a" if x is None else f"{x:.4g}"  # noqa: E731
    pre = mse.get("pretrain")
    out = [
        ("pretrain-low-loss", "pre-training reaches a low loss", f"pretrain MSE <= {LOW_MSE}",
         None if pre is None else pre <= LOW_MSE, f"MSE {fmt(pre)}"),
        ("onpath-small-generalizes", "on-path small targets generalize",
         f"test-onpath-small MSE <= {GOOD_MSE}", None if small is None else small <= GOOD_MSE,
         f"MSE {fmt(small)}"),
        ("onpath-large-partly", "large on-path targets generalize partly",
         f"test-onpath-small MSE < test-onpath-large MSE < {FAIL_MSE}",
         None if small is None or large is None else small < large < FAIL_MSE,
         f"small {fmt(small)}, large {fmt(large)}"),
        ("offpath-fails", "off-path targets fail", f"every test-any-* MSE >= {FAIL_MSE}",
         None if any(v is None for v in off) else min(off) >= FAIL_MSE,
         ", ".join(f"{k} {fmt(v)}" for k, v in zip(OFF_PATH_SETS, off))),
        ("finetune-cheap", "fine-tuning is cheap", f"fine-tune MSE falls >= {CHEAP_RATIO:g}x",
         None if before is None else after * CHEAP_RATIO <= before,
         f"{fmt(before)} -> {fmt(after)} ({where})"),
        ("phase-changes", "phase changes occur", "phases.json lists >= 1 phase change",
         None if changes is None else len(changes) >= 1,
         "no phases.json" if changes is None else f"{len(changes)} phase change(s)" + "".join(
             f"; label {c.get('label')} at step {c.get('step')} ({c.get('stage')})" for c in changes[:6])),
    ]
    return [{"key": k, "finding": f, "criterion": c, "holds": h, "evidence": e} for k, f, c, h, e in out]


def findings(doc: dict, phases_per_run: list[dict | None]) -> list[dict]:
    """Findings on the pooled numbers, plus in how many runs each holds (where per-run data exist)."""
    rows = {r["key"]: None if r["source"].startswith("phases.json") else r["mse"] for r in doc["reproduction"]}
    pooled = judge(rows, phases_per_run[0] if len(phases_per_run) == 1 else None)
    if len(phases_per_run) > 1:
        per_run_mse = []
        for i in range(len(phases_per_run)):
            values = {}
            for key, _, _, _, model, name in STUDY:
                block = _result(doc, doc.get("primary", "learned") if model == "learned" else model, name)
                runs = (block or {}).get("per_run", {}).get("mse")
                values[key] = runs[i] if runs and i < len(runs) else None
            per_run_mse.append(values)
        per_run = [judge(m, p) for m, p in zip(per_run_mse, phases_per_run)]
        for index, row in enumerate(pooled):
            votes = [r[index]["holds"] for r in per_run]
            known = [v for v in votes if v is not None]
            row["runs_holding"] = f"{sum(known)}/{len(known)}" if known else None
            row["per_run"] = [{"holds": r[index]["holds"], "evidence": r[index]["evidence"]} for r in per_run]
            if row["holds"] is None and known:  # fine-tuning and phases are judged per run only
                row["holds"] = sum(known) * 2 > len(known)
                row["evidence"] = "; ".join(f"run {i}: {r[index]['evidence']}" for i, r in enumerate(per_run))
    return pooled


# ---- markdown ----------------------------------------------------------------------------------

def _num(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.4g}"


def _ci(ci, kind) -> str:
    if not ci:
        return "— (one run: no seed CI)" if kind == "seeds" or kind is None else "—"
    return f"[{_num(ci[0])}, {_num(ci[1])}] ({'across seeds' if kind == 'seeds' else 'over the set’s graphs'})"


def _interval(ci) -> str:
    return f"[{_num(ci[0])}, {_num(ci[1])}]" if ci else "—"


def _verdict(holds) -> str:
    return {True: "holds", False: "does not hold", None: "unknown"}[holds]


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


def _section_reproduction(doc: dict) -> list[str]:
    rows = doc.get("reproduction")
    if not rows:
        return []
    runs = max((r["runs"] or 1) for r in rows)
    lines = ["## The study's numbers (MSE)", "",
             "Single run: the CI is over the set's graphs (evaluation noise only). Several runs "
             "(`--runs`): a t-interval across seeds." if runs == 1 else
             f"Mean over {runs} runs with a 95% t-interval across seeds.",
             "The pre-train row is the run's pre-training checkpoint (before fine-tuning) on the pre-train "
             "set, as the study's number is.", "",
             f"| quantity | study | {'this run' if runs == 1 else 'these runs (mean)'} | 95% CI | source |",
             "|---|---|---|---|---|"]
    for r in rows:
        word = f" ({r['study_verdict']})" if r["study_verdict"] else ""
        lines.append(f"| {r['quantity']} | {_num(r['study_mse'])}{word} | {_num(r['mse'])} | "
                     f"{_ci(r['mse_ci95'], r['ci_kind'])} | {r['source']} |")
    return lines + [""]


def _section_findings(doc: dict) -> list[str]:
    if not doc.get("findings"):
        return []
    lines = ["## The study's findings here", "", "| finding | criterion | here | evidence |", "|---|---|---|---|"]
    for f in doc["findings"]:
        runs = f" ({f['runs_holding']} runs)" if f.get("runs_holding") else ""
        lines.append(f"| {f['finding']} | {f['criterion']} | **{_verdict(f['holds'])}**{runs} | {f['evidence']} |")
    return lines + [""]


def seed_names(doc: dict) -> list[str]:
    """'seed S' for each pooled run (from the learned model's checkpoints), else 'run i'."""
    info = doc.get("models", {}).get(doc.get("primary"), {}).get("info") or []
    seeds = [i.get("seed") for i in info]
    if seeds and all(s is not None for s in seeds) and len(set(seeds)) == len(seeds):
        return [f"seed {s}" for s in seeds]
    return [f"run {i}" for i in range(len(info))]


def seed_agreement(finding: dict) -> str:
    """Whether a pooled finding holds in every seed: "every seed", "on average only", "in some
    seeds only", "in no seed", or "not judged per seed"."""
    votes = [r["holds"] for r in finding.get("per_run") or []]
    if not votes or any(v is None for v in votes):
        return "not judged per seed"
    if all(votes):
        return "every seed"
    if finding["holds"]:
        return "on average only"
    return "in some seeds only" if any(votes) else "in no seed"


def _section_seeds(doc: dict) -> list[str]:
    pooled = [f for f in doc.get("findings", []) if f.get("per_run")]
    if not pooled:
        return []
    names = seed_names(doc)
    groups = {}
    for f in pooled:
        groups.setdefault(seed_agreement(f), []).append(f["finding"])
    lines = ["## Across seeds", "",
             f"{len(names)} runs pooled ({', '.join(names)}). A finding that holds on the pooled numbers "
             "may still fail in a single seed; each was judged again on every seed's own numbers.", ""]
    for group, title in (("every seed", "Holds in every seed"), ("on average only", "Holds on average only"),
                         ("in some seeds only", "Fails on average, holds in some seeds"),
                         ("in no seed", "Holds in no seed"), ("not judged per seed", "Not judged per seed")):
        if group in groups:
            lines.append(f"- **{title}:** " + "; ".join(groups[group]))
    lines += ["", "| finding | pooled | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for f in pooled:
        cells = [f"{_verdict(r['holds'])}: {r['evidence']}" for r in f["per_run"]]
        lines.append(f"| {f['finding']} | {_verdict(f['holds'])} | " + " | ".join(cells) + " |")
    rows = [r for r in doc.get("reproduction", []) if r.get("per_run")]
    if rows:
        lines += ["", "Per-seed MSE:", "", "| quantity | mean | " + " | ".join(names) + " |",
                  "|---|---|" + "---|" * len(names)]
        for r in rows:
            lines.append(f"| {r['quantity']} | {_num(r['mse'])} | " + " | ".join(map(_num, r["per_run"])) + " |")
    return lines + [""]


def _section_sets(doc: dict) -> list[str]:
    primary, models = doc.get("primary"), doc.get("models", {})
    header = " | ".join(f"{m} MSE" for m in models)
    kinds = {b.get("ci_kind") for b in models.get(primary, {}).get("results", {}).values()}
    lines = ["## Every set", "", "Constant-mean MSE is the label variance: what predicting the set's mean "
             "label would score. The CI is " + ("across seeds." if kinds == {"seeds"} else
                                                "over the set's graphs (evaluation noise only)."), "",
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
    lines.append("| rounds to L | " + " | ".join(f"{probe['models'][m]['rounded_exact']}/{len(probe['lengths'])}"
                                                  for m in names) + " |")
    return lines


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


SECTIONS = (_section_header, _section_reproduction, _section_findings, _section_seeds, _section_sets,
            _section_skipped, _section_grid, _section_raw_outputs, _section_line_probe, _section_figures,
            _section_provenance)


def render_markdown(doc: dict) -> str:
    """report.md from an eval.json document: each section of SECTIONS in turn (empty when the
    document lacks what it shows)."""
    return "\n".join(line for section in SECTIONS for line in section(doc)) + "\n"
