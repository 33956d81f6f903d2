"""The post's numbers, tables and lists, each computed from the run directory alone.

Every provider takes a `Run` and returns `Text` (escaped where it lands) or `Html` (tables built
with `html.table`, which escapes each cell). A provider raises LookupError / TypeError /
ValueError when the run lacks what it needs; the renderer reports that key as missing.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from graphpath_common.rundir import RunDir

from .html import Html, Text, escape, table
from .rundir import Run


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def fmt(x: float) -> str:
    """A loss or rate with four significant figures, without exponent noise for everyday sizes;
    None (a diverged loss written as null) reads as a dash."""
    if x is None:
        return "—"
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x != 0 and (abs(x) < 1e-4 or abs(x) >= 1e6):
        mantissa, exponent = f"{x:.3e}".split("e")
        return f"{mantissa} × 10{str(int(exponent)).translate(_SUPERSCRIPT)}"
    return f"{x:.4g}"


def fmt_ci(block: dict) -> str:
    """A study JSON's {"mean", "ci95"} block as "mean [low, high]" ("—" when there is no mean)."""
    if block.get("mean") is None:
        return "—"
    ci = block.get("ci95")
    return fmt(block["mean"]) + (f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "")


def count(x: int) -> str:
    return f"{int(x):,}"


def _last(rows: list[dict], stage: str) -> dict:
    stage_rows = [row for row in rows if row.get("stage") == stage]
    if not stage_rows:
        raise LookupError(f"no {stage} rows in metrics.jsonl")
    return stage_rows[-1]


def run_name(run: Run) -> Text:
    return Text(run.name)


def max_vertices(run: Run) -> Text:
    return Text(str(run.eval.get("max_vertices") or run.config["data"]["n_max"]))


def pretrain_examples(run: Run) -> Text:
    return Text(count(_last(run.metrics, "pretrain")["examples"]))


def pretrain_final_loss(run: Run) -> Text:
    """The held-out loss where the run logged one, else the last training-batch loss."""
    rows = run.stage_metrics("pretrain")
    held_out = [row for row in rows if row.get("eval_loss") is not None]
    row = held_out[-1] if held_out else _last(run.metrics, "pretrain")
    return Text(f"{fmt(row['eval_loss'] if held_out else row['loss'])} "
                f"({'held-out' if held_out else 'last training batch'})")


def _parameter_count(weights: Path) -> int:
    """Sum of tensor sizes from a safetensors header (8-byte length, then JSON); no tensor is read.
    A damaged file is a ValueError naming it."""
    try:
        with weights.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        return sum(math.prod(entry["shape"]) for key, entry in header.items() if key != "__metadata__")
    except (OSError, struct.error, ValueError, TypeError, KeyError, AttributeError) as err:
        raise ValueError(f"{weights} is damaged or not a safetensors file ({type(err).__name__}: {err})") from None


def model_parameters(run: Run) -> Text:
    for stage in ("finetune", "pretrain"):
        weights = RunDir(run.model_dir).weights(stage)
        if weights.is_file():
            return Text(count(_parameter_count(weights)))
    raise LookupError("no checkpoints/<stage>-final.safetensors")


def scale_note(run: Run) -> Text:
    """This run's scale next to the study's (3.14e8 pre-training examples, graphs up to n = 15)."""
    examples = _last(run.metrics, "pretrain")["examples"]
    n_max = run.config["data"]["n_max"]
    return Text(f"This run pre-trained on {count(examples)} examples of graphs with up to {n_max} "
                f"vertices; the study used {fmt(3.14e8)} examples and up to 15 vertices.")


def model_summary(run: Run) -> Text:
    model = run.config["model"]
    d_ff = model.get("d_ff") or 4 * model["d_model"]
    return Text(f"width {model['d_model']}, {model['n_layers']} layers of {model['n_heads']} heads, "
                f"MLP width {d_ff}, {model.get('norm', 'pre')}-norm, "
                f"{model_parameters(run)} parameters")


