"""The emulator's clock: real time, optionally running faster, and still running while the emulator is down.

``now = anchor + real elapsed * time_scale``. The anchor is kept in the state, so a restarted emulator
continues its clock from where the old one would be now: batches keep processing (and expiring)
while the emulator is down, as they do on the real API while a client is down.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


class EmulatorClock:
    """A clock that runs `time_scale` times faster than real time from an anchor.

    :param anchor: the emulator time (epoch seconds) at the moment the clock was made.
    :param time_scale: how many emulator seconds pass per real second.
    """

    def __init__(self, anchor: float, time_scale: float) -> None:
        self.anchor = anchor
        self.time_scale = time_scale
        self._started = time.monotonic()

    def now(self) -> float:
        return self.anchor + (time.monotonic() - self._started) * self.time_scale

    def real_seconds(self, emulator_seconds: float) -> float:
        """How long `emulator_seconds` of emulator time last in real time."""
        return emulator_seconds / self.time_scale


def resumed_anchor(saved_anchor: float, saved_wall: float, saved_scale: float, wall_now: float) -> float:
    """The emulator time now, for a clock saved at `saved_wall` (real epoch seconds) with `saved_anchor`."""
    return saved_anchor + max(0.0, wall_now - saved_wall) * saved_scale


def rfc3339(timestamp: float) -> str:
    """Epoch seconds as the API writes them: ``2024-08-20T18:37:24.100435Z``."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")
