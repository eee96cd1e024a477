"""A probe of an HTTP server's responsiveness while a test loads it: GETs a URL from a thread of its own."""

from __future__ import annotations

import threading
import time

import httpx


class ResponsivenessProbe:
    """GET ``url`` every ``interval`` seconds between ``start`` and ``stop``; ``stop`` returns the seconds
    each answer took (a non-200 answer fails the test), ``answered_between`` how many answers came
    within a stretch of ``time.monotonic()``: a hung server answers none while it is loaded."""

    def __init__(self, url: str, interval: float = 0.1) -> None:
        self._url = url
        self._interval = interval
        self._stopped = threading.Event()
        self._seconds: list[float] = []
        self._answered_at: list[float] = []
        self._failures: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._answered = threading.Event()

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stopped.is_set():
                started = time.monotonic()
                response = client.get(self._url)
                self._answered_at.append(time.monotonic())
                self._seconds.append(self._answered_at[-1] - started)
                self._answered.set()
                if response.status_code != 200:
                    self._failures.append(f"{response.status_code} {response.text[:200]}")
                self._stopped.wait(self._interval)

    def start(self) -> None:
        """Start probing; returns once the first answer came (connected, before the load begins)."""
        self._thread.start()
        assert self._answered.wait(timeout=30), f"{self._url} did not answer in 30 s"

    def stop(self) -> list[float]:
        self._stopped.set()
        self._thread.join(timeout=60)
        assert not self._failures, self._failures
        return self._seconds

    def answered_between(self, start: float, end: float) -> int:
        return sum(start < at < end for at in self._answered_at)