def table_datasets(run: Run) -> Html:
    data = run.config["data"]
    n_max, ft, small = data["n_max"], data["finetune_n_max"], data["small_target"]
    rows = [["pre-train", f"3..{n_max}", "t = 2"],
            ["fine-tune", f"3..{ft}", "t on a shortest 1–2 path"],
            ["test: on-path small target", f"3..{n_max}", f"on-path t ≤ {small}"],
            ["test: on-path target", f"3..{n_max}", "any on-path t"],
            ["test: any target, small graphs", f"3..{ft}", f"any t in 2..{small}"],
            ["test: any small target, large graphs", f"3..{n_max}", f"any t in 2..{small}"],
            ["test: any target, large graphs", f"3..{n_max}", f"any t in 2..{n_max}"]]
    return table(["stage", "vertices n", "target"], rows)


def handcrafted_info(run: Run) -> dict:
    """The hand-built model's size (and stream map, if recorded): the evaluator's record of the
    model it scored (eval.json models.handcrafted.info[0]), else the size graphpath.analysis.perturb
    recorded for it (perturb-*.json target.size). {} when neither is in the run."""
    info = (run.eval.get("models", {}).get("handcrafted") or {}).get("info") or []
    if info and isinstance(info[0], dict) and "layers" in info[0]:
        return info[0]
    for doc in run.perturb:
        if doc.get("target", {}).get("model") == "handcrafted" and "size" in doc["target"]:
            return doc["target"]["size"]
    return {}


def _handcrafted(run: Run) -> dict:
    info = handcrafted_info(run)
    if not info:
        raise LookupError("the run records no size for the hand-built model")
    return info


def handcrafted_scores(run: Run) -> dict[str, float]:
    """{set: MSE} of the hand-built model, as the evaluator scored it beside the learned one."""
    results = run.eval["models"]["handcrafted"]["results"]
    if not results:
        raise LookupError("eval.json has no hand-built model results")
    return {name: block["mse"] for name, block in results.items()}


def handcrafted_n(run: Run) -> Text:
    return Text(str(_handcrafted(run)["n"]))


def handcrafted_layers(run: Run) -> Text:
    return Text(str(_handcrafted(run)["layers"]))


def handcrafted_heads(run: Run) -> Text:
    info = _handcrafted(run)
    return Text(str(info["heads_per_layer"] if "heads_per_layer" in info else info["heads"]))


def handcrafted_width(run: Run) -> Text:
    return Text(str(_handcrafted(run)["width"]))


def handcrafted_parameters(run: Run) -> Text:
    return Text(count(_handcrafted(run)["parameters"]))


def handcrafted_mse(run: Run) -> Text:
    """Its worst MSE over every set the evaluator scored, and how many sets that is."""
    scores = handcrafted_scores(run)
    worst = max(scores, key=scores.get)
    if scores[worst] == 0:
        return Text(f"exactly 0 on every one of the {len(scores)} evaluation sets")
    return Text(f"at most {fmt(scores[worst])} over the {len(scores)} evaluation sets "
                f"(largest on {worst})")


def table_stream(run: Run) -> Html:
    """Accepts [{section, start|columns, width, meaning?}] or Basis.sections' [[name, width]]."""
    stream = _handcrafted(run)["stream"]
    if not stream:
        raise ValueError("the hand-built model's stream map is empty")
    rows, start = [], 0
    for item in stream:
        if isinstance(item, dict):
            name, width = item["section"], int(item["width"])
            start = item.get("start", item.get("columns", [start])[0])
            meaning = item.get("meaning", "")
        else:
            (name, width), meaning = item, ""
        rows.append([name, f"{start}..{start + width - 1}", width, meaning])
        start += width
    if not any(row[3] for row in rows):
        return table(["section", "columns", "width"], [row[:3] for row in rows])
    return table(["section", "columns", "width", "what it holds"], rows)


def phase_changes_found(run: Run) -> Text:
    """'no phase change', '1 phase change', '3 phase changes' (pre-training)."""
    found = sum(pc["stage"] == "pretrain" for pc in run.phases["phase_changes"])
    return Text(f"{found or 'no'} phase change{'' if found == 1 else 's'}")


