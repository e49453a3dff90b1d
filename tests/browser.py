"""A tiny headless-chromium driver over the DevTools protocol on a pipe (no WebDriver, no ports).

Chromium started with ``--remote-debugging-pipe`` reads commands from its fd 3 and writes
answers and events to its fd 4, each a JSON object ended by a NUL byte. That is all the
tests need: open a page, run JavaScript in it (or in one of its frames), click with real
mouse events, and take a screenshot. Only the standard library is used.

    with Chromium(find_chromium(), width=1400, height=900) as browser:
        browser.open(Path("report.html"))
        browser.click("document.querySelector('a')")
        png = browser.screenshot()
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
from pathlib import Path

# Headless, and nothing that talks to the network on its own (sync, component updates,
# field trials, QUIC probing): on a machine without internet it would keep retrying.
FLAGS = [
    "--headless",
    "--no-sandbox",  # running as root in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # a container's /dev/shm is often 64 MB
    "--disable-extensions",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--remote-debugging-pipe",
]


def find_chromium() -> str | None:
    """The chromium binary: $CHROMIUM (None if that is not an executable), else chromium /
    chromium-browser / google-chrome on PATH."""
    if os.environ.get("CHROMIUM"):
        return shutil.which(os.environ["CHROMIUM"])
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _above_9(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class BrowserError(RuntimeError):
    pass


class Chromium:
    """One headless chromium with one page; a context manager that always ends the process."""

    def __init__(self, binary: str, width: int = 1400, height: int = 900, timeout: float = 60.0):
        self.binary, self.width, self.height, self.timeout = binary, width, height, timeout
        self.events: list[dict] = []
        self._next_id = 0
        self._buffer = b""
        self._profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self._stderr = tempfile.TemporaryFile()
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # The child's ends, moved above 9 so that neither is 3 or 4 when dup2 puts them there.
        to_browser_r, from_browser_w = _above_9(to_browser_r), _above_9(from_browser_w)

        def as_fd3_and_fd4():  # runs in the child between fork and exec
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self._profile}", f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr,
            preexec_fn=as_fd3_and_fd4, close_fds=False,  # dup2 leaves 3 and 4 inheritable
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.session = None
        try:
            self._attach()
        except BaseException:
            self.close()
            raise

    # --- protocol -------------------------------------------------------------------------
    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("no answer from chromium in time" + self._log_tail())
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise BrowserError(f"chromium exited ({self.process.poll()})" + self._log_tail())
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = "page", timeout=None) -> dict:
        """Send one command and wait for its answer; events read meanwhile go to self.events."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        session_id = self.session if session == "page" else session
        if session_id:
            message["sessionId"] = session_id
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_browser, data):]
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            if "method" in answer:
                self.events.append(answer)

    def wait_event(self, method: str, timeout=None) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for i, event in enumerate(self.events):
                if event["method"] == method:
                    return self.events.pop(i)
            message = self._read_message(deadline)
            if "method" in message:
                self.events.append(message)

    def _attach(self) -> None:
        targets = self.send("Target.getTargets", session=None)["targetInfos"]
        page = next((t for t in targets if t["type"] == "page"), None)
        target_id = page["targetId"] if page else self.send(
            "Target.createTarget", {"url": "about:blank"}, session=None)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target_id, "flatten": True},
                                 session=None)["sessionId"]
        for domain in ("Page", "Runtime"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})

    def _log_tail(self) -> str:
        self._stderr.seek(0)
        tail = self._stderr.read()[-3000:].decode(errors="replace")
        return f"\n--- chromium output (tail) ---\n{tail}" if tail.strip() else ""

    # --- page ------------------------------------------------------------------------------
    def open(self, path_or_url, timeout=None) -> None:
        url = Path(path_or_url).resolve().as_uri() if not str(path_or_url).startswith(("file:", "http", "data:", "about:")) else str(path_or_url)
        self.events = [e for e in self.events if e["method"] != "Page.loadEventFired"]
        answer = self.send("Page.navigate", {"url": url})
        if answer.get("errorText"):
            raise BrowserError(f"cannot open {url}: {answer['errorText']}")
        self.wait_event("Page.loadEventFired", timeout)

    def js(self, expression: str, context: int | None = None):
        """Evaluate `expression` (promises awaited) in the page or in an execution context; its value."""
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        if context is not None:
            params["contextId"] = context
        answer = self.send("Runtime.evaluate", params)
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript error in {expression[:200]!r}: {text}")
        return answer["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0, what: str | None = None, context=None):
        """Poll `expression` until it is truthy (in JavaScript); return its value (true for a node)."""
        deadline = time.monotonic() + timeout
        probe = f"(() => {{ const v = ({expression}); return v ? (v instanceof Node ? true : v) : null; }})()"
        while True:
            value = self.js(probe, context)
            if value is not None:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out after {timeout:.0f} s waiting for {what or expression}")
            time.sleep(0.1)

    def box(self, element_expression: str) -> dict | None:
        """Scroll the element that `element_expression` evaluates to into view; its box (CSS px)
        and whether the middle of that box hits it (not covered by something else)."""
        return self.js(
            f"""(() => {{ const el = ({element_expression});
                 if (!el) return null;
                 el.scrollIntoView({{block: 'center', inline: 'center'}});
                 const r = el.getBoundingClientRect();
                 const hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
                 return {{x: r.x, y: r.y, width: r.width, height: r.height,
                          hit: !!hit && (el === hit || el.contains(hit))}}; }})()"""
        )

    def click(self, element_expression: str, timeout: float = 20.0) -> dict:
        """A real left click (mouse moved, pressed, released) in the middle of the element, once
        it exists, has a size, stays put for 0.2 s (the app has settled) and is not covered."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            box = self.box(element_expression)
            if box and box["hit"] and box["width"] > 0 and box["height"] > 0 and box == last:
                break
            if time.monotonic() > deadline:
                raise BrowserError(f"cannot click {element_expression}: {box}")
            last = box
            time.sleep(0.2)
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})
        return box

    def frame_context(self, url_prefix: str) -> int:
        """An execution context (isolated world) in the child frame whose URL starts with url_prefix."""
        def frames(node):
            yield node["frame"]
            for child in node.get("childFrames", []):
                yield from frames(child)

        tree = self.send("Page.getFrameTree")["frameTree"]
        found = [f for f in frames(tree) if f.get("url", "").startswith(url_prefix) and f.get("parentId")]
        if not found:
            raise BrowserError(f"no frame whose URL starts with {url_prefix[:60]!r}")
        return self.send("Page.createIsolatedWorld", {"frameId": found[-1]["id"], "worldName": "test"})[
            "executionContextId"]

    def exceptions(self) -> list[str]:
        """Uncaught JavaScript exceptions the page has thrown so far."""
        return [e["params"]["exceptionDetails"].get("exception", {}).get("description")
                or e["params"]["exceptionDetails"].get("text", "")
                for e in self.events if e["method"] == "Runtime.exceptionThrown"]

    def screenshot(self, path: Path | None = None) -> bytes:
        png = base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])
        if path is not None:
            Path(path).write_bytes(png)
        return png

    # --- end -------------------------------------------------------------------------------
    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send("Browser.close", session=None, timeout=5)
            except (BrowserError, OSError):
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        self._stderr.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv=None) -> None:
    """Screenshot of a Snakemake report's landing page (the README's docs/report.png) or of one item:

        python tests/browser.py report.html docs/report.png --landing --size 1200x900
        python tests/browser.py report.html summary.png --category "1. Summary" --item "written summary"
    """
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--category", default="1. Summary")
    parser.add_argument("--item", default="written summary", help="the label of the item to show")
    parser.add_argument("--landing", action="store_true", help="the landing page as it opens, no click")
    parser.add_argument("--size", default="1400x900", help="viewport, WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    binary = find_chromium()
    if binary is None:
        raise SystemExit("chromium not found (install it or set CHROMIUM)")

    def link(text):
        return f"[...document.querySelectorAll('#app a')].find(a => a.textContent.trim() === {json.dumps(text)})"

    with Chromium(binary, width=width, height=height) as browser:
        browser.open(args.report)
        if args.landing:
            browser.wait_for("document.querySelector('#app .decision') !== null", what="the decision block")
            time.sleep(1.0)  # let it paint
            browser.screenshot(args.png)
            print(f"{args.png}: {args.png.stat().st_size} bytes")
            return
        browser.click(link(args.category))
        row = (f"[...document.querySelectorAll('#app table tbody tr')].find(tr => [...tr.querySelectorAll('td')]"
               f".some(td => td.textContent.trim() === {json.dumps(args.item)}))")
        browser.click(f"{row}.querySelector('a[iconname=eye]')")
        browser.wait_for("document.querySelector('#app img, #app iframe')", what="the item shown")
        time.sleep(1.0)  # let a frame paint
        browser.screenshot(args.png)
    print(f"{args.png}: {args.png.stat().st_size} bytes")


if __name__ == "__main__":
    main()
