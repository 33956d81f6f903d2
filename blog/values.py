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

from .html import Html, Text, table
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
    who = f"{run.model_dir.name}, " if run.seed_runs else ""
    return Text(f"{fmt(row['eval_loss'] if held_out else row['loss'])} "
                f"({who}{'held-out set' if held_out else 'last training batch'})")


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
    """'no phase change', '1 phase change', '3 phase changes' in pre-training, over every seed
    scored (eval.json `phases`, else the run's phases.json)."""
    runs = run.eval.get("phases") or []
    runs = runs if len(runs) > 1 else [run.phases]
    found = sum(pc["stage"] == "pretrain" for phases in runs for pc in (phases or {}).get("phase_changes", []))
    where = f" over {len(runs)} seeds" if len(runs) > 1 else ""
    return Text(f"{found or 'no'} phase change{'' if found == 1 else 's'}{where}")


def _finetune(run: Run, key: str, field: str) -> Text:
    """The pooled number from eval.json's study row (all seeds, the evaluator's fine-tune set), else
    the trainer's own held-out number for the first seed (phases.json); the text says which."""
    row = next((r for r in run.eval.get("reproduction", []) if r.get("key") == key), None)
    if row is not None and row.get("mse") is not None and not str(row.get("source", "")).startswith("phases.json"):
        return Text(f"{fmt(row['mse'])} ({row.get('basis') or row.get('source')})")
    seed = run.model_dir.name if run.seed_runs else "this run"
    return Text(f"{fmt(run.phases['finetune'][field])} ({seed}, the trainer's held-out set)")


def finetune_before(run: Run) -> Text:
    return _finetune(run, "finetune-before", "loss_before")


def finetune_after(run: Run) -> Text:
    return _finetune(run, "finetune-after", "loss_after")


def finetune_steps(run: Run) -> Text:
    return Text(count(_last(run.metrics, "finetune")["step"]))


VALUES = {name: provider for name, provider in list(globals().items())
          if callable(provider) and getattr(provider, "__module__", None) == __name__
          and not name.startswith("_")
          and name not in ("fmt", "count", "handcrafted_scores", "handcrafted_info")}
