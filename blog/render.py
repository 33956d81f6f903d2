"""Run directory -> `OUT/index.html` + `OUT/assets/` (plotly.js, d3, mpld3, style.css): offline.

The page loads its scripts from `assets/` beside it, copied from the installed plotly and mpld3
packages, so it opens from `file://` with no network. Every file is written to a temporary name
and renamed; index.html is written last, so a page that exists is complete.
"""
from __future__ import annotations

import re
from pathlib import Path

import mpld3.urls
import plotly.offline

from graphpath_common.files import WriteError, atomic_write_bytes

from .capacity import CAPACITY
from .evidence import EVIDENCE
from .figures import FIGURES
from .footer import FOOTER
from .inside import INSIDE, available as inside_available
from .outputs import OUTPUTS, available as outputs_available
from .perturbation import PERTURBATION
from .studies import STUDIES
from .transfer import TRANSFER, available as transfer_available
from .html import Html, Text, escape
from .markup import placeholders, select_sections, to_html
from .rundir import BlogError, Run, load_run
from .values import VALUES, handcrafted_info

PACKAGE = Path(__file__).resolve().parent
POST = PACKAGE / "post.md"
PROVIDERS = {**VALUES, **EVIDENCE, **FIGURES, **PERTURBATION, **STUDIES, **TRANSFER, **INSIDE, **CAPACITY, **OUTPUTS, **FOOTER}


class MissingValuesError(BlogError):
    """Placeholders the run cannot fill; the message lists every one."""


class OutputError(BlogError):
    """The page cannot be written where asked."""


def conditions(run: Run) -> dict[str, bool]:
    """Optional sections of the post and whether this run has what they show."""
    handcrafted = run.eval.get("models", {}).get("handcrafted") or {}
    size = handcrafted_info(run)
    return {"handcrafted": bool(size), "handcrafted_stream": bool(size.get("stream")),
            "handcrafted_scored": bool(handcrafted.get("results")),
            "perturb": bool(run.perturb), "grid": "grid" in run.eval,
            "studies": bool(run.studies), "edt": "edt" in run.studies, "partial": "partial" in run.studies, "mixture": "mixture" in run.studies,
            # phases.json's `finetune` stays null until fine-tuning has finished
            "finetune": bool(run.stage_metrics("finetune")) and run.phases.get("finetune") is not None,
            **inside_available(run), **outputs_available(run), **transfer_available(run)}


def resolve(keys: list[str], run: Run) -> dict[str, Text | Html]:
    """Every key's value, or MissingValuesError naming every key that has none (and why)."""
    values, missing = {}, []
    for key in keys:
        provider = PROVIDERS.get(key)
        if provider is None:
            missing.append(f"{key} (no such value or figure)")
            continue
        try:
            values[key] = provider(run)
        except (LookupError, TypeError, ValueError, AttributeError, ArithmeticError) as err:
            reason = f"missing {err}" if isinstance(err, KeyError) else str(err)
            missing.append(f"{key} ({reason or type(err).__name__})")
    if missing:
        raise MissingValuesError(f"cannot build the page from {run.path}: {len(missing)} "
                                 f"placeholder(s) have no value: {'; '.join(missing)}")
    return values


def _assets() -> dict[str, bytes]:
    return {
        "plotly.min.js": plotly.offline.get_plotlyjs().encode("utf-8"),
        "d3.min.js": Path(mpld3.urls.D3_LOCAL).read_bytes(),
        "mpld3.min.js": Path(mpld3.urls.MPLD3MIN_LOCAL).read_bytes(),
        "style.css": (PACKAGE / "assets" / "style.css").read_bytes(),
    }


def page(body: str, title: str) -> str:
    scripts = "\n".join(f'<script src="assets/{name}"></script>'
                        for name in ("plotly.min.js", "d3.min.js", "mpld3.min.js"))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<link rel="stylesheet" href="assets/style.css">
{scripts}
</head>
<body>
<main>
{body}
</main>
</body>
</html>
"""


def build_html(run: Run, post: Path = POST) -> str:
    """The page's HTML for `run` (no files written)."""
    try:
        source = post.read_text(encoding="utf-8")
    except OSError as err:
        raise BlogError(f"cannot read the post's source {post}: {err}") from None
    text = select_sections(source, conditions(run))
    body = to_html(text, resolve(placeholders(text), run))
    heading = re.search(r"<h1>(.*?)</h1>", body)
    title = re.sub(r"<[^>]+>", "", heading.group(1)) if heading else "graphpath"
    return page(body, f"{title} — {run.name}")


def render(run_dir: str | Path, out_dir: str | Path, post: str | Path = POST) -> Path:
    """Builds the page for `run_dir` into `out_dir`; returns the path of `out_dir/index.html`.

    Raises BlogError (RunDirError, MissingValuesError, OutputError, TemplateError) with a
    one-line message; nothing is written unless the whole page could be built.
    """
    return write_page(load_run(run_dir), out_dir, post)


def write_page(run: Run, out_dir: str | Path, post: str | Path = POST) -> Path:
    """`render` for a loaded run: the page is built whole, then written (index.html last)."""
    document = build_html(run, Path(post))
    out_dir = Path(out_dir)
    try:
        for name, data in _assets().items():
            atomic_write_bytes(out_dir / "assets" / name, data)
        index = out_dir / "index.html"
        atomic_write_bytes(index, document.encode("utf-8"))
    except WriteError as err:
        raise OutputError(f"cannot write the page to {out_dir}: {err}") from None
    return index

