"""Stage 4: turn one shard into exactly one paid submission, whatever happens to the task."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import anthropic
from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import BaseOperator, ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from claude_batch.faultpoints import crash_point
from claude_batch.hooks.claude import ClaudeBatchHook
from claude_batch.hooks.store import get_store
from claude_batch.operators.run import RunContext, aware, file_digest
from claude_batch.store import AttemptRecord, Store
from claude_batch.strategy.routing import Route

# The lowest tier's processing queue (requests waiting in all of an organisation's batches); a higher
# tier sets its own limit in this environment variable of the workers.
DEFAULT_MAX_REQUESTS_IN_FLIGHT = 200_000
MAX_REQUESTS_IN_FLIGHT_VARIABLE = "CLAUDE_BATCH_MAX_REQUESTS_IN_FLIGHT"
# The API's clock and ours may differ; an orphan created "before" our intent by this much still counts.
CLOCK_SKEW = timedelta(minutes=5)
# A create that fails like this may still have created the batch (the response was lost).
AMBIGUOUS_CREATE_ERRORS = (anthropic.APIConnectionError, anthropic.InternalServerError)
# A create that fails like this was refused before anything was created; retrying is safe.
REFUSED_CREATE_ERRORS = (anthropic.RateLimitError,)


def submit_requests(
    *,
    store: Store,
    hook: ClaudeBatchHook,
    run: RunContext,
    shard_index: int,
    round_number: int,
    requests_file: ObjectStoragePath,
    request_count: int,
    route: Route,
    concurrency: int,
    log: Any,
) -> dict:
    """Submit one request file once, re-attaching to or adopting what an earlier try paid for.

    The ledger row (the *intent*) is written before the paid call. A later try of the same shard and
    round gets that row back: with a batch id it re-attaches; without one, an earlier try may have
    died between create and the ledger write, so it looks for that orphan before paying again.
    Used by the submit stage and by each recovery round.
    """
    digest = file_digest(requests_file)
    kind = "sync" if route is Route.SYNC else "batch"
    earlier_try = store.attempt(run.store_run_id, shard_index, round_number)
    attempt = store.record_intent(run.store_run_id, shard_index, round_number, kind, request_count, digest)
    crash_point("submit.after_intent")
    if attempt.request_digest != digest:
        raise AirflowFailException(
            f"Shard {shard_index} round {round_number} of run {run.store_run_id} was already submitted with "
            f"other requests (digest {attempt.request_digest[:12]} != {digest[:12]}): the input changed since. "
            "Publish what was paid for, or run the changed input under another date."
        )
    submission = {
        "shard_index": shard_index,
        "round": round_number,
        "path": str(requests_file),
        "request_count": request_count,
        "attempt_id": attempt.id,
        "kind": attempt.kind,
        "batch_id": attempt.batch_id,
        "adopted": attempt.adopted,
    }
    if attempt.kind == "sync":
        results_dir = requests_file.parent / f"{requests_file.stem}.results"
        parts = hook.run_messages(requests_file, results_dir, concurrency=concurrency)
        store.update_attempt_by_id(attempt.id, "ended")
        log.info(
            "Shard %d round %d: %d requests sent synchronously", shard_index, round_number, request_count
        )
        return {**submission, "results": [str(p) for p in parts]}
    if attempt.batch_id:
        log.info(
            "Shard %d round %d: re-attaching to batch %s created by an earlier try; nothing is paid again",
            shard_index,
            round_number,
            attempt.batch_id,
        )
        return submission
    if earlier_try is not None:
        adopted = _adopt_orphan(store, hook, attempt, log)
        if adopted is not None:
            return {**submission, "batch_id": adopted.batch_id, "adopted": True}
    batch = _create(store, hook, attempt, requests_file, log)
    crash_point("submit.after_create")
    store.attach_batch(attempt.id, batch.id)
    log.info(
        "Shard %d round %d: created batch %s with %d requests",
        shard_index,
        round_number,
        batch.id,
        request_count,
    )
    return {**submission, "batch_id": batch.id}


def _adopt_orphan(
    store: Store, hook: ClaudeBatchHook, attempt: AttemptRecord, log: Any
) -> AttemptRecord | None:
    orphan = hook.find_orphan_batch(
        created_after=aware(attempt.created_at) - CLOCK_SKEW,
        request_count=attempt.request_count,
        is_known=store.is_batch_known,
    )
    if orphan is None:
        return None
    log.warning(
        "Adopting batch %s (created %s, %d requests): an earlier try created it and died before recording "
        "it; its custom_ids are verified when its results arrive",
        orphan.id,
        orphan.created_at.isoformat(),
        attempt.request_count,
    )
    return store.attach_batch(attempt.id, orphan.id, adopted=True)


def _create(
    store: Store, hook: ClaudeBatchHook, attempt: AttemptRecord, requests_file: ObjectStoragePath, log: Any
) -> Any:
    """Create the batch; before each retry, look for the batch a failed try may have made after all."""
    for try_ in Retrying(
        retry=retry_if_exception_type(AMBIGUOUS_CREATE_ERRORS + REFUSED_CREATE_ERRORS),
        stop=stop_after_attempt(6),
        wait=wait_exponential(multiplier=1, max=60),
        reraise=True,
    ):
        with try_:
            if try_.retry_state.attempt_number > 1:
                orphan = hook.find_orphan_batch(
                    created_after=aware(attempt.created_at) - CLOCK_SKEW,
                    request_count=attempt.request_count,
                    is_known=store.is_batch_known,
                )
                if orphan is not None:
                    log.warning("The create of a failed try went through as batch %s; using it", orphan.id)
                    return orphan
            return hook.create_batch_from_file(requests_file)
    raise AssertionError("unreachable: tenacity re-raises the last error")


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

    def execute(self, context: Any, event: dict | None = None) -> dict:
        run = RunContext.of(self.run)
        spec = run.spec()
        store = get_store()
        shard = self.shard
        existing = store.attempt(run.store_run_id, shard["index"], shard["round"])
        limit = self.max_requests_in_flight or int(
            os.environ.get(MAX_REQUESTS_IN_FLIGHT_VARIABLE, DEFAULT_MAX_REQUESTS_IN_FLIGHT)
        )
        if run.route is Route.BATCH and (existing is None or existing.batch_id is None):
            in_flight = store.requests_in_flight()
            # An empty queue always takes the shard: a shard larger than the limit must still run.
            if in_flight and in_flight + shard["request_count"] > limit:
                self.log.info(
                    "Processing queue busy: %d requests in flight + %d would pass the limit %d; waiting %ss",
                    in_flight,
                    shard["request_count"],
                    limit,
                    self.queue_poll_interval,
                )
                self.defer(
                    trigger=TimeDeltaTrigger(timedelta(seconds=self.queue_poll_interval)),
                    method_name="execute",
                )
        return submit_requests(
            store=store,
            hook=ClaudeBatchHook(conn_id=self.conn_id),
            run=run,
            shard_index=shard["index"],
            round_number=shard["round"],
            requests_file=ObjectStoragePath(shard["path"]),
            request_count=shard["request_count"],
            route=run.route,
            concurrency=spec.routing.sync_concurrency,
            log=self.log,
        )
