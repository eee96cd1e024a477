"""Create a batch from a request file, behind the queue check and with the ledger's intent first:
the submit stage's work, shared by recovery rounds."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from claude_batch.faultpoints import crash_point
from claude_batch.hooks import failure_cause
from claude_batch.stages.run import RunContext, aware, file_digest
from claude_batch.store import AttemptRecord, Store
from claude_batch.strategy.batch_api import EARLY_404_GRACE_SECONDS, batch_request_total
from claude_batch.strategy.routing import Route

if TYPE_CHECKING:
    from anthropic.types.messages import MessageBatch

    from claude_batch.hooks.claude import ClaudeBatchHook

# The lowest tier's processing queue (requests waiting in all of an organisation's batches); a higher
# tier sets its own limit in this environment variable of the workers.
DEFAULT_MAX_REQUESTS_IN_FLIGHT = 200_000
MAX_REQUESTS_IN_FLIGHT_VARIABLE = "CLAUDE_BATCH_MAX_REQUESTS_IN_FLIGHT"


def max_requests_in_flight(configured: int | None = None) -> int:
    """The deployment's processing-queue limit: the operator's argument, else the variable, else the tier's."""
    return configured or int(os.environ.get(MAX_REQUESTS_IN_FLIGHT_VARIABLE, DEFAULT_MAX_REQUESTS_IN_FLIGHT))


def queue_is_full(store: Store, hook: ClaudeBatchHook, request_count: int, limit: int, log: Any) -> bool:
    """Whether ``request_count`` more requests would overflow the processing queue; logs why.

    The ledger's count is checked first; when it says full, the batches it still holds open are
    polled and what has ended since is recorded (a night killed before its wait recorded the end
    must not throttle the nights after it). An empty queue always takes the requests: a shard
    larger than the limit must still run.
    """
    in_flight = store.requests_in_flight()
    if in_flight and in_flight + request_count > limit:
        _record_ended_batches(store, hook, log)
        in_flight = store.requests_in_flight()
    if in_flight and in_flight + request_count > limit:
        log.info(
            "Processing queue busy: %d requests in flight + %d would pass the limit %d",
            in_flight,
            request_count,
            limit,
        )
        return True
    return False


