"""Stage 4: turn one shard into exactly one paid submission, whatever happens to the task."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import BaseOperator, Context, ObjectStoragePath

from claude_batch.hooks import claude_hook
from claude_batch.hooks.store import get_store
from claude_batch.stages.run import RunContext
from claude_batch.stages.submit import max_requests_in_flight, queue_is_full, submit_requests
from claude_batch.strategy.routing import Route


class SubmitOperator(BaseOperator):
    """Submit one shard: a Message Batch, or the Messages API when the route says sync.

    Idempotent: clearing or retrying this task never pays twice (see ``submit_requests``). Shards wait
    their turn when the organisation's processing queue would overflow: the task defers (freeing its
    worker slot) and checks again. Bound concurrent submissions with the pool the DAG sets.

    :param run: the route stage's run context.
    :param shard: one dict of the shard stage's list (``index``, ``path``, ``request_count``, ...).
    :param conn_id: Airflow connection of type ``anthropic``.
    :param max_requests_in_flight: requests this deployment may have in unfinished batches at once;
        default ``$CLAUDE_BATCH_MAX_REQUESTS_IN_FLIGHT`` or 200,000 (the lowest tier's queue).
    :param queue_poll_interval: seconds between checks while the queue is full.
    """

    template_fields: Sequence[str] = ("run", "shard")

    def __init__(
        self,
        *,
        run: Any,
        shard: Any,
        conn_id: str = "anthropic_default",
        max_requests_in_flight: int | None = None,
        queue_poll_interval: float = 60.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault(
            "map_index_template",
            "shard {{ '%05d' % task.shard['index'] }} ({{ task.shard['request_count'] }} requests)",
        )
        super().__init__(**kwargs)
        self.run = run
        self.shard = shard
        self.conn_id = conn_id
        self.max_requests_in_flight = max_requests_in_flight
        self.queue_poll_interval = queue_poll_interval

    def execute(self, context: Context, event: dict | None = None) -> dict:
        run = RunContext.of(self.run)
        spec = run.spec()
        store = get_store()
        shard = self.shard
        existing = store.attempt(run.store_run_id, shard["index"], shard["round"])
        hook = claude_hook(self.conn_id)
        limit = max_requests_in_flight(self.max_requests_in_flight)
        if (
            run.route is Route.BATCH
            and (existing is None or existing.batch_id is None)
            and queue_is_full(store, hook, shard["request_count"], limit, self.log)
        ):
            self.log.info(
                "Shard %d waits %ss for room in the queue", shard["index"], self.queue_poll_interval
            )
            self.defer(
                trigger=TimeDeltaTrigger(timedelta(seconds=self.queue_poll_interval)),
                method_name="execute",
            )
        return submit_requests(
            store=store,
            hook=hook,
            run=run,
            shard_index=shard["index"],
            round_number=shard["round"],
            requests_file=ObjectStoragePath(shard["path"]),
            request_count=shard["request_count"],
            route=run.route,
            concurrency=spec.routing.sync_concurrency,
            log=self.log,
        )
