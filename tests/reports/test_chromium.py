"""The HTML report in a real headless Chromium, driven over the DevTools protocol on a pipe
(--remote-debugging-pipe: fd 3 in, fd 4 out, NUL-terminated JSON), so no extra dependency."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from isobench.reports import render
from isobench.results import Results

from .conftest import build_real_results

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.integration


class Cdp:
    def __init__(self, proc: subprocess.Popen[bytes], to_browser: int, from_browser: int) -> None:
        self.proc = proc
        self._out = to_browser
        self._in = from_browser
        self._buf = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium")
            ready, _, _ = select.select([self._in], [], [], left)
            if ready:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed the pipe (exit {self.proc.poll()})")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        decoded: dict[str, Any] = json.loads(msg)
        return decoded

    def call(
        self, method: str, session: str | None = None, timeout: float = 30.0, **params: Any
    ) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        for e in self.events:
            if e.get("method") == method:
                return e
        deadline = time.monotonic() + timeout
        while True:
            e = self._read_message(deadline)
            self.events.append(e)
            if e.get("method") == method:
                return e


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Cdp]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: apt-get install chromium")
    r_cmd, w_cmd = os.pipe()  # we write commands, chromium reads fd 3
    r_evt, w_evt = os.pipe()  # chromium writes fd 4, we read
    # Chromium's ends are moved to fds >= 10 first so the dup2 calls below cannot clobber each other.
    child_r = fcntl.fcntl(r_cmd, fcntl.F_DUPFD_CLOEXEC, 10)
    child_w = fcntl.fcntl(w_evt, fcntl.F_DUPFD_CLOEXEC, 10)
    for fd in (r_cmd, w_evt):
        os.close(fd)
    profile = tmp_path / "isobench-chromium-profile"

    def child_fds() -> None:
        os.dup2(child_r, 3)  # dup2 clears close-on-exec on the copies
        os.dup2(child_w, 4)

    proc = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "--window-size=1280,2000",
            "about:blank",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=child_fds,  # noqa: PLW1509 - pytest is single-threaded here
        pass_fds=(3, 4),
        start_new_session=True,
    )
    os.close(child_r)
    os.close(child_w)
    try:
        yield Cdp(proc, w_cmd, r_evt)
    finally:
        os.close(w_cmd)
        os.close(r_evt)
        try:
            proc.wait(timeout=10)  # closing the pipe makes chromium exit
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


def test_report_renders_in_headless_chromium(results: Results, tmp_path: Path, browser: Cdp) -> None:
    report = render(results, tmp_path / "run").html
    target = browser.call("Target.createTarget", url="about:blank")["targetId"]
    session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
        browser.call(domain, session)
    browser.call("Page.navigate", session, url=report.as_uri())
    browser.wait_event("Page.loadEventFired", timeout=60)

    check = browser.call(
        "Runtime.evaluate",
        session,
        returnByValue=True,
        expression="""(() => {
            const ids = ['headline', 'warnings', 'tables', 'figures', 'methods', 'metadata'];
            const imgs = Array.from(document.images);
            return {
              sections: ids.filter(id => {
                const el = document.getElementById(id);
                return el && el.getBoundingClientRect().height > 0;
              }),
              images: imgs.length,
              broken: imgs.filter(i => !(i.complete && i.naturalWidth > 100)).map(i => i.alt),
              tables: document.querySelectorAll('table').length,
              scripts: document.scripts.length,
              title: document.title,
            };
        })()""",
    )["result"]["value"]
    assert check["sections"] == ["headline", "warnings", "tables", "figures", "methods", "metadata"]
    assert check["images"] == len(list((tmp_path / "run" / "plots").glob("*.png"))) > 5
    assert check["broken"] == []
    assert check["tables"] > 5
    assert check["scripts"] == 0  # the escaped <script> in an error text stayed text
    assert check["title"].startswith("isobench report")

    shot = browser.call("Page.captureScreenshot", session, format="png", captureBeyondViewport=True)
    import base64

    png = base64.b64decode(shot["data"])
    (tmp_path / "report.png").write_bytes(png)
    assert png.startswith(b"\x89PNG") and len(png) > 20_000

    errors = [
        e
        for e in browser.events
        if (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
        or e.get("method") == "Runtime.exceptionThrown"
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]
    assert errors == []


def _open(browser: Cdp, url: str, width: int, height: int) -> str:
    target = browser.call("Target.createTarget", url="about:blank")["targetId"]
    session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    browser.call("Page.enable", session)
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        session,
        width=width,
        height=height,
        deviceScaleFactor=1,
        mobile=False,
    )
    browser.events.clear()
    browser.call("Page.navigate", session, url=url)
    browser.wait_event("Page.loadEventFired", timeout=60)
    return str(session)


# What a person meets in a 1280x800 window (the facts ../shared/tools/report-probe prints).
_FIRST_SCREEN = """(() => {
    const hd = document.getElementById('headline');
    const first = document.body.firstElementChild;
    const imgs = Array.from(document.images);
    const de = document.documentElement;
    return {
      headline_top: hd ? hd.getBoundingClientRect().top : -1,
      headline_is_first: first === hd,
      table_bottom: hd ? hd.querySelector('table').getBoundingClientRect().bottom : -1,
      overflow: de.scrollWidth - de.clientWidth,
      wide: Array.from(document.querySelectorAll('table')).filter(
        t => t.getBoundingClientRect().right > de.clientWidth + 1).length,
      images: imgs.length,
      broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length,
      text: hd ? hd.innerText : '',
    };
})()"""


def test_headline_is_the_first_screen_at_1280x800(tmp_path: Path, browser: Cdp) -> None:
    report = render(build_real_results(), tmp_path / "run").html
    session = _open(browser, report.as_uri(), 1280, 800)
    got = browser.call("Runtime.evaluate", session, returnByValue=True, expression=_FIRST_SCREEN)
    facts = got["result"]["value"]
    assert facts["headline_is_first"]
    assert 0 <= facts["headline_top"] < 800
    assert facts["table_bottom"] < 800  # every driver's row is on the first screen
    assert facts["overflow"] <= 0 and facts["wide"] == 0
    assert facts["images"] == len(list((tmp_path / "run" / "plots").glob("*.png"))) > 3
    assert facts["broken"] == 0
    text = facts["text"]
    assert not re.search(r"[0-9]e[+-][0-9]", text)
    for driver in ("host", "container", "runc", "bwrap", "vm", "qemu"):
        assert driver in text
    assert "247 MiB" in text and "TCG figures, not KVM" in text


def test_headline_of_a_small_run_fits_too(tmp_path: Path, browser: Cdp) -> None:
    report = render(build_real_results(("host", "container"), ("startup",)), tmp_path / "run").html
    session = _open(browser, report.as_uri(), 1280, 800)
    facts = browser.call("Runtime.evaluate", session, returnByValue=True, expression=_FIRST_SCREEN)["result"][
        "value"
    ]
    assert facts["headline_is_first"] and 0 <= facts["headline_top"] < 800
    assert facts["overflow"] <= 0 and facts["broken"] == 0
    assert "start to first command" in facts["text"]


def test_screenshot_tool_takes_the_first_screen(tmp_path: Path) -> None:
    """tools/report-screenshot: the PNG of a report's headline that the README shows."""
    import struct

    report = render(build_real_results(), tmp_path / "run").html
    tool = Path(__file__).resolve().parents[2] / "tools" / "report-screenshot"
    png = tmp_path / "headline.png"
    done = subprocess.run(
        [str(tool), str(report), str(png)], check=False, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (1280, 800)
