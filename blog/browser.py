"""Open a built page in headless Chromium and report what rendered (used by the browser test).

Chromium is driven over the Chrome DevTools Protocol on `--remote-debugging-pipe` (file
descriptors 3 and 4, NUL-terminated JSON messages), so no websocket library, driver binary or
download is needed: only the `chromium` executable. The report lists console errors, uncaught
exceptions, every request that was not file:/data:/blob:/about:, and per-figure render checks.

    report = check_page(Path("out/index.html"), screenshot=Path("page.png"))
    assert report.ok, report.problems()
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio",
         "--remote-debugging-pipe"]
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")

# Runs in the page once it has loaded: what each figure and each math element looks like.
INSPECT = r"""(() => {
  const figures = [...document.querySelectorAll('figure.blog-figure')].map(f => ({
    id: f.id, kind: f.dataset.kind,
    plotly_svg: f.querySelectorAll('.js-plotly-plot svg.main-svg').length,
    mpld3_svg: f.querySelectorAll('svg.mpld3-figure').length,
    height: f.getBoundingClientRect().height}));
  const math = [...document.querySelectorAll('math')].map(m => m.getBoundingClientRect().width);
  return JSON.stringify({figures, math, title: document.title,
                         height: document.documentElement.scrollHeight});
})()"""


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageReport:
    figures: list[dict]  # {id, kind, plotly_svg, mpld3_svg, height}
    math_widths: list[float]  # rendered width of every <math> element
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    network: list[str] = field(default_factory=list)  # non-local request URLs
    title: str = ""

    def unrendered(self) -> list[str]:
        bad = []
        for f in self.figures:
            rendered = f["plotly_svg"] > 0 if f["kind"] == "plotly" else f["mpld3_svg"] > 0
            if not rendered or f["height"] < 50:
                bad.append(f"{f['id']} ({f['kind']})")
        return bad

    def problems(self) -> list[str]:
        out = [f"figure not rendered: {name}" for name in self.unrendered()]
        out += [f"console error: {text}" for text in self.console_errors]
        out += [f"exception: {text}" for text in self.exceptions]
        out += [f"network request: {url}" for url in self.network]
        out += [f"{sum(w <= 0 for w in self.math_widths)} math element(s) have no width"] \
            if any(w <= 0 for w in self.math_widths) else []
        return out


def _above_nine(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class _Pipe:
    """CDP over Chromium's debugging pipe: we write fd 3 of the child, read its fd 4."""

    def __init__(self, chromium: str, profile: str):
        # Child ends are moved above fd 9 so that dup2 onto 3 and 4 cannot clobber them; dup2
        # clears close-on-exec on 3 and 4, every other pipe end stays close-on-exec.
        to_child_r, self._to_child = map(_above_nine, os.pipe())
        self._from_child, from_child_w = map(_above_nine, os.pipe())

        def wire_fds():  # in the child, before exec: its fd 3 reads commands, fd 4 writes replies
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.process = subprocess.Popen(
            [chromium, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire_fds, close_fds=False)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the debugging pipe (did it crash?)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        try:
            os.write(self._to_child, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            os.close(self._to_child)
            os.close(self._from_child)


def check_page(page: Path, screenshot: Path | None = None, chromium: str | None = None,
               settle_s: float = 20.0, width: int = 1200) -> PageReport:
    """Loads `page` from file:// and waits (up to settle_s) until every figure has drawn."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("no Chromium executable found (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="blog-chromium-") as profile:
        pipe = _Pipe(chromium, profile)
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Network", "Page"):
                pipe.send(f"{domain}.enable", session=session)
            pipe.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": 900,
                      "deviceScaleFactor": 1, "mobile": False}, session=session)
            pipe.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
            pipe.wait_event("Page.loadEventFired", timeout=settle_s)
            deadline = time.monotonic() + settle_s
            while True:  # plotly and mpld3 draw from inline scripts; give layout a moment
                state = json.loads(pipe.send("Runtime.evaluate", {"expression": INSPECT,
                                   "returnByValue": True}, session=session)["result"]["value"])
                report = PageReport(figures=state["figures"], math_widths=state["math"],
                                    title=state["title"])
                if not report.unrendered() or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            if screenshot is not None:
                shot = pipe.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                 "clip": {"x": 0, "y": 0, "width": width, "height": state["height"],
                                          "scale": 1}}, session=session)
                screenshot.write_bytes(base64.b64decode(shot["data"]))
            pipe.send("Runtime.evaluate", {"expression": "0"}, session=session)  # flush events
        finally:
            pipe.close()
    for event in pipe.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            report.console_errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                                  for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            report.exceptions.append(details.get("exception", {}).get("description")
                                     or details.get("text", "exception"))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            report.console_errors.append(f"{entry.get('text')} ({entry.get('url', '')})")
        elif method == "Network.requestWillBeSent":
            url = params.get("request", {}).get("url", "")
            if not url.startswith(LOCAL_SCHEMES):
                report.network.append(url)
    return report
