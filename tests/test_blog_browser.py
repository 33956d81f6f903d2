"""The built page in a real headless Chromium, opened from file:// (slow: ~10 s).

Chromium missing: the test fails in CI (CI=true), and is skipped elsewhere with the install hint.
Set BLOG_SCREENSHOT=path.png to keep the full-page screenshot somewhere other than tmp_path.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import blog
from blog.browser import check_page, find_chromium

FIXTURE = Path(__file__).parent / "fixtures" / "run_fixture"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        message = "headless Chromium is required for the browser test (apt-get install -y chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_page_renders_offline_in_chromium(chromium, tmp_path):
    index = blog.render(FIXTURE, tmp_path / "page")
    html = index.read_text()
    screenshot = Path(os.environ.get("BLOG_SCREENSHOT") or tmp_path / "page.png")
    report = check_page(index, screenshot=screenshot, chromium=chromium)

    assert report.problems() == []  # every figure drawn, no console error, no network, math laid out
    kinds = re.findall(r'<figure class="blog-figure" data-kind="(\w+)"', html)
    assert [f["kind"] for f in report.figures] == kinds  # the browser saw every figure we wrote
    assert kinds.count("plotly") >= 5 and kinds.count("mpld3") >= 1
    assert all(f["plotly_svg"] > 0 for f in report.figures if f["kind"] == "plotly")
    assert all(f["mpld3_svg"] == 1 for f in report.figures if f["kind"] == "mpld3")
    assert len(report.math_widths) == html.count("<math") >= 5
    assert report.network == [] and report.title.endswith("fixture")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 50_000


def test_the_check_can_fail(chromium, tmp_path):
    """A page with a CDN script, a figure that never draws and a script error is caught."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><head><meta charset="utf-8">'
                    '<script src="http://127.0.0.1:9/plotly.min.js"></script></head><body>'
                    '<figure class="blog-figure" data-kind="plotly" id="empty"><div></div></figure>'
                    "<script>Plotly.newPlot('x', []);</script></body></html>")
    report = check_page(page, chromium=chromium, settle_s=3)
    problems = report.problems()
    assert "figure not rendered: empty (plotly)" in problems
    assert report.network == ["http://127.0.0.1:9/plotly.min.js"]
    assert any("Plotly is not defined" in text for text in report.exceptions)
