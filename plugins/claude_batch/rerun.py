"""The synchronous re-run of one record, for the analyst who is waiting: seconds, not a night.

A re-run names a workload, a business key and a run date (and why). The record is the one that run
read: its position comes from the run's manifest (or its quarantine row) and it is read back from the
run's own recorded input, by the project's capped reader; a caller never names a file or sends
a record. It goes through the Messages API with the workload's own prompt, like any paid call after
a ledger row (who, when, why, model), and its validated output is published with ``source="rerun"``.
A record the run sent as chunks, or one too large for one request now, is cut into the chunks shard
cuts (``sharding.record_chunks``, the spec's chunking settings), each sent in turn within the same
time limit, and their answers merged by the spec's merge rule, as publish merges them; the ledger
row holds the tokens and cost of every chunk. The output it replaces, or the quarantine row it
releases, stays on the ledger row, so the re-run can be seen and undone. The plugin's endpoint and the ``rerun_record`` DAG both call ``rerun_record``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

import anthropic
from pydantic import BaseModel, ConfigDict, Field

from claude_batch.hooks.claude import ClaudeBatchHook, refused_as_too_long
from claude_batch.hooks.store import get_store
from claude_batch.redaction import mask_connection, redact
from claude_batch.stages.run import read_input
from claude_batch.store import OutputRow, RerunRecord, RunRecord, Store
from claude_batch.strategy.chunking import merge_answers
from claude_batch.strategy.cost import cost_usd
from claude_batch.strategy.outputs import message_text, parse_output
from claude_batch.strategy.quarantine import QuarantineEntry
from claude_batch.strategy.requests import request_builder
from claude_batch.strategy.sharding import OVERSIZED, ValidRecord, check_record, record_chunks, request_line
from claude_batch.strategy.spec import InputFormat, WorkloadSpec, bundled_workload_names, load_workload
from claude_batch.strategy.usage import Usage
from claude_batch.workloads import register_bundled_workloads

# The specs this face loads by name are the bundled ones (and $CLAUDE_BATCH_SPECS_DIR's).
register_bundled_workloads()

DEFAULT_TIMEOUT_SECONDS = 120.0


class RerunError(ValueError):
    """The re-run cannot be done as asked; the message says what to change. Nothing was paid."""


class UnknownRerunTargetError(RerunError):
    """No run of the workload for that date, or no record with the business key in it."""


class InvalidAnswerError(RuntimeError):
    """The model answered, but not with a valid output; it was paid for, nothing was published."""


class UpstreamError(RuntimeError):
    """The Messages API (or a gateway before it) refused or failed the call; the text is redacted."""


class MergeError(RuntimeError):
    """The chunks were answered validly, but the spec's merge rule failed on them; nothing was published."""


class RerunRequest(BaseModel):
    """What to re-run: the record of ``business_key`` in the run of ``workload`` for ``run_date``.

    :param reason: why, for the audit trail (shown on the run page).
    """

    model_config = ConfigDict(extra="forbid")

    workload: str = Field(min_length=1, max_length=200)
    business_key: str = Field(min_length=1, max_length=2000)
    run_date: date
    reason: str = Field(default="", max_length=1000)


class RerunResult(BaseModel):
    """The validated output, as published, and the ledger row's facts."""

    model_config = ConfigDict(extra="forbid")

    rerun_id: int
    workload: str
    business_key: str
    run_date: date
    custom_id: str
    model: str
    output: dict[str, Any]
    input_tokens: int
    output_tokens: int
    cost_usd: float
    requested_by: str
    replaced_output: bool
    released_quarantine: int
    source: str = "rerun"


def run_for(request: RerunRequest, store: Store) -> tuple[WorkloadSpec, RunRecord]:
    """The workload's spec and its run of the date; a date without a run cannot be re-run."""
    # Only bundled workloads: they are the ones with a DAG, and a name is never read as a path.
    if request.workload not in bundled_workload_names():
        raise UnknownRerunTargetError(
            f"unknown workload {request.workload!r}; workloads: {', '.join(bundled_workload_names())}"
        )
    spec = load_workload(request.workload)
    run = store.run_of_date(spec.name, request.run_date)
    if run is None:
        raise UnknownRerunTargetError(
            f"{spec.name} has no run for {request.run_date}: a re-run fixes a record of a run, "
            "pick a date from the workload's run history"
        )
    return spec, run


@dataclass(frozen=True, slots=True)
class FoundRecord:
    """The record to re-run as the run read it, and whether the run sent it as chunks."""

    record: ValidRecord
    chunked_by_run: bool


