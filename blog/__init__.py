"""blog: the study's interactive page, rendered from one run directory and nothing else.

    python -m blog runs/NAME --out runs/NAME/blog     # -> runs/NAME/blog/index.html
    blog.render("runs/NAME", "runs/NAME/blog")       # same, from Python; returns the page's path

The post's text is `blog/post.md` (markdown, `$LaTeX$` converted to MathML at build time,
`{{placeholders}}` filled from the run by `blog.values` and `blog.figures`). The page works
offline: plotly.js, d3 and mpld3 are copied from the installed packages into `assets/`.
`blog.browser.check_page` opens it in headless Chromium and reports what rendered.
"""
from .render import MissingValuesError, OutputError, build_html, render
from .rundir import BlogError, RunDirError, load_run

__all__ = ["render", "build_html", "load_run", "BlogError", "RunDirError", "MissingValuesError",
           "OutputError"]
