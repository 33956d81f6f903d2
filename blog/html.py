"""Two kinds of placeholder value, and embedding figures as offline HTML fragments.

`Text` is run data (names, labels, numbers): it is HTML-escaped where it lands. `Html` is markup
this package wrote itself, escaping any run text inside it as it went. Figures are embedded as a
`<figure class="blog-figure" data-kind=...>` holding a div and a script that draws into it with
the plotly.js / mpld3 copies loaded once by the page (never a CDN); the JSON spec is made safe to
sit inside `<script>` by escaping `</` and `<!--`.
"""
from __future__ import annotations

import html
import json
import re

import matplotlib.pyplot as plt
import mpld3


class Text(str):
    """Run-derived text; escaped when inserted into the page."""


class Html(str):
    """Markup produced by this package; inserted as is."""


def escape(value) -> str:
    return html.escape(str(value), quote=True)


def script_json(value) -> str:
    """JSON that can sit inside <script>: no `</script>` or `<!--` can appear in it."""
    # NaN and Infinity stay as they are: valid JavaScript, which is what this text is read as
    return json.dumps(value).replace("</", "<\\/").replace("<!--", "<\\!--")


def _figure(kind: str, fig_id: str, caption: str, body: str) -> Html:
    if not re.fullmatch(r"[a-z][a-z0-9-]*", fig_id):
        raise ValueError(f"figure id {fig_id!r} must be lower-case letters, digits and dashes")
    return Html(f'<figure class="blog-figure" data-kind="{kind}" id="{fig_id}">\n{body}\n'
                f"<figcaption>{escape(caption)}</figcaption>\n</figure>")


def plotly_figure(fig, fig_id: str, caption: str) -> Html:
    """A plotly Figure drawn by the page's plotly.js into `<div id=fig_id-plot>`."""
    spec = json.loads(fig.to_json())  # plotly's own encoder: numpy arrays, NaN -> null
    config = {"responsive": True, "displaylogo": False, "showLink": False}
    div = f"{fig_id}-plot"
    body = (f'<div id="{div}" class="plotly-figure"></div>\n<script>\n'
            f'Plotly.newPlot("{div}", {script_json(spec.get("data", []))}, '
            f'{script_json(spec.get("layout", {}))}, {script_json(config)});\n</script>')
    return _figure("plotly", fig_id, caption, body)


def mpld3_figure(fig, fig_id: str, caption: str) -> Html:
    """A matplotlib Figure converted by mpld3 and drawn by the page's d3 + mpld3 copies."""
    spec = mpld3.fig_to_dict(fig)
    plt.close(fig)
    text = script_json(spec)
    # mpld3 names elements "el<id(obj)><uuid>"; renaming them in order makes the page reproducible
    for number, element in enumerate(dict.fromkeys(_element_ids(spec))):
        text = text.replace(json.dumps(element), json.dumps(f"{fig_id}-el{number}"))
    div = f"{fig_id}-plot"
    body = (f'<div id="{div}" class="mpld3-figure-host"></div>\n<script>\n'
            f'mpld3.draw_figure("{div}", {text});\n</script>')
    return _figure("mpld3", fig_id, caption, body)


def _element_ids(value):
    """Every string under an "id" key of mpld3's figure dict, in document order."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "id" and isinstance(item, str):
                yield item
            else:
                yield from _element_ids(item)
    elif isinstance(value, list):
        for item in value:
            yield from _element_ids(item)


def table(header: list[str], rows: list[list], caption: str | None = None) -> Html:
    """An HTML table whose every cell is escaped run text."""
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "\n".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>"
                     for row in rows)
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return Html(f'<table class="data">{cap}\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n'
                "</tbody>\n</table>")