def _position_of(store: Store, run: RunRecord, business_key: str) -> tuple[int, bool]:
    """The record's input position, and whether the run sent it as chunks (its manifest entry is one)."""
    entry = store.manifest_entry_of_key(run.id, business_key)
    if entry is not None and entry.position is not None:
        return entry.position, entry.chunk_of is not None
    # A record rejected before the manifest (an invalid field, say) has a quarantine row with its line.
    for row in store.quarantine_rows(run.id):
        if row.business_key == business_key and row.position is not None:
            return row.position, False
    raise UnknownRerunTargetError(
        f"no record with business key {business_key!r} in the run of {run.workload} for "
        f"{run.logical_date}; check the key (its run page lists the quarantined ones)"
    )


def find_record(
    spec: WorkloadSpec, run: RunRecord, business_key: str, store: Store, deadline: float
) -> FoundRecord:
    """The valid record of ``business_key`` as the run read it, from the run's own recorded input."""
    position, chunked_by_run = _position_of(store, run, business_key)
    input_uri = run.params.get("input_uri") or ""
    if not input_uri and spec.input.format is not InputFormat.SQL:
        raise RerunError(f"the run of {spec.name} for {run.logical_date} recorded no input")
    # The project's one reader: lines split on \n only and capped at input.max_record_bytes, so the
    # position counts as the run counted it and no line is held whole beyond the cap.
    read = None
    try:
        for candidate in read_input(spec, input_uri):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading the run's input to {position} took too long")
            if candidate.position >= position:
                read = candidate
                break
    except OSError as error:
        raise RerunError(
            f"the run's input cannot be read any more ({type(error).__name__}); re-run the date"
        ) from None
    if read is None or read.position != position:
        raise RerunError(
            f"the run's input no longer has a record at {position}; it changed since the run, re-run the date"
        )
    checked = check_record(spec, read, run.logical_date)
    if not isinstance(checked, ValidRecord):
        raise RerunError(f"the record of {business_key!r} is not valid: {checked.reason}")
    if checked.business_key != business_key:
        raise RerunError(
            f"the run's input holds {checked.business_key!r} at {read.where}, not {business_key!r}: "
            "it changed since the run, re-run the date"
        )
    return FoundRecord(checked, chunked_by_run)


@dataclass(frozen=True, slots=True)
class RerunCall:
    """One Messages call of a re-run: the record whole, or one of its chunks (``custom_id`` says which)."""

    custom_id: str
    params: dict[str, Any]


def rerun_calls(spec: WorkloadSpec, found: FoundRecord) -> list[RerunCall]:
    """What a re-run sends: the record whole, or its chunks as shard cuts them when the run sent it as
    chunks or it is too large for one request now (and the spec declares ``chunking``).

    :raises RerunError: the record cannot be sent as the spec stands (nothing is paid); the message
        names the record and what to change.
    """
    record = found.record
    builder = request_builder(spec)
    line = request_line(spec, builder, record)
    oversized = isinstance(line, QuarantineEntry) and line.quarantine_class in OVERSIZED
    if isinstance(line, QuarantineEntry) and not oversized:
        raise RerunError(f"{record.custom_id} cannot be sent: {line.reason}")
    if spec.chunking is None:
        if isinstance(line, QuarantineEntry):
            raise RerunError(
                f"{record.custom_id} is too large for one request: {line.reason}; or declare a chunking "
                f"section in the spec of {spec.name} to send it as chunks"
            )
        # The run chunked it, but the spec no longer does and it fits: it goes whole.
        return [RerunCall(record.custom_id, builder.params(record.record))]
    if not (oversized or found.chunked_by_run):
        return [RerunCall(record.custom_id, builder.params(record.record))]
    chunks = record_chunks(spec, builder, record)
    if isinstance(chunks, QuarantineEntry):
        raise RerunError(f"{record.custom_id} cannot be split into chunks: {chunks.reason}")
    # The params of each chunk's request line, exactly as shard writes it for the batch.
    return [RerunCall(chunk.custom_id, json.loads(chunk.line)["params"]) for chunk in chunks]


def _refusal_fix(error: anthropic.APIError, spec: WorkloadSpec, chunked: bool) -> str:
    """What to change when the API refused a re-run's call as too long for the model ('' otherwise)."""
    if not refused_as_too_long(error):
        return ""
    if chunked:
        return f"; its chunks are still too long for the model: lower chunking.max_tokens in the spec of {spec.name}"
    if spec.chunking is not None:
        return (
            f"; it was estimated to fit one request: lower context_window_tokens in the spec of "
            f"{spec.name} so that it is sent as chunks"
        )
    return f"; shorten the record's text, or declare a chunking section in the spec of {spec.name}"