def table_phase_changes(run: Run) -> Html:
    changes = sorted((pc for pc in run.phases["phase_changes"]), key=lambda pc: (pc["stage"], pc["step"]))
    if not changes:
        return Html('<p class="none-found">No phase change was detected in this run.</p>')
    mv = str(run.eval.get("max_vertices") or run.config["data"]["n_max"])
    rows = [[pc["stage"], "total" if pc["label"] == "all" else
             ("unreachable" if str(pc["label"]) == mv else f"d = {pc['label']}"),
             count(pc["step"]), count(pc["examples"]), count(pc["plateau_steps"]),
             fmt(pc["loss_before"]), fmt(pc["loss_after"])] for pc in changes]
    return table(["stage", "label", "step", "examples", "plateau (steps)", "loss before",
                  "loss after"], rows)


def finetune_before(run: Run) -> Text:
    return Text(fmt(run.phases["finetune"]["loss_before"]))


def finetune_after(run: Run) -> Text:
    return Text(fmt(run.phases["finetune"]["loss_after"]))


def finetune_steps(run: Run) -> Text:
    return Text(count(_last(run.metrics, "finetune")["step"]))


def _reproduction(run: Run) -> list[dict]:
    rows = run.eval["reproduction"]
    if not rows:
        raise ValueError("eval.json has an empty reproduction table")
    return rows


def _verdict(holds) -> str:
    return {True: "holds", False: "does not hold"}.get(holds, "not tested")


def table_reproduction(run: Run) -> Html:
    rows = []
    for row in _reproduction(run):
        ci = row.get("mse_ci95")
        study = fmt(row["study_mse"]) + (f" ({row['study_verdict']})" if row.get("study_verdict") else "")
        rows.append([row.get("quantity", row["set"]), study,
                     "—" if row["mse"] is None else fmt(row["mse"]),
                     f"{fmt(ci[0])} – {fmt(ci[1])}" if ci else "—", row["finding"],
                     _verdict(row["holds"])])
    return table(["quantity", "study MSE", "this run", "95% CI", "the study's finding", "here"], rows)


def list_findings(run: Run) -> Html:
    """The evaluator's findings (eval.json `findings`: finding, criterion, holds, evidence),
    reproduced ones first, then the size comparison from the (n, t) grid."""
    label = {True: "Reproduced", False: "Not reproduced", None: "Not tested"}
    items = []
    for row in sorted(run.eval["findings"], key=lambda row: {True: 0, False: 1}.get(row["holds"], 2)):
        items.append(f"<li><strong>{label[row['holds']]}:</strong> {escape(row['finding'])} "
                     f"<span class=\"evidence\">(criterion: {escape(row['criterion'])}; this run: "
                     f"{escape(row['evidence'])})</span></li>")
    if not items:
        raise ValueError("eval.json lists no findings")
    return Html('<ul class="findings">\n' + "\n".join(items + _grid_findings(run)) + "\n</ul>")


def _grid_findings(run: Run) -> list[str]:
    """Rounded accuracy inside vs beyond the fine-tuning sizes, from the (n, t) grid if present."""
    grid = run.eval.get("grid") or {}
    if grid.get("train_n_max") is None or not grid.get("accuracy"):
        return []
    inside, beyond = [], []
    for n, row, counts in zip(grid["n"], grid["accuracy"], grid["count"]):
        for value, cells in zip(row, counts):
            if value is not None and cells:
                (inside if n <= grid["train_n_max"] else beyond).append((value, cells))

    def mean(cells):
        return sum(v * c for v, c in cells) / sum(c for _, c in cells)

    if not inside or not beyond:
        return []
    return [f"<li><strong>Size:</strong> on the (n, t) grid, {mean(inside):.1%} of answers are right "
            f"after rounding on graphs up to n = {escape(grid['train_n_max'])} (the fine-tuning "
            f"sizes), and {mean(beyond):.1%} on larger graphs.</li>"]


VALUES = {name: provider for name, provider in list(globals().items())
          if callable(provider) and getattr(provider, "__module__", None) == __name__
          and not name.startswith("_")
          and name not in ("fmt", "count", "handcrafted_scores", "handcrafted_info")}
