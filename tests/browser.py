"""Headless Chromium driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``:
JSON messages separated by NUL bytes on file descriptors 3 and 4), so nothing beyond the standard
library and a ``chromium`` binary is needed. Used by the viewer test and docs/images/make_screenshots.py.
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
from typing import Any, Optional

BINARIES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> Optional[str]:
    return next((path for path in map(shutil.which, BINARIES) if path), None)


class Browser:
    """One headless page. ``evaluate(js)`` returns the value, ``screenshot()`` PNG bytes."""

    def __init__(self, width: int = 1280, height: int = 720, binary: Optional[str] = None, timeout: float = 30.0,
                 flags: tuple[str, ...] = ("--disable-gpu",)):
        binary = binary or find_chromium()
        if binary is None:
            raise FileNotFoundError(f"no Chromium found (looked for {', '.join(BINARIES)})")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="flashdepth-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire() -> None:  # in the child: the protocol's pipes at descriptors 3 (in) and 4 (out)
            high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)  # neither may be 3 or 4 when moved there
            high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        # --no-sandbox: the tests may run as root in a container, where the sandbox cannot start.
        self.process = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", *flags, "--remote-debugging-pipe",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
             "--force-device-scale-factor=1", f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
             "about:blank"],
            # Python's descriptors are not inherited (PEP 446); the two made by dup2 are, so only
            # they reach Chromium without close_fds (which would close them after preexec_fn).
            preexec_fn=wire, close_fds=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._id = 0
        targets = self._call("Target.getTargets")["targetInfos"]
        page = next(t["targetId"] for t in targets if t["type"] == "page")
        self.session = self._call("Target.attachToTarget", {"targetId": page, "flatten": True})["sessionId"]
        self._call("Emulation.setDeviceMetricsOverride",
                   {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, page=True)

    def _call(self, method: str, params: Optional[dict] = None, page: bool = False) -> Any:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if page:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\0" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                    raise TimeoutError(f"Chromium did not answer {method} within {self.timeout:.0f} s")
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise EOFError(f"Chromium closed the pipe during {method}")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:  # events and other replies are not needed here
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def goto(self, url: str) -> None:
        self._call("Page.navigate", {"url": url}, page=True)

    def evaluate(self, expression: str) -> Any:
        result = self._call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, page=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0, interval: float = 0.2) -> Any:
        """Poll ``expression`` until it is truthy; its value, or TimeoutError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except RuntimeError:  # the page is still navigating: no context to evaluate in yet
                value = None
            if value:
                return value
            time.sleep(interval)
        raise TimeoutError(f"{expression} stayed false for {timeout:.0f} s")

    def screenshot(self) -> bytes:
        return base64.b64decode(self._call("Page.captureScreenshot", {"format": "png"}, page=True)["data"])

    def close(self) -> None:
        try:
            self._call("Browser.close")
        except (OSError, TimeoutError, EOFError, RuntimeError):
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
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
