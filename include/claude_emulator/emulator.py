"""The emulator's behaviour behind the HTTP face: batch lifecycle, processing, messages, stats.

Time model. Each request of a batch finishes at ``created_at + processing_seconds * c``, where ``c`` in
[0, 1) is a hash of (seed, batch id, custom_id); the batch ends at ``created_at + processing_seconds``,
or at ``expires_at`` (24 h) if that comes first, when its unfinished requests become ``expired``.
Nothing runs in the background: a batch is processed once, the first time it is observed (retrieved,
listed, canceled, or its results asked for) after it is due, and its results are stored. A cancel
makes the batch ``canceling``; the next observation ends it, requests that had finished by the cancel
keep their results and the others are ``canceled``. Results are available for 29 days after
``created_at``; then the batch is archived. Results come in completion order, which the hash shuffles.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import string
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claude_emulator.batch_body import read_batch_requests
from claude_emulator.clock import EmulatorClock, resumed_anchor, rfc3339
from claude_emulator.errors import GENERIC_MESSAGES, ApiError, invalid_request
from claude_emulator.faults import Endpoint, FaultPlan, HttpFault, RequestOutcome, draw
from claude_emulator.params import MessageRequest, count_prompt_tokens, validate_message_params
from claude_emulator.responders import Responders, configured_responder_modules, load_responders
from claude_emulator.schemas import conforms, minimal_instance
from claude_emulator.state import (
    MESSAGES_SCOPE,
    BatchRecord,
    EmulatorState,
    NewRequest,
    PendingRequest,
)
from claude_emulator.tokens import count_text_tokens
from claude_emulator.wire import (
    BatchResultLine,
    CacheCreation,
    CanceledResult,
    ErroredResult,
    ExpiredResult,
    Message,
    MessageBatch,
    RequestCounts,
    SucceededResult,
    TextBlock,
    Usage,
    error_body,
)

BATCH_LIFETIME_SECONDS = 24 * 3600
ARCHIVE_AFTER_SECONDS = 29 * 24 * 3600
CACHE_TTL_SECONDS = {"5m": 300, "1h": 3600}
_PROCESSING_CHUNK = 1000
_ID_ALPHABET = string.ascii_letters + string.digits
_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
_RESULT_TYPES = ("succeeded", "errored", "canceled", "expired")


def new_id(prefix: str) -> str:
    """An id shaped like the API's (``msgbatch_01…``, ``msg_01…``, ``req_01…``): 22 random base62 digits."""
    number = int.from_bytes(secrets.token_bytes(17))
    digits = []
    for _ in range(22):
        number, digit = divmod(number, 62)
        digits.append(_ID_ALPHABET[digit])
    return prefix + "01" + "".join(digits)


@dataclass(frozen=True)
class EmulatorConfig:
    """How an emulator behaves.

    :param state_path: the SQLite state file (kept across restarts).
    :param faults: the fault plan (empty: no faults).
    :param time_scale: emulator seconds per real second.
    :param processing_seconds: emulator seconds a batch takes to process.
    :param seed: the seed of every fault decision and of the order of results.
    :param responder_modules: the modules whose ``RESPONDERS`` answer prompts (see
        :mod:`claude_emulator.responders`); None: ``CLAUDE_EMULATOR_RESPONDERS`` or the defaults.
    """

    state_path: Path
    faults: FaultPlan = field(default_factory=FaultPlan)
    time_scale: float = 1.0
    processing_seconds: float = 0.0
    seed: int = 0
    responder_modules: tuple[str, ...] | None = None


@dataclass
class _CacheUse:
    read: int = 0
    created: dict[str, int] = field(default_factory=lambda: {"5m": 0, "1h": 0})