def rerun_record(
    request: RerunRequest,
    *,
    requested_by: str,
    conn_id: str = "anthropic_default",
    store: Store | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    per_user_per_minute: int | None = None,
) -> RerunResult:
    """Re-run one record through the Messages API, publish its validated output and return it.

    :param per_user_per_minute: at most this many re-runs by ``requested_by`` in any minute, in the
        whole deployment (the ledger counts them); None: no limit.
    :raises RerunRateLimitedError: ``requested_by`` is at the limit (nothing was sent).
    :raises RerunError: the workload, date, record or input is not usable (nothing was sent).
    :raises UpstreamError: the call failed (the ledger row says so; the text is redacted).
    :raises InvalidAnswerError: the answer does not validate (it was paid for, nothing was published).
    """
    deadline = time.monotonic() + timeout_seconds
    store = store or get_store()
    if per_user_per_minute is not None:
        store.check_rerun_rate(requested_by, per_user_per_minute)  # before the record is read
    spec, run = run_for(request, store)
    found = find_record(spec, run, request.business_key, store, deadline)
    record = found.record
    calls = rerun_calls(spec, found)
    chunked = len(calls) > 1
    intent = store.record_rerun_intent(
        run.id,
        record.business_key,
        record.custom_id,
        requested_by,
        request.reason,
        spec.model,
        per_minute=per_user_per_minute,
    )
    mask_connection(conn_id)
    client = ClaudeBatchHook(conn_id=conn_id).get_conn()
    output_model, prices = spec.output_model(), spec.price_table()
    usage, cost, models = Usage(), 0.0, []
    answers: list[BaseModel] = []
    # One call after another in this re-run's own slot: a chunked record takes no more of the pool.
    for number, call in enumerate(calls, start=1):
        what = f"chunk {number} of {len(calls)} ({call.custom_id}) of " if chunked else ""
        remaining = deadline - time.monotonic()
        if number > 1 and remaining <= 0:
            text = (
                f"the re-run of {record.custom_id} ran out of time after {number - 1} of its {len(calls)} "
                "chunks; nothing was published, the earlier output stays; re-run it when re-runs are less "
                "busy, or raise [claude_batch] rerun_timeout_seconds"
            )
            store.fail_rerun(intent.id, "failed", text, usage, cost)
            raise TimeoutError(text)
        try:
            message = client.with_options(timeout=max(1.0, remaining), max_retries=1).messages.create(
                **call.params
            )
        except anthropic.APIError as error:
            text = redact(
                f"the Messages API refused the re-run of {what}{record.custom_id}: {error}"
                + _refusal_fix(error, spec, chunked)
            )
            store.fail_rerun(intent.id, "failed", text, usage, cost)
            raise UpstreamError(text) from None
        answer = message.model_dump(mode="json")
        billed = Usage.from_message(answer)
        models.append(answer.get("model") or spec.model)
        usage = usage + billed
        cost += cost_usd(billed, models[-1], batch=False, prices=prices)
        parsed = parse_output(message_text(answer), output_model)
        if parsed.value is None:
            text = redact(
                f"{what}{call.custom_id}: {parsed.problem}; nothing was published, the earlier output stays"
            )
            store.fail_rerun(intent.id, "invalid_output", text, usage, cost)
            raise InvalidAnswerError(text)
        answers.append(parsed.value)
    output = answers[0]
    if chunked:
        assert spec.chunking is not None  # only a spec with chunking cuts chunks
        try:
            output = merge_answers(
                spec.chunking.merge_rule(), output_model, [a.model_dump(mode="json") for a in answers]
            )
        except Exception as error:  # the merge rule is the workload's code: any failure is the record's
            text = redact(
                f"{record.custom_id} ({record.business_key}): merging its {len(answers)} chunk answers "
                f"with {spec.chunking.merge} failed: {error}; nothing was published, the earlier output "
                "stays; fix the merge rule, then re-run it"
            )
            store.fail_rerun(intent.id, "failed", text, usage, cost)
            raise MergeError(text) from None
    row = OutputRow(
        business_key=record.business_key,
        custom_id=record.custom_id,
        output=output.model_dump(mode="json"),
        model=models[0],
        source="rerun",
        **OutputRow.token_counts(usage),
    )
    done = store.publish_rerun(intent.id, row, cost)
    return result_of(done, spec.name, request.run_date)


def result_of(rerun: RerunRecord, workload: str, run_date: date) -> RerunResult:
    """What the caller is shown of a published re-run."""
    return RerunResult(
        rerun_id=rerun.id,
        workload=workload,
        business_key=rerun.business_key,
        run_date=run_date,
        custom_id=rerun.custom_id,
        model=rerun.model,
        output=rerun.output or {},
        input_tokens=rerun.input_tokens,
        output_tokens=rerun.output_tokens,
        cost_usd=rerun.cost_usd,
        requested_by=rerun.requested_by,
        replaced_output=rerun.replaced_output is not None,
        released_quarantine=len((rerun.released_quarantine or {}).get("rows", [])),
    )
