"""The page's footer: how the run was made (its provenance.json) and how it was scored (eval.json's
`provenance`), one line per command (graphpath_common.provenance describes the entries).

    provenance_footer  Html  the commands, package version and commit, libraries, device, times
"""
from __future__ import annotations

from graphpath_common.provenance import describe_invocation

from .html import Html, escape
from .rundir import Run


def _item(item: dict) -> str:
    command, details = describe_invocation(item)
    return f"<li><code>{escape(command)}</code> — {escape(details)}</li>"


def provenance_footer(run: Run) -> Html:
    made = (run.provenance or {}).get("invocations") or []
    scored = (run.eval.get("provenance") or {}).get("evaluation")
    parts = [_item(item) for item in made] or ["<li>made before provenance was recorded</li>"]
    if scored:
        command, details = describe_invocation(scored)
        parts.append(f"<li>scored by <code>{escape(command)}</code> — {escape(details)}</li>")
    return Html('<footer class="provenance"><p>How this run was made:</p><ul>' + "".join(parts) + "</ul></footer>")


FOOTER = {"provenance_footer": provenance_footer}
