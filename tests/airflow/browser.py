"""Headless Chromium driven over the DevTools protocol, for tests that click: open a page, run a
script in it, wait for what it shows. (ui_support.render only loads a page and dumps it.)"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

from tests.airflow.ui_support import CHROMIUM_FLAGS, chromium


class Page:
    """One Chromium tab: ``evaluate`` runs JavaScript in it, ``wait_for`` polls a condition it shows."""

    def __init__(self, websocket: Any) -> None:
        self._websocket = websocket
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict:
        request_id = next(self._ids)
        self._websocket.send(json.dumps({"id": request_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._websocket.recv(timeout=60))
            if message.get("id") == request_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        """Evaluate ``expression`` until it is truthy (the page changed as expected); its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := self.evaluate(expression):
                return value
            time.sleep(0.1)
        raise TimeoutError(f"the page never showed {expression} in {timeout:g} s")


@contextmanager
def chromium_page(url: str, profile: Path) -> Iterator[Page]:
    """Headless Chromium with ``url`` loaded (its scripts ran); closed afterwards."""
    process = subprocess.Popen(
        [chromium(), *CHROMIUM_FLAGS, "--remote-debugging-port=0", f"--user-data-dir={profile}",
         "--window-size=1400,1400", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        target = next(t for t in targets if t["type"] == "page")
        with connect(target["webSocketDebuggerUrl"], max_size=None) as websocket:
            page = Page(websocket)
            page.call("Page.enable")
            page.call("Page.navigate", url=url)
            page.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'")
            yield page
    finally:
        process.terminate()
        process.wait(timeout=30)
