"""The post's source language: markdown + `$math$` + `{{placeholders}}` + optional sections.

    {{key}}                      a value (Text, escaped) or a block (Html: a figure or a table)
    $x$  /  $$x$$                LaTeX, converted to MathML at build time (no script, no network)
    <!-- if NAME --> ... <!-- else --> ... <!-- endif -->
                                 a section shown only when the run has NAME (e.g. perturb)

Markdown itself is converted by the `markdown` package (with its `tables` extension). Math and
placeholders are swapped for inert tokens before markdown runs and swapped back afterwards, so
markdown never sees LaTeX underscores or run text.
"""
from __future__ import annotations

import re

import markdown
from latex2mathml.converter import convert as latex_to_mathml

from .html import Html, Text, escape
from .rundir import BlogError

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
CONDITION = re.compile(r"^\s*<!--\s*(if\s+([a-z_]+)|else|endif)\s*-->\s*$")
DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.S)
INLINE_MATH = re.compile(r"(?<![\\$])\$([^$\n]+?)\$")
TOKEN = "BLOGTOKEN{}X"
BLOCK_START = re.compile(r"<(figure|table|ul|ol|div|p|math[^>]*display=\"block\")[\s>]")


class TemplateError(BlogError):
    """The post's source itself is malformed (a bug in blog/, not in the run)."""


def select_sections(source: str, conditions: dict[str, bool]) -> str:
    """Keeps the branch of every `<!-- if NAME -->` block that the run's conditions choose."""
    kept, stack = [], []  # stack of (name, showing this branch)
    for number, line in enumerate(source.splitlines(), 1):
        match = CONDITION.match(line)
        if not match:
            if all(show for _, show in stack):
                kept.append(line)
            continue
        if match.group(2):
            if match.group(2) not in conditions:
                raise TemplateError(f"post line {number}: unknown condition {match.group(2)!r} "
                                    f"(known: {', '.join(sorted(conditions))})")
            stack.append((match.group(2), conditions[match.group(2)]))
        elif not stack:
            raise TemplateError(f"post line {number}: {match.group(1)} without an open `if`")
        elif match.group(1) == "else":
            name, show = stack.pop()
            stack.append((name, not conditions[name]))
        else:
            stack.pop()
    if stack:
        raise TemplateError(f"post: `if {stack[-1][0]}` is never closed")
    return "\n".join(kept) + "\n"


def placeholders(text: str) -> list[str]:
    """Every placeholder key in order of first appearance."""
    return list(dict.fromkeys(PLACEHOLDER.findall(text)))


def _mathml(latex: str, display: bool) -> str:
    if PLACEHOLDER.search(latex):
        raise TemplateError(f"post: placeholder inside math {latex.strip()!r}; put it outside the $...$")
    try:
        return latex_to_mathml(latex.strip(), display="block" if display else "inline")
    except Exception as err:  # latex2mathml raises a zoo of its own exception types
        raise TemplateError(f"post: cannot convert math {latex.strip()!r} to MathML ({err})") from None


def to_html(text: str, values: dict[str, Text | Html]) -> str:
    """The post body as HTML. `values` must hold every placeholder of `text`."""
    blocks: list[str] = []  # what each token stands for, already HTML

    def stash(html: str) -> str:
        blocks.append(html)
        return TOKEN.format(len(blocks) - 1)

    text = DISPLAY_MATH.sub(lambda m: "\n\n" + stash(_mathml(m.group(1), True)) + "\n\n", text)
    text = INLINE_MATH.sub(lambda m: stash(_mathml(m.group(1), False)), text)

    def value(match: re.Match) -> str:
        item = values[match.group(1)]
        return stash(str(item) if isinstance(item, Html) else escape(item))

    text = PLACEHOLDER.sub(value, text)
    body = markdown.markdown(text, extensions=["tables"], output_format="html")
    used = set()

    def restore(match: re.Match) -> str:  # one pass, so run text is never re-scanned
        index = int(match.group(1) or match.group(2))
        used.add(index)
        if match.group(1) and not BLOCK_START.match(blocks[index]):
            return f"<p>{blocks[index]}</p>"
        return blocks[index]

    # a block alone in a paragraph replaces the paragraph
    body = re.sub(r"<p>BLOGTOKEN(\d+)X</p>|BLOGTOKEN(\d+)X", restore, body)
    if len(used) != len(blocks):
        lost = sorted(set(range(len(blocks))) - used)
        raise TemplateError(f"post: {len(lost)} math/placeholder tokens were mangled by markdown")
    return body
