"""The synchronous re-run of one record, for the analyst who is waiting: seconds, not a night.

The record is found by its business key in the run's input (or given whole), sent through the
Messages API with the workload's own prompt, validated against the output schema and published
with ``source="rerun"``. Publishing releases the record's quarantine row in that date's run, so a
fixed record stops counting as quarantined. The plugin's ``POST`` endpoint and the ``rerun_record``
DAG (for an audited run in the task log) both call ``rerun_record``.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from claude_batch.hooks.claude import ClaudeBatchHook
from claude_batch.hooks.store import get_store
from claude_batch.operators.run import read_input
from claude_batch.store import OutputRow, Store
from claude_batch.strategy.outputs import message_text, parse_output
from claude_batch.strategy.records import RecordRead
from claude_batch.strategy.requests import request_builder
from claude_batch.strategy.sharding import ValidRecord, check_record
from claude_batch.strategy.spec import InputFormat, WorkloadSpec, bundled_workload_names, load_workload


class RerunError(ValueError):
    """The re-run cannot be done as asked; the message says what to change."""


class RecordNotFoundError(RerunError):
    """No valid record with the business key is in the input."""


class InvalidAnswerError(RuntimeError):
    """The model answered, but not with a valid output; nothing was published."""


class RerunRequest(BaseModel):
    """What to re-run.

    :param input_uri: the input to look the record up in; empty: the input of that date's run in the
        store, else the spec's ``input.uri`` for the date.
    :param record: the record itself (an input record of the workload); then the input is not read.
    """

    model_config = ConfigDict(extra="forbid")

    workload: str = Field(min_length=1)
    business_key: str = Field(min_length=1)
    run_date: date
    input_uri: str = ""
    record: dict[str, Any] | None = None


class RerunResult(BaseModel):
    """The validated output, as published."""

    model_config = ConfigDict(extra="forbid")

    workload: str
    business_key: str
    run_date: date
    custom_id: str
    model: str
    output: dict[str, Any]
    input_tokens: int
    output_tokens: int
    source: str = "rerun"


def _input_uri(spec: WorkloadSpec, request: RerunRequest, store: Store) -> str:
    if request.input_uri:
        return request.input_uri
    for run in store.recent_runs(spec.name, limit=400):
        if run.logical_date == request.run_date and run.params.get("input_uri"):
            return run.params["input_uri"]
    if spec.input.uri:
        return spec.input.uri_for(request.run_date)
    return ""


def find_record(spec: WorkloadSpec, request: RerunRequest, store: Store) -> ValidRecord:
    """The valid input record with the request's business key (or the request's own record)."""
    if request.record is not None:
        checked = check_record(spec, RecordRead(1, "record", record=request.record), request.run_date)
        if not isinstance(checked, ValidRecord):
            raise RerunError(f"the record given is not valid for {spec.name}: {checked.reason}")
        if checked.business_key != request.business_key:
            raise RerunError(
                f"the record given has business key {checked.business_key!r}, not {request.business_key!r}"
            )
        return checked
    input_uri = _input_uri(spec, request, store)
    if not input_uri and spec.input.format is not InputFormat.SQL:
        raise RerunError(f"{spec.name} has no input for {request.run_date}: give input_uri or the record")
    # The whole input is streamed: a key is found without loading the file, at read speed.
    for read in read_input(spec, input_uri):
        checked = check_record(spec, read, request.run_date)
        if isinstance(checked, ValidRecord) and checked.business_key == request.business_key:
            return checked
    raise RecordNotFoundError(
        f"no valid record with business key {request.business_key!r} in {input_uri or 'the SQL input'} "
        f"of {spec.name}; check the key, the run date and the input"
    )


def rerun_record(
    request: RerunRequest, *, conn_id: str = "anthropic_default", store: Store | None = None
) -> RerunResult:
    """Re-run one record through the Messages API, publish its validated output and return it.

    :raises RerunError: the workload, record or input is not usable (nothing was sent).
    :raises InvalidAnswerError: the answer does not validate (it was paid for, nothing was published).
    """
    # Only bundled workloads: they are the ones with a DAG, and a name is never read as a path.
    if request.workload not in bundled_workload_names():
        raise RerunError(
            f"unknown workload {request.workload!r}; bundled: {', '.join(bundled_workload_names())}"
        )
    spec = load_workload(request.workload)
    store = store or get_store()
    found = find_record(spec, request, store)
    params = request_builder(spec).params(found.record)
    message = ClaudeBatchHook(conn_id=conn_id).get_conn().messages.create(**params).model_dump(mode="json")
    parsed = parse_output(message_text(message), spec.output_model())
    if parsed.value is None:
        raise InvalidAnswerError(
            f"{found.custom_id}: {parsed.problem}; nothing was published, the earlier output (if any) stays"
        )
    row = OutputRow(
        business_key=found.business_key,
        custom_id=found.custom_id,
        output=parsed.value.model_dump(mode="json"),
        model=message.get("model") or spec.model,
        source="rerun",
        **OutputRow.token_counts(message.get("usage")),
    )
    store.upsert_outputs(spec.name, request.run_date, [row])
    return RerunResult(
        workload=spec.name,
        business_key=row.business_key,
        run_date=request.run_date,
        custom_id=row.custom_id,
        model=row.model,
        output=row.output,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
    )
