"""The trigger that waits, in the triggerer, for a night's input file to land.

It lives under plugins/ because the triggerer imports triggers by class path and loads no DAG bundle.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.sdk import ObjectStoragePath
from airflow.triggers.base import BaseTrigger, TriggerEvent


class InputLandedTrigger(BaseTrigger):
    """Look for the file every ``poll_interval`` seconds; yield ``{"status": "landed"}`` once it exists,
    or ``{"status": "timeout"}`` when ``give_up_at`` passes first.

    :param uri: absolute URL of the file (``file:///...``, ``s3://...``): the triggerer's working
        folder is not the worker's.
    :param give_up_at: epoch seconds; wall clock, since the trigger may resume in another triggerer.
    :param poll_interval: seconds between looks.
    """

    def __init__(self, *, uri: str, give_up_at: float, poll_interval: float = 30.0) -> None:
        super().__init__()
        self.uri = uri
        self.give_up_at = give_up_at
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"uri": self.uri, "give_up_at": self.give_up_at, "poll_interval": self.poll_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        location = ObjectStoragePath(self.uri)
        while True:
            # The filesystem call blocks (a network round trip for object storage): off the loop.
            if await asyncio.to_thread(location.exists):
                yield TriggerEvent({"status": "landed", "uri": self.uri})
                return
            left = self.give_up_at - time.time()
            if left <= 0:
                yield TriggerEvent({"status": "timeout", "uri": self.uri})
                return
            await asyncio.sleep(min(self.poll_interval, left))