class Emulator:
    """The emulator's state, clock and rules; the FastAPI app is a thin face over it.

    :param config: how it behaves.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.state = EmulatorState(config.state_path)
        self.responders: Responders = load_responders(configured_responder_modules(config.responder_modules))
        self.clock = self._resume_clock()
        # Bodies of batch creates a crash interrupted: their batches were never stored.
        for leftover in config.state_path.parent.glob(f".{config.state_path.name}.upload-*"):
            leftover.unlink(missing_ok=True)
        self._batch_locks: dict[str, threading.Lock] = {}
        self._batch_locks_guard = threading.Lock()
        # Messages calls being answered now, and the most at once: what a caller's concurrency bound allows.
        self._messages_in_flight = 0
        self._messages_max_in_flight = 0
        self._in_flight_lock = threading.Lock()
        # Kept in memory: the sequence of HTTP faults starts over when the emulator restarts.
        self._endpoint_calls: Counter[str] = Counter()
        self._http_faults_injected: Counter[tuple[str, str]] = Counter()
        self._http_faults_lock = threading.Lock()

    def _resume_clock(self) -> EmulatorClock:
        wall = time.time()
        saved = self.state.clock_anchor()
        anchor = wall if saved is None else resumed_anchor(*saved, wall_now=wall)
        self.state.save_clock_anchor(anchor, wall, self.config.time_scale)
        return EmulatorClock(anchor, self.config.time_scale)

    def close(self) -> None:
        self.state.close()

    # HTTP faults

    def http_fault(self, endpoint: Endpoint) -> tuple[HttpFault | None, float]:
        """The failure (if any) of this call of `endpoint`, and how many seconds to delay it."""
        with self._http_faults_lock:
            self._endpoint_calls[endpoint] += 1
            call = self._endpoint_calls[endpoint]
        faults = self.config.faults.endpoint(endpoint)
        delay = faults.slow_seconds if faults.is_slow(self.config.seed, endpoint, call) else 0.0
        if delay:
            self.record_http_fault(endpoint, HttpFault.SLOW)
        return faults.failure_for(self.config.seed, endpoint, call), delay

    def record_http_fault(self, endpoint: Endpoint, fault: HttpFault) -> None:
        with self._http_faults_lock:
            self._http_faults_injected[(endpoint, fault.value)] += 1

    def retry_after_seconds(self, endpoint: Endpoint) -> float:
        return self.config.faults.endpoint(endpoint).retry_after_seconds

    def just_created(self, batch_id: str) -> bool:
        """Whether `batch_id` was created within the transient-404 window of retrieve_batch."""
        record = self.state.batch(batch_id)
        window = self.config.faults.endpoint("retrieve_batch").not_found_window_seconds
        return record is not None and self.clock.real_seconds(self.clock.now() - record.created_at) < window

    # Batches

    def new_upload_path(self) -> Path:
        """Where to keep the body of a batch create while it is read: beside the state, on disk."""
        state_path = self.config.state_path
        return state_path.with_name(f".{state_path.name}.upload-{uuid.uuid4().hex}")

    def create_batch(self, body_path: Path) -> BatchRecord:
        """Store the batch in the body file; raises ApiError for a body the API would refuse."""
        batch_id = new_id("msgbatch_")
        requests = (
            NewRequest(
                custom_id=request.custom_id,
                completion=draw(self.config.seed, "done", batch_id, request.custom_id),
                body=request.json_text,
            )
            for request in read_batch_requests(body_path)
        )
        return self.state.create_batch(batch_id, self.clock.now(), self.config.processing_seconds, requests)

    def observe(self, batch_id: str) -> BatchRecord:
        """The batch as it is now, processing it first if it is due; ApiError 404 when unknown."""
        record = self._known(batch_id)
        if record.ended_at is None and self._is_due(record, self.clock.now()):
            with self._batch_lock(batch_id):
                record = self._known(batch_id)
                now = self.clock.now()
                if record.ended_at is None and self._is_due(record, now):
                    self._process(record, now)
                    record = self._known(batch_id)
        return record

    def cancel(self, batch_id: str) -> BatchRecord:
        record = self.observe(batch_id)
        if record.ended_at is None:
            with self._batch_lock(batch_id):
                self.state.mark_cancel(batch_id, self.clock.now())
            record = self._known(batch_id)
        return record

    def delete(self, batch_id: str) -> None:
        record = self.observe(batch_id)
        if record.ended_at is None:
            raise invalid_request(
                f"Message Batch {batch_id} cannot be deleted while it is {self._status(record)}; "
                "cancel it and wait until it has ended"
            )
        with self._batch_lock(batch_id):
            self.state.delete_batch(record.seq)
        with self._batch_locks_guard:
            self._batch_locks.pop(batch_id, None)

    def list_batches(
        self, *, before_id: str | None, after_id: str | None, limit: int
    ) -> tuple[list[BatchRecord], bool]:
        page = self.state.list_batches(before_id=before_id, after_id=after_id, limit=limit)
        if page is None:
            raise ApiError("not_found_error", f"Message Batch {before_id or after_id} not found")
        records, has_more = page
        return [self.observe(record.id) for record in records], has_more

    def results_batch(self, batch_id: str) -> BatchRecord:
        """The batch whose results are asked for, if they can be served."""
        record = self.observe(batch_id)
        if record.ended_at is None:
            raise invalid_request(
                f"Message Batch {batch_id} has not ended yet; its results are not available"
            )
        if self._archived_at(record, self.clock.now()) is not None:
            raise ApiError("not_found_error", f"The results of Message Batch {batch_id} were archived")
        return record

    def view(self, record: BatchRecord, base_url: str) -> MessageBatch:
        """The batch as the API shows it; `base_url` is where this emulator was reached."""
        ended = record.ended_at is not None
        counts = (
            RequestCounts(
                succeeded=record.succeeded,
                errored=record.errored,
                canceled=record.canceled,
                expired=record.expired,
            )
            if ended
            else RequestCounts(processing=record.request_count)
        )
        archived_at = self._archived_at(record, self.clock.now())
        return MessageBatch(
            id=record.id,
            processing_status=self._status(record),
            request_counts=counts,
            created_at=rfc3339(record.created_at),
            expires_at=rfc3339(record.created_at + BATCH_LIFETIME_SECONDS),
            ended_at=rfc3339(record.ended_at) if ended else None,
            cancel_initiated_at=rfc3339(record.cancel_initiated_at) if record.cancel_initiated_at else None,
            archived_at=rfc3339(archived_at) if archived_at is not None else None,
            results_url=f"{base_url}v1/messages/batches/{record.id}/results" if ended else None,
        )

    def _known(self, batch_id: str) -> BatchRecord:
        record = self.state.batch(batch_id)
        if record is None:
            raise ApiError("not_found_error", f"Message Batch {batch_id} not found")
        return record

    def _batch_lock(self, batch_id: str) -> threading.Lock:
        with self._batch_locks_guard:
            return self._batch_locks.setdefault(batch_id, threading.Lock())

    @staticmethod
    def _status(record: BatchRecord) -> str:
        if record.ended_at is not None:
            return "ended"
        return "canceling" if record.cancel_initiated_at is not None else "in_progress"

    @staticmethod
    def _scheduled_end(record: BatchRecord) -> float:
        return record.created_at + min(record.processing_seconds, BATCH_LIFETIME_SECONDS)

    def _is_due(self, record: BatchRecord, now: float) -> bool:
        return record.cancel_initiated_at is not None or now >= self._scheduled_end(record)

    @staticmethod
    def _archived_at(record: BatchRecord, now: float) -> float | None:
        archived_at = record.created_at + ARCHIVE_AFTER_SECONDS
        return archived_at if now >= archived_at else None

    # Processing

    def _process(self, record: BatchRecord, now: float) -> None:
        """Answer every request of the batch and store the results, a chunk per transaction."""
        ended_at = now if record.cancel_initiated_at is not None else self._scheduled_end(record)
        self.state.clear_results(record.seq)
        outcomes: Counter[str] = Counter()
        counters: Counter[str] = Counter()
        chunk = 0
        after = (-1.0, -1)
        while pending := self.state.pending_requests(record.seq, after, _PROCESSING_CHUNK):
            lines = []
            with self.state.transaction() as connection:
                for request in pending:
                    result = self._batch_result(connection, record, request, counters)
                    outcomes[result.type] += 1
                    lines.append(
                        BatchResultLine(custom_id=request.custom_id, result=result).model_dump_json()
                    )
                self.state.insert_result_chunk(connection, record.seq, chunk, lines)
            chunk += 1
            after = (pending[-1].completion, pending[-1].position)
        counters.update({f"batch_results:{kind}": count for kind, count in outcomes.items()})
        self.state.finish_batch(record.seq, ended_at, dict(outcomes), dict(counters))

    def _batch_result(
        self,
        connection: sqlite3.Connection,
        record: BatchRecord,
        request: PendingRequest,
        counters: Counter[str],
    ) -> SucceededResult | ErroredResult | CanceledResult | ExpiredResult:
        done_at = record.created_at + record.processing_seconds * request.completion
        if record.cancel_initiated_at is not None and done_at > record.cancel_initiated_at:
            return CanceledResult()
        if done_at > record.created_at + BATCH_LIFETIME_SECONDS:
            return ExpiredResult()
        fault = self.config.faults.requests.fault_for(self.config.seed, request.custom_id, request.submission)
        outcome = fault.outcome if fault else None
        if outcome is RequestOutcome.EXPIRED:
            return ExpiredResult()
        if outcome is RequestOutcome.CANCELED:
            return CanceledResult()
        try:
            message_request = validate_message_params(json.loads(request.body)["params"], in_batch=True)
        except ApiError as error:
            return ErroredResult(error=error_body(error.kind, error.message, None))
        if fault is not None and fault.error_kind is not None:
            return ErroredResult(error=error_body(fault.error_kind, GENERIC_MESSAGES[fault.error_kind], None))
        message = self._answer(connection, message_request, done_at, "batch", outcome)
        if outcome is RequestOutcome.CUT_OFF or (
            outcome is RequestOutcome.INVALID_OUTPUT and message_request.output_schema is None
        ):
            counters["batch_results:invalid_output"] += 1
        self._count_usage(counters, message.usage)
        return SucceededResult(message=message)

    # Messages

    def create_message(self, params: Any) -> Message:
        """Answer /v1/messages; raises ApiError for bad params and for an injected error."""
        request = validate_message_params(params, in_batch=False)
        key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
        counters: Counter[str] = Counter()
        with self.state.transaction() as connection:
            # The submission is counted even when it fails, so that a retry draws again.
            submission = self.state.next_submission(connection, MESSAGES_SCOPE, key)
            fault = self.config.faults.requests.fault_for(self.config.seed, f"messages:{key}", submission)
            if fault is None or fault.error_kind is None:
                message = self._answer(
                    connection, request, self.clock.now(), "standard", fault.outcome if fault else None
                )
                counters["messages_created"] += 1
                self._count_usage(counters, message.usage)
                self.state.add_counters(connection, counters)
        if fault is not None and fault.error_kind is not None:
            raise ApiError(fault.error_kind, GENERIC_MESSAGES[fault.error_kind])
        return message

    def count_tokens(self, params: Any) -> int:
        tokens = count_prompt_tokens(params)
        with self.state.transaction() as connection:
            self.state.add_counters(connection, {"count_tokens_calls": 1})
        return tokens

    def _answer(
        self,
        connection: sqlite3.Connection,
        request: MessageRequest,
        at: float,
        service_tier: str,
        outcome: RequestOutcome | None,
    ) -> Message:
        text = self.responders.respond(request.prompt)
        schema = request.output_schema
        if schema is not None and not conforms(text, schema):
            # Structured outputs: the answer follows the schema asked for, whatever the workload.
            text = json.dumps(minimal_instance(schema))
        output_tokens = count_text_tokens(text)
        stop_reason = "end_turn"
        if outcome is RequestOutcome.CUT_OFF:
            # The answer ran into max_tokens: half of it, billed as the whole allowance. The schema
            # guarantee does not cover this; it is the invalid output structured outputs still give.
            text, output_tokens, stop_reason = text[: len(text) // 2], request.max_tokens, "max_tokens"
        elif outcome is RequestOutcome.INVALID_OUTPUT and schema is None:
            # Half of a JSON object is never valid JSON: the free-text answer a pipeline must catch.
            text = text[: len(text) // 2]
            output_tokens = count_text_tokens(text)
        if output_tokens > request.max_tokens:
            text = text[: request.max_tokens * 4]
            output_tokens = request.max_tokens
            stop_reason = "max_tokens"
        cache = self._use_cache(connection, request, at)
        created = cache.created["5m"] + cache.created["1h"]
        usage = Usage(
            input_tokens=request.layout.total_tokens - cache.read - created,
            output_tokens=output_tokens,
            cache_creation_input_tokens=created,
            cache_read_input_tokens=cache.read,
            cache_creation=CacheCreation(
                ephemeral_5m_input_tokens=cache.created["5m"], ephemeral_1h_input_tokens=cache.created["1h"]
            ),
            service_tier=service_tier,
        )
        return Message(
            id=new_id("msg_"),
            content=[TextBlock(text=text)] if text else [],
            model=request.model,
            stop_reason=stop_reason,
            usage=usage,
        )

    def _use_cache(self, connection: sqlite3.Connection, request: MessageRequest, at: float) -> _CacheUse:
        """Read the longest warm cached prefix, write the longer ones, as the API's prompt cache does."""
        cacheable = [
            breakpoint
            for breakpoint in request.layout.breakpoints
            if breakpoint.tokens >= request.spec.min_cacheable_tokens
        ]
        use = _CacheUse()
        hit = -1
        for index in reversed(range(len(cacheable))):
            if self.state.cache_is_warm(connection, cacheable[index].key, at):
                hit = index
                use.read = cacheable[index].tokens
                break
        boundary = use.read
        for breakpoint in cacheable[hit + 1 :]:
            if breakpoint.tokens > boundary:
                use.created[breakpoint.ttl] += breakpoint.tokens - boundary
                boundary = breakpoint.tokens
        # A read refreshes the entry it hit; a write creates the entries after it.
        for breakpoint in cacheable[max(hit, 0) :]:
            self.state.keep_cached(connection, breakpoint.key, at + CACHE_TTL_SECONDS[breakpoint.ttl])
        return use

    @staticmethod
    def _count_usage(counters: Counter[str], usage: Usage) -> None:
        for name in _USAGE_FIELDS:
            counters[f"usage:{usage.service_tier}:{name}"] += getattr(usage, name)

    # Observability

    def message_started(self) -> None:
        with self._in_flight_lock:
            self._messages_in_flight += 1
            self._messages_max_in_flight = max(self._messages_max_in_flight, self._messages_in_flight)

    def message_ended(self) -> None:
        with self._in_flight_lock:
            self._messages_in_flight -= 1

    def stats(self) -> dict[str, Any]:
        """What the emulator has done, for tests and benchmarks (``GET /_emulator/stats``)."""
        counters = self.state.counters()
        max_submissions, resubmitted = self.state.batch_submission_summary()
        faults: dict[str, dict[str, int]] = {}
        with self._http_faults_lock:
            injected = sorted(self._http_faults_injected.items())
        for (endpoint, fault), count in injected:
            faults.setdefault(endpoint, {})[fault] = count
        return {
            "batches_created": counters.get("batches_created", 0),
            "batch_requests_submitted": counters.get("batch_requests_submitted", 0),
            "messages_created": counters.get("messages_created", 0),
            "messages_max_in_flight": self._messages_max_in_flight,
            "count_tokens_calls": counters.get("count_tokens_calls", 0),
            "custom_id_max_submissions": max_submissions,
            "custom_ids_resubmitted": resubmitted,
            "batch_results": {
                kind: counters.get(f"batch_results:{kind}", 0) for kind in (*_RESULT_TYPES, "invalid_output")
            },
            "usage": {
                tier: {name: counters.get(f"usage:{tier}:{name}", 0) for name in _USAGE_FIELDS}
                for tier in ("batch", "standard")
            },
            "http_faults_injected": faults,
            "emulator_time": rfc3339(self.clock.now()),
        }
