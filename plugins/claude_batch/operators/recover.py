"""Stage 7: resubmit only what failed, fixed by its cause, in rounds, within the deadline."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import BaseOperator, Context, ObjectStoragePath
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from pydantic import BaseModel

from claude_batch.hooks import claude_hook
from claude_batch.hooks.store import get_store
from claude_batch.stages.partition import partition_submission
from claude_batch.stages.route import batch_unavailable
from claude_batch.stages.run import RunContext, read_input
from claude_batch.stages.shard import manifest_rows, read_quarantine_file
from claude_batch.stages.submit import max_requests_in_flight, queue_is_full, submit_requests
from claude_batch.store import ShardRecord, Store
from claude_batch.strategy.batch_api import CANCEL_GRACE_SECONDS
from claude_batch.strategy.partition import FailureRecord, read_failures
from claude_batch.strategy.recovery import RecoveryPlan, SplitSource, is_too_long, plan_recovery
from claude_batch.strategy.routing import Route, decide_route, step_facts
from claude_batch.strategy.sharding import ValidRecord, check_record

if TYPE_CHECKING:
    from claude_batch.hooks.claude import ClaudeBatchHook


def round_request_files(
    run: RunContext, store: Store, round_number: int
) -> list[tuple[int, ObjectStoragePath]]:
    """(shard index, request file) of every submission of a round, in shard order."""
    if round_number == 0:
        return [
            (s.shard_index, ObjectStoragePath(s.uri)) for s in store.shards(run.store_run_id) if s.round == 0
        ]
    return run.layout.request_files(round_number)


def round_failures(
    run: RunContext, shard_indexes: Sequence[int], round_number: int
) -> Iterator[FailureRecord]:
    return chain.from_iterable(
        read_failures(run.layout.partition_dir(round_number, i)) for i in shard_indexes
    )


def split_sources(run: RunContext, store: Store, failures: Iterable[FailureRecord]) -> dict[str, SplitSource]:
    """The records of the requests refused as too long, read again from the input, for recovery to
    split them (only when the spec declares chunking; the input is read only when there are some)."""
    spec = run.spec()
    if spec.chunking is None:
        return {}
    too_long = [failure.custom_id for failure in failures if is_too_long(failure)]
    if not too_long:
        return {}
    entries = store.manifest_lookup(run.store_run_id, too_long)
    wanted = {entry.position: entry for entry in entries.values() if entry.position is not None}
    records: dict[int, BaseModel] = {}
    for read in read_input(spec, run.input_uri):
        entry = wanted.get(read.position)
        if entry is None:
            continue
        checked = check_record(spec, read, run.run_date)
        # A record that is not the one the request was made from (the input changed) is not split.
        if isinstance(checked, ValidRecord) and checked.business_key == entry.business_key:
            records[read.position] = checked.record
    sources = {}
    for custom_id, entry in entries.items():
        if entry.position in records:
            span = None if entry.text_start is None else (entry.text_start, entry.text_end or 0)
            sources[custom_id] = SplitSource(
                records[entry.position], entry.position, entry.chunk_depth or 0, span
            )
    return sources


class RecoverOperator(BaseOperator):
    """Resubmit failures only, by cause: transient errors as they are, expired/canceled/missing
    re-queued, too-long prompts split into chunks (when the spec chunks), invalid answers repaired
    once; what no resubmission fixes is quarantined with its reason. Rounds go on until nothing retryable is
    left, the spec's round limit, or the deadline; each round is routed again, so a round the batch
    window cannot fit before the deadline goes through the Messages API instead.

    The task defers while a round's batches run. Each resumption replays the rounds from the files
    and the ledger: planning is deterministic, submits re-attach, downloads are kept, so nothing is
    paid twice and a cleared task simply catches up.

    :param run: the route stage's run context.
    :param conn_id: Airflow connection of type ``anthropic``.
    :param poll_interval: first pause between polls of a recovery batch, in seconds.
    :param max_requests_in_flight: the processing-queue limit, as for the submit stage.
    :param queue_poll_interval: seconds between checks while the queue is full.
    """

    template_fields: Sequence[str] = ("run",)

    def __init__(
        self,
        *,
        run: Any,
        conn_id: str = "anthropic_default",
        poll_interval: float = 30.0,
        max_requests_in_flight: int | None = None,
        queue_poll_interval: float = 60.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.run = run
        self.conn_id = conn_id
        self.poll_interval = poll_interval
        self.max_requests_in_flight = max_requests_in_flight
        self.queue_poll_interval = queue_poll_interval

    def execute(self, context: Context, event: Any = None) -> dict:
        return self._advance(context)

    def resume(self, context: Context, event: dict | None = None) -> dict:
        if not event or event.get("status") == "error":
            raise AirflowException(f"Waiting for a recovery batch failed: {event!r}")
        if event["status"] == "deadline":
            self.log.warning(
                "Deadline passed with recovery batch %s running; canceling it", event["batch_id"]
            )
            claude_hook(self.conn_id).cancel_batch(event["batch_id"])
            get_store().update_attempt(event["batch_id"], "canceled")
        return self._advance(context)

    def _advance(self, context: Context) -> dict:
        run = RunContext.of(self.run)
        spec = run.spec()
        store = get_store()
        hook = claude_hook(self.conn_id)
        round_number = 0
        routes: list[dict] = []
        no_batch = batch_unavailable(self.conn_id, spec)
        while True:
            submitted = round_request_files(run, store, round_number)
            shard_indexes = [index for index, _ in submitted]
            plan = plan_recovery(
                spec,
                round_failures(run, shard_indexes, round_number),
                [path for _, path in submitted],
                round_number,
                run.layout.recovery_dir,
                split_sources(run, store, round_failures(run, shard_indexes, round_number)),
            )
            store.quarantine(run.store_run_id, read_quarantine_file(ObjectStoragePath(plan.quarantine_path)))
            store.add_manifest(run.store_run_id, manifest_rows(ObjectStoragePath(plan.manifest_path)))
            for line in plan.summary_lines():
                self.log.info("%s", line)
            if plan.run_level_problems:
                raise AirflowFailException(
                    f"Run-level problem {plan.run_level_problems}: the API refuses this account or connection, "
                    "not the records. Fix the connection, then clear this task; the records are quarantined "
                    "as run_level until then."
                )
            if plan.requests == 0:
                return {"rounds": round_number, "routes": routes}

            next_round = plan.next_round
            store.record_shards(
                run.store_run_id,
                [
                    ShardRecord(
                        shard_index=shard.index,
                        round=next_round,
                        uri=shard.path,
                        request_count=shard.request_count,
                        byte_size=shard.byte_size,
                    )
                    for shard in plan.shards
                ],
            )
            decision = decide_route(
                step_facts(
                    spec.routing,
                    f"recovery round {next_round}",
                    plan.requests,
                    datetime.now(UTC),
                    run.deadline,
                    batch_unavailable=no_batch,
                )
            )
            # The first decision stands: a resumed task re-plans the round with a later clock, but
            # the round already went the way first decided.
            decided = store.decide_round_route(
                run.store_run_id, next_round, decision.route.value, decision.rationale
            )
            route = Route(decided.route)
            self.log.info("%s", decided.rationale)
            routes.append({"round": next_round, "route": decided.route, "rationale": decided.rationale})
            if route is Route.BATCH and self._queue_is_full(store, hook, run, plan, next_round):
                self.log.info(
                    "Recovery round %d waits %ss for room in the queue", next_round, self.queue_poll_interval
                )
                self.defer(
                    trigger=TimeDeltaTrigger(timedelta(seconds=self.queue_poll_interval)),
                    method_name="execute",
                )
            submissions = [
                submit_requests(
                    store=store,
                    hook=hook,
                    run=run,
                    shard_index=shard.index,
                    round_number=next_round,
                    requests_file=ObjectStoragePath(shard.path),
                    request_count=shard.request_count,
                    route=route,
                    concurrency=spec.routing.sync_concurrency,
                    log=self.log,
                )
                for shard in plan.shards
            ]
            for submission in submissions:
                if submission["kind"] == "batch":
                    self._wait_for(hook, run, submission["batch_id"])
            for submission in submissions:
                partition_submission(store, hook, run, submission, self.log)
            round_number = next_round

    def _queue_is_full(
        self, store: Store, hook: ClaudeBatchHook, run: RunContext, plan: RecoveryPlan, round_number: int
    ) -> bool:
        """The submit stage's queue check, for the requests of the round not yet in a batch."""
        unsent = sum(
            shard.request_count
            for shard in plan.shards
            if (attempt := store.attempt(run.store_run_id, shard.index, round_number)) is None
            or attempt.batch_id is None
        )
        limit = max_requests_in_flight(self.max_requests_in_flight)
        return unsent > 0 and queue_is_full(store, hook, unsent, limit, self.log)

    def _wait_for(self, hook: ClaudeBatchHook, run: RunContext, batch_id: str) -> None:
        """Return when the batch has ended; otherwise defer (the task resumes in ``resume``)."""
        from claude_batch.triggers.batch import BatchEndedTrigger  # the SDK: imported when a task defers

        batch = hook.get_batch(batch_id)
        if batch.processing_status == "ended":
            return
        deadline = run.deadline.timestamp()
        if batch.processing_status == "canceling" or time.time() >= deadline:
            deadline = time.time() + CANCEL_GRACE_SECONDS
        self.log.info("Deferring until recovery batch %s ends", batch_id)
        self.defer(
            trigger=BatchEndedTrigger(
                conn_id=self.conn_id,
                batch_id=batch_id,
                deadline=deadline,
                created_at=batch.created_at.timestamp(),
                poll_interval=self.poll_interval,
            ),
            method_name="resume",
        )
