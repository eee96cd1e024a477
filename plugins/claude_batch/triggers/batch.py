"""The trigger that waits for a Message Batch to end, in the triggerer, with the async client.

It lives under plugins/ because the triggerer imports triggers by class path and loads no DAG bundle.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

import anthropic
from airflow.triggers.base import BaseTrigger, TriggerEvent

from claude_batch.hooks.claude import ClaudeBatchHook, failure_cause
from claude_batch.hooks.store import get_store
from claude_batch.store import UnknownAttemptError
from claude_batch.strategy.batch_api import EARLY_404_GRACE_SECONDS
from claude_batch.strategy.failures import NOT_FOUND

# One async client per connection for all the waits in a triggerer's event loop. A client costs
# about 0.9 MB and 30 ms of CPU to build (its SSL context loads the CA bundle): with one per wait,
# 500 waits held some 450 MB in the trigger runner and blocked its loop for 15 s while they started
# (bench/triggerer_scale.py). A shared client pools its connections; it lives as long as its loop.
# A changed connection reaches running waits when the triggerer restarts.
_SHARED_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, anthropic.AsyncAnthropic]] = (
    weakref.WeakKeyDictionary()
)


async def shared_async_client(conn_id: str) -> anthropic.AsyncAnthropic:
    """The event loop's client for ``conn_id``, built on first use; callers must not close it."""
    clients = _SHARED_CLIENTS.setdefault(asyncio.get_running_loop(), {})
    if conn_id not in clients:
        client = await ClaudeBatchHook(conn_id=conn_id).get_async_conn()
        # Another wait may have built one while this one awaited the connection: keep the first.
        if conn_id in clients:
            await client.close()
        else:
            clients[conn_id] = client
    return clients[conn_id]


class BatchEndedTrigger(BaseTrigger):
    """Poll one batch until ``processing_status == "ended"``; yield exactly one event.

    Events: ``{"status": "ended", "batch_id", "request_counts", "ended_at"}``, ``{"status": "deadline",
    ...}`` when the wall-clock deadline passes first, ``{"status": "error", "message"}`` when polling
    keeps failing or the API refuses for good.

    :param conn_id: Airflow connection of type ``anthropic``.
    :param batch_id: the batch to watch.
    :param deadline: epoch seconds. Wall clock on purpose: the trigger is serialized to the metadata
        DB and may resume in another triggerer process, where a monotonic clock means nothing.
    :param created_at: epoch seconds of the batch's creation; a 404 shortly after it is the API's
        known eventual consistency (SDK issue #1432), not a missing batch.
    :param poll_interval: first pause between polls, in seconds; grows by ``backoff`` per poll.
    :param max_poll_interval: ceiling of the pause: a 24 h batch is polled at most this often.
    :param max_consecutive_errors: transient failures in a row tolerated before an error event.
    """

    def __init__(
        self,
        *,
        conn_id: str,
        batch_id: str,
        deadline: float,
        created_at: float,
        poll_interval: float = 30.0,
        max_poll_interval: float = 300.0,
        backoff: float = 1.5,
        early_404_grace: float = EARLY_404_GRACE_SECONDS,
        max_consecutive_errors: int = 20,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.batch_id = batch_id
        self.deadline = deadline
        self.created_at = created_at
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.backoff = backoff
        self.early_404_grace = early_404_grace
        self.max_consecutive_errors = max_consecutive_errors

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id,
                "batch_id": self.batch_id,
                "deadline": self.deadline,
                "created_at": self.created_at,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "backoff": self.backoff,
                "early_404_grace": self.early_404_grace,
                "max_consecutive_errors": self.max_consecutive_errors,
            },
        )

    def _event(self, status: str, **details: Any) -> TriggerEvent:
        return TriggerEvent({"status": status, "batch_id": self.batch_id, **details})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        interval = self.poll_interval
        errors_in_a_row = 0
        async with contextlib.nullcontext(await shared_async_client(self.conn_id)) as client:
            while True:
                try:
                    batch = await client.messages.batches.retrieve(self.batch_id)
                    errors_in_a_row = 0
                except (anthropic.APIStatusError, anthropic.APIConnectionError) as error:
                    batch = None
                    cause = failure_cause(error)
                    if cause is NOT_FOUND:
                        if time.time() - self.created_at > self.early_404_grace:
                            yield self._event(
                                "error", message=f"Batch {self.batch_id} does not exist: {error}"
                            )
                            return
                        self.log.info("Batch %s not visible yet (404 just after create)", self.batch_id)
                    elif cause is None or not cause.transient:
                        yield self._event("error", message=f"Polling batch {self.batch_id} refused: {error}")
                        return
                    else:
                        # The API is busy or the network blinked; the batch itself is fine.
                        errors_in_a_row += 1
                        if errors_in_a_row >= self.max_consecutive_errors:
                            yield self._event(
                                "error",
                                message=f"Polling batch {self.batch_id} failed {errors_in_a_row} times in "
                                f"a row: {error}",
                            )
                            return
                        self.log.warning("Poll of batch %s failed (%s); retrying", self.batch_id, error)

                if batch is not None and batch.processing_status == "ended":
                    yield self._event(
                        "ended",
                        request_counts=batch.request_counts.model_dump(),
                        ended_at=batch.ended_at.isoformat() if batch.ended_at else None,
                    )
                    return
                if time.time() >= self.deadline:
                    yield self._event("deadline", message=f"Batch {self.batch_id} running at the deadline")
                    return
                await asyncio.sleep(min(interval, max(self.deadline - time.time(), 0.0)))
                interval = min(interval * self.backoff, self.max_poll_interval)

    async def on_kill(self) -> None:
        """A person killed the waiting task (mark failed / clear): stop paying for the batch.

        The cancel is recorded in the ledger at once, so the killed night's requests stop counting
        against the processing queue of the nights after it.
        """
        async with await ClaudeBatchHook(conn_id=self.conn_id).get_async_conn() as client:
            await client.messages.batches.cancel(self.batch_id)
        self.log.info("Canceled batch %s because its task was killed", self.batch_id)
        await asyncio.to_thread(_record_cancel, self.batch_id)


def _record_cancel(batch_id: str) -> None:
    try:
        get_store().update_attempt(batch_id, "canceled")
    except UnknownAttemptError:
        # Not a batch of this deployment's ledger (created by hand, say): nothing to free.
        return
