"""Wait for a submitted shard's batch to end without holding a worker slot."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowException

from claude_batch.faultpoints import crash_point
from claude_batch.hooks import claude_hook
from claude_batch.hooks.store import get_store
from claude_batch.strategy.batch_api import CANCEL_GRACE_SECONDS

if TYPE_CHECKING:
    from anthropic.types.messages import MessageBatch


def _epoch(deadline: str | float | datetime) -> float:
    if isinstance(deadline, datetime):
        return deadline.timestamp()
    if isinstance(deadline, str):
        return datetime.fromisoformat(deadline).timestamp()
    return float(deadline)


class BatchWaitSensor(BaseSensorOperator):
    """Wait until the batch of one submission has ended; return the submission for partition.

    A submission that went through the synchronous API (``kind == "sync"``) has nothing to wait for.
    With ``deferrable=True`` (the default) the wait happens in the triggerer and frees the worker
    slot; with ``deferrable=False`` the sensor pokes in ``reschedule`` mode for deployments without
    a triggerer. When the deadline passes first, the batch is canceled: requests already done keep
    their results, the rest come back ``canceled`` and recovery finishes them synchronously.

    :param submission: the dict the submit task returned (``batch_id``, ``kind``, ``shard_index``...).
    :param deadline: when the run must be done (ISO 8601 string, datetime or epoch seconds).
    :param conn_id: Airflow connection of type ``anthropic``.
    :param poll_interval: first pause between polls in the triggerer, in seconds (backs off).
    :param max_poll_interval: ceiling of the pause between polls.
    :param deferrable: wait in the triggerer (default) or poke in reschedule mode.
    """

    template_fields: Sequence[str] = ("submission", "deadline")

    def __init__(
        self,
        *,
        submission: dict | Any,
        deadline: str | float | datetime | Any,
        conn_id: str = "anthropic_default",
        poll_interval: float = 30.0,
        max_poll_interval: float = 300.0,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("mode", "poke" if deferrable else "reschedule")
        kwargs.setdefault("map_index_template", "shard {{ '%05d' % task.submission['shard_index'] }}")
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.submission = submission
        self.deadline = deadline
        self.conn_id = conn_id
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.deferrable = deferrable

    def execute(self, context: Context) -> dict:
        if self.submission.get("kind") != "batch":
            shard = self.submission.get("shard_index")
            self.log.info("Shard %s ran synchronously; nothing to wait for", shard)
            return self.submission
        if not self.deferrable:
            return super().execute(context) or self.submission
        batch = claude_hook(self.conn_id).get_batch(self.submission["batch_id"])
        crash_point("wait.started")
        if batch.processing_status == "ended":
            return self._ended(batch.request_counts.model_dump(), batch.ended_at)
        self._defer(self.submission["batch_id"], _epoch(self.deadline), batch.created_at.timestamp())

    def _ended(self, request_counts: dict, ended_at: datetime | None) -> dict:
        """Record the end in the ledger at once: it frees the shard's share of the processing queue."""
        get_store().update_attempt(self.submission["batch_id"], "ended", request_counts, ended_at)
        self.log.info("Batch %s ended: %s", self.submission["batch_id"], request_counts)
        return self.submission

    def _defer(self, batch_id: str, deadline: float, created_at: float, after_cancel: bool = False) -> None:
        from claude_batch.triggers.batch import BatchEndedTrigger  # the SDK: imported when a task defers

        self.log.info(
            "Deferring on batch %s until it ends or the deadline %s",
            batch_id,
            datetime.fromtimestamp(deadline).isoformat(),
        )
        self.defer(
            trigger=BatchEndedTrigger(
                conn_id=self.conn_id,
                batch_id=batch_id,
                deadline=deadline,
                created_at=created_at,
                poll_interval=self.poll_interval,
                max_poll_interval=self.max_poll_interval,
            ),
            method_name="execute_complete",
            kwargs={"after_cancel": after_cancel},
        )

    def poke(self, context: Context) -> bool:
        batch_id = self.submission["batch_id"]
        batch = claude_hook(self.conn_id).get_batch(batch_id)
        if batch.processing_status == "ended":
            self._ended(batch.request_counts.model_dump(), batch.ended_at)
            return True
        if time.time() >= _epoch(self.deadline) and batch.processing_status == "in_progress":
            self._cancel_at_deadline(batch_id)
        return False

    def _cancel_at_deadline(self, batch_id: str) -> MessageBatch:
        self.log.warning("Deadline passed: canceling batch %s; recovery finishes it synchronously", batch_id)
        batch = claude_hook(self.conn_id).cancel_batch(batch_id)
        # Recorded at once: a wait that dies before the end must not leave the batch in the queue count.
        get_store().update_attempt(batch_id, "canceled")
        return batch

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, after_cancel: bool = False
    ) -> dict:
        if not event or event.get("status") not in {"ended", "deadline", "error"}:
            raise AirflowException(f"Unexpected event from the batch trigger: {event!r}")
        batch_id = self.submission["batch_id"]
        if event["status"] == "ended":
            ended_at = datetime.fromisoformat(event["ended_at"]) if event.get("ended_at") else None
            return self._ended(event["request_counts"], ended_at)
        if event["status"] == "deadline" and not after_cancel:
            batch = self._cancel_at_deadline(batch_id)
            self._defer(
                batch_id, time.time() + CANCEL_GRACE_SECONDS, batch.created_at.timestamp(), after_cancel=True
            )
        raise AirflowException(f"Waiting for batch {batch_id} failed: {event.get('message')}")