def _record_ended_batches(store: Store, hook: ClaudeBatchHook, log: Any) -> None:
    import anthropic  # imported with the hook

    client = hook.get_conn()
    for attempt in store.unfinished_batches():
        assert attempt.batch_id is not None
        try:
            batch = client.messages.batches.retrieve(attempt.batch_id)
        except anthropic.NotFoundError:
            submitted = aware(attempt.submitted_at or attempt.created_at)
            if (datetime.now(UTC) - submitted).total_seconds() > EARLY_404_GRACE_SECONDS:
                log.warning("Batch %s is gone from the API; the ledger marks it failed", attempt.batch_id)
                store.update_attempt(attempt.batch_id, "failed")
            continue
        if batch.processing_status == "ended":
            log.info("Batch %s (run %d) ended unobserved; recorded", attempt.batch_id, attempt.run_id)
            store.update_attempt(attempt.batch_id, "ended", batch.request_counts.model_dump(), batch.ended_at)


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
    died between create and the ledger write, which ``_create_once`` settles before paying again.
    Used by the submit stage and by each recovery round.
    """
    digest = file_digest(requests_file)
    kind = "sync" if route is Route.SYNC else "batch"
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
        results_dir = run.layout.sync_results(round_number, shard_index)
        parts = hook.run_messages(requests_file, results_dir, concurrency=concurrency)
        store.update_attempt_by_id(attempt.id, "ended")
        log.info(
            "Shard %d round %d: %d requests sent synchronously", shard_index, round_number, request_count
        )
        return {**submission, "results": [str(p) for p in parts]}
    if attempt.batch_id is None:
        attempt = _create_once(store, hook, attempt, requests_file, log)
        if attempt.batch_id is not None and not attempt.adopted:
            log.info(
                "Shard %d round %d: created batch %s with %d requests",
                shard_index,
                round_number,
                attempt.batch_id,
                request_count,
            )
            return {**submission, "batch_id": attempt.batch_id}
    log.info(
        "Shard %d round %d: re-attaching to batch %s created by an earlier try; nothing is paid again",
        shard_index,
        round_number,
        attempt.batch_id,
    )
    return {**submission, "batch_id": attempt.batch_id, "adopted": attempt.adopted}


def _create_once(
    store: Store, hook: ClaudeBatchHook, attempt: AttemptRecord, requests_file: ObjectStoragePath, log: Any
) -> AttemptRecord:
    """Create the attempt's batch under the store's create lock, or find the one a lost create made.

    Every create of the deployment runs under the lock, with its mark (the newest batch listed just
    before it) recorded first. So the newest batch, when no attempt holds it, is the batch of the
    last create, made by a try that died or lost the response before attaching it: it is attached to
    that attempt (whichever shard it is), then this attempt creates only if it still has no batch.
    A retry after an ambiguous error looks again first, so a create that went through is never paid twice.
    """
    with store.batch_create_lock():
        for try_ in Retrying(
            retry=retry_if_exception(_create_may_be_retried),
            stop=stop_after_attempt(6),
            wait=wait_exponential(multiplier=1, max=60),
            before_sleep=lambda state: _log_create_retry(state, log),
            reraise=True,
        ):
            with try_:
                newest = _settle_last_create(store, hook, log)
                attempt = store.attempt_by_id(attempt.id)
                if attempt.batch_id is not None:
                    return attempt
                store.begin_create(attempt.id, newest.id if newest else None)
                batch = hook.create_batch_from_file(requests_file)
                crash_point("submit.after_create")
                return store.attach_batch(attempt.id, batch.id)
    raise AssertionError("unreachable: tenacity re-raises the last error")


def _create_may_be_retried(error: BaseException) -> bool:
    """A create that failed for a transient cause: refused (nothing made), or ambiguous (the retry
    looks for the batch it may have made first)."""
    cause = failure_cause(error)
    return cause is not None and cause.transient


def _log_create_retry(state: RetryCallState, log: Any) -> None:
    assert state.outcome is not None
    error = state.outcome.exception()
    cause = failure_cause(error)
    assert cause is not None, "only a transient cause is retried"
    if cause.ambiguous_on_create:
        log.warning(
            "Batch create failed (%s: %s) and may have made the batch anyway; looking for it before "
            "creating again",
            cause.name,
            error,
        )
    else:
        log.warning("Batch create refused (%s: %s); nothing was made, trying again", cause.name, error)


def _settle_last_create(store: Store, hook: ClaudeBatchHook, log: Any) -> MessageBatch | None:
    """Attach the newest batch to the last create when it made it and nobody attached it; return it."""
    newest = hook.newest_batch()
    last = store.last_create()
    if newest is None or last is None or last.batch_id is not None or newest.id == last.create_mark:
        return newest
    if store.is_batch_known(newest.id):
        return newest
    if batch_request_total(newest.request_counts) != last.request_count:
        log.warning(
            "Batch %s is the newest and in no ledger row, but its %d requests are not the %d of the last "
            "create (attempt %d); it was not created by this deployment, and is left alone",
            newest.id,
            batch_request_total(newest.request_counts),
            last.request_count,
            last.id,
        )
        return newest
    log.warning(
        "Batch %s (created %s) belongs to attempt %d (run %d, shard %d, round %d), whose create went "
        "through but was not recorded; attached to it, its custom_ids are verified when its results arrive",
        newest.id,
        newest.created_at.isoformat(),
        last.id,
        last.run_id,
        last.shard_index,
        last.round,
    )
    store.attach_batch(last.id, newest.id, adopted=True)
    return newest
