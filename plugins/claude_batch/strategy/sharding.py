"""Sharding: stream the input into right-sized batch request files, quarantining what cannot be sent.

Each record is checked (readable, valid against the input model, business key present, text not
empty), given its custom_id (duplicates and collisions quarantined, the first occurrence wins),
rendered into Messages API params, and measured as the exact JSONL line that will be sent, in bytes.
A record whose line is over ``max_request_bytes``, or whose prompt is estimated over the context
window, is quarantined; the rest are appended to the current shard, and a new shard is cut before a
line would take it past the spec's targets. The API's limits (100,000 requests, 256 MB) are never
crossed, whatever the targets and record sizes.

Memory is independent of the input size: records stream through one at a time, every output is a
file being appended to, and the custom_id index is on disk (see ``_scratch``).

Files written into the output directory:

- ``shard-00000.jsonl`` ...: one ``{"custom_id": ..., "params": {...}}`` per line.
- ``manifest.jsonl``: one ``ManifestEntry`` per request (custom_id, business_key, shard, round, position),
  and one (shard ``SAMPLE_SHARD``) per record the validation sample already answered validly: that
  answer is published, so the record is in no shard and is never paid for twice.
- ``quarantine.jsonl``: one ``QuarantineEntry`` per record that will not be sent.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import IO

import jinja2
from pydantic import BaseModel, ConfigDict, ValidationError

from claude_batch.strategy.chunking import MIN_CHUNK_BYTES, chunk_custom_id, split_text
from claude_batch.strategy.custom_ids import CustomIdRegistry, IdOutcome, KeyValue, custom_id_for, key_text
from claude_batch.strategy.layout import manifest_name, quarantine_name, request_file_name
from claude_batch.strategy.manifest import ManifestWriter
from claude_batch.strategy.outputs import describe_validation_error
from claude_batch.strategy.paths import OutputDir
from claude_batch.strategy.quarantine import QuarantineClass, QuarantineEntry
from claude_batch.strategy.records import RecordRead
from claude_batch.strategy.requests import RequestBuilder, request_builder
from claude_batch.strategy.spec import BATCH_BODY_OVERHEAD, MAX_BATCH_BYTES, MAX_BATCH_REQUESTS, WorkloadSpec
from claude_batch.strategy.storable import storable, unstorable

BYTES_PER_TOKEN = 4
"""Prompt bytes per token for the context-window estimate (times the model's tokenizer factor from
models.yaml: 4.7 and later make about 30 % more tokens of the same text). English prose runs near 4; text with
more tokens per byte is caught by the API instead (an errored request, not billed, which recovery
trims or quarantines), so the estimate errs towards sending rather than towards a false quarantine."""

SAMPLE_SHARD = 1_000_000
"""The shard index of the validation sample's requests (in the ledger and the manifest); the input's
shards (0, 1, 2, ...) never come near it (a shard holds up to 100,000 requests)."""


class Shard(BaseModel):
    """One request file, to become one Message Batch."""

    model_config = ConfigDict(extra="forbid")

    index: int
    path: str
    request_count: int
    byte_size: int


class ShardPlan(BaseModel):
    """What sharding wrote: the shards, the manifest and the quarantine, with their counts.

    :param records_read: input records seen (blank lines are not records).
    :param requests: requests written to shards (= manifest entries outside the sample).
    :param answered_by_sample: valid records left out of the shards: the sample answered them.
    :param request_bytes: bytes of all shard files.
    :param quarantined: records quarantined, by class.
    :param records_chunked: records too large for one request, sent as several chunk requests.
    :param chunk_requests: requests that are chunks (included in ``requests``).
    """

    model_config = ConfigDict(extra="forbid")

    shards: list[Shard]
    manifest_path: str
    quarantine_path: str
    records_read: int
    requests: int
    request_bytes: int
    quarantined: dict[QuarantineClass, int]
    answered_by_sample: int = 0
    records_chunked: int = 0
    chunk_requests: int = 0

    @property
    def quarantined_total(self) -> int:
        return sum(self.quarantined.values())

    @property
    def records_sent(self) -> int:
        """Records in the shards: one request each, or several chunks."""
        return self.requests - self.chunk_requests + self.records_chunked

    def accounted(self) -> bool:
        """Every record read is either in a shard, answered by the sample or in the quarantine, once."""
        return self.records_read == self.records_sent + self.answered_by_sample + self.quarantined_total


@dataclass(frozen=True, slots=True)
class ValidRecord:
    """A record that passed the checks of its workload, with its identity worked out.

    :param record: the validated instance of the workload's input model.
    :param business_key: the key as text (compound keys as a JSON array).
    """

    position: int
    where: str
    record: BaseModel
    key_values: tuple[KeyValue, ...]
    business_key: str
    custom_id: str


def check_record(spec: WorkloadSpec, read: RecordRead, run_date: date) -> ValidRecord | QuarantineEntry:
    """Validate one record read against ``spec``; the quarantine entry says what is wrong and what to do."""
    if read.record is None:
        return QuarantineEntry(
            quarantine_class=QuarantineClass.UNREADABLE,
            position=read.position,
            reason=f"{read.where}: {read.detail}; {read.fix or f'fix or remove the {read.unit}'}",
        )
    for field in spec.business_key:
        value = read.record.get(field)
        if value is None or (isinstance(value, str) and not value.strip()):
            return QuarantineEntry(
                quarantine_class=QuarantineClass.MISSING_KEY,
                position=read.position,
                reason=f"{read.where}: business key field {field!r} is missing or empty; add it in the "
                "input: every record needs its key to be published exactly once",
            )
    input_model = spec.input_model()
    try:
        record = input_model.model_validate(read.record)
    except ValidationError as error:
        raw_key = key_text([str(read.record[f]) for f in spec.business_key])
        return QuarantineEntry(
            quarantine_class=QuarantineClass.INVALID_RECORD,
            position=read.position,
            business_key=raw_key,
            reason=f"{read.where} ({raw_key}): {describe_validation_error(error, input_model.__name__)}; "
            "correct the record in the input",
        )
    key_values = tuple(getattr(record, field) for field in spec.business_key)
    business_key = key_text([str(v) for v in key_values])
    for field, value in zip(spec.business_key, key_values, strict=True):
        if isinstance(value, bool) or not isinstance(value, str | int):
            return QuarantineEntry(
                quarantine_class=QuarantineClass.INVALID_RECORD,
                position=read.position,
                business_key=business_key,
                reason=f"{read.where}: business key field {field!r} is a {type(value).__name__}; "
                "keys must be text or whole numbers",
            )
        if held := unstorable(str(value)):
            return QuarantineEntry(
                quarantine_class=QuarantineClass.INVALID_RECORD,
                position=read.position,
                business_key=business_key,
                reason=f"{read.where} ({storable(business_key)}): business key field {field!r} holds "
                f"{held}, which the store cannot hold (PostgreSQL refuses it); correct the key in the input",
            )
    for field in spec.text_fields:
        text = getattr(record, field)
        if not isinstance(text, str) or not text.strip():
            return QuarantineEntry(
                quarantine_class=QuarantineClass.EMPTY_TEXT,
                position=read.position,
                business_key=business_key,
                reason=f"{read.where} ({business_key}): {field!r} is empty; there is nothing to send: "
                "fill it in in the input or drop the record",
            )
    return ValidRecord(
        position=read.position,
        where=read.where,
        record=record,
        key_values=key_values,
        business_key=business_key,
        custom_id=custom_id_for(spec.custom_id_prefix, key_values, run_date),
    )


def valid_records(spec: WorkloadSpec, reads: Iterable[RecordRead], run_date: date) -> Iterator[ValidRecord]:
    """The records sharding would send (``check_record``, then ``request_line``): what the validation
    sample is drawn from, so the sample never pays for a prompt the run quarantines."""
    builder = request_builder(spec)
    for read in reads:
        checked = check_record(spec, read, run_date)
        if isinstance(checked, ValidRecord) and isinstance(request_line(spec, builder, checked), bytes):
            yield checked


def requests_to_send(
    spec: WorkloadSpec, reads: Iterable[RecordRead], run_date: date
) -> Iterator[tuple[ValidRecord, list[ChunkRequest] | None]]:
    """The records sharding would send, each with None (sent whole) or the chunk requests it is sent
    as (too large for one request, and the spec declares ``chunking``): what the cost guard prices."""
    builder = request_builder(spec)
    for read in reads:
        checked = check_record(spec, read, run_date)
        if not isinstance(checked, ValidRecord):
            continue
        line = request_line(spec, builder, checked)
        if isinstance(line, bytes):
            yield checked, None
        elif spec.chunking is not None and line.quarantine_class in OVERSIZED:
            chunks = record_chunks(spec, builder, checked)
            if not isinstance(chunks, QuarantineEntry):
                yield checked, chunks


def estimated_tokens(builder: RequestBuilder, user_text: str) -> int:
    """The prompt's tokens as estimated before sending (system prompt and user message)."""
    return math.ceil(
        (builder.system_bytes + len(user_text.encode())) / BYTES_PER_TOKEN * builder.token_factor
    )


def request_line(
    spec: WorkloadSpec, builder: RequestBuilder, checked: ValidRecord
) -> bytes | QuarantineEntry:
    """The exact request line of a valid record, or why it cannot be sent (render, context, size)."""
    try:
        user_text = builder.user_text(checked.record)
    except jinja2.TemplateError as error:
        return _problem(checked, QuarantineClass.RENDER_FAILED, f"the user template failed: {error}")
    estimated = estimated_tokens(builder, user_text)
    if estimated + spec.max_tokens > spec.context_window_tokens:
        return _problem(
            checked,
            QuarantineClass.CONTEXT_WINDOW,
            f"the prompt is about {estimated} tokens; with max_tokens {spec.max_tokens} "
            f"that exceeds the context window of {spec.context_window_tokens}: shorten the "
            "record's text or split it into several records",
        )
    line = builder.request_line(checked.custom_id, user_text)
    if len(line) > spec.max_request_bytes:
        return _problem(
            checked,
            QuarantineClass.REQUEST_TOO_LARGE,
            f"the request is {len(line)} bytes, over max_request_bytes {spec.max_request_bytes}; "
            "shorten the record's text or raise max_request_bytes",
        )
    return line


OVERSIZED = frozenset({QuarantineClass.CONTEXT_WINDOW, QuarantineClass.REQUEST_TOO_LARGE})
"""What chunking resolves: a record too large for one request, not a bad one."""

_CHUNK_SHRINK = 0.75
_CHUNK_TRIES = 6


@dataclass(frozen=True, slots=True)
class ChunkRequest:
    """One chunk request of a record, with where its text is in the record's chunked field."""

    custom_id: str
    chunk_of: str
    chunk: int
    chunk_count: int
    depth: int
    text_start: int
    text_end: int
    line: bytes

    def manifest_fields(self) -> dict[str, int | str]:
        return {
            "chunk_of": self.chunk_of,
            "chunk": self.chunk,
            "chunk_count": self.chunk_count,
            "chunk_depth": self.depth,
            "text_start": self.text_start,
            "text_end": self.text_end,
        }


def chunk_budget_bytes(spec: WorkloadSpec, builder: RequestBuilder, record: BaseModel, custom_id: str) -> int:
    """The most text one chunk of ``record`` may hold: what fits the context window (with max_tokens)
    and ``max_request_bytes`` around the prompt's other parts, capped by ``chunking.max_tokens``."""
    assert spec.chunking is not None and spec.chunking.field is not None
    frame = builder.user_text(record.model_copy(update={spec.chunking.field: ""}))
    window = (
        spec.context_window_tokens - spec.max_tokens - estimated_tokens(builder, frame)
    ) * BYTES_PER_TOKEN
    request = spec.max_request_bytes - len(builder.request_line(chunk_custom_id(custom_id, 99, 99), frame))
    budget = min(window, request)
    if spec.chunking.max_tokens is not None:
        budget = min(budget, spec.chunking.max_tokens * BYTES_PER_TOKEN)
    return budget


def split_request(
    spec: WorkloadSpec,
    builder: RequestBuilder,
    record: BaseModel,
    parent_id: str,
    span: tuple[int, int],
    depth: int,
    max_bytes: int,
) -> list[ChunkRequest] | str:
    """The chunk requests of the text ``span`` of ``record``'s chunked field (the whole record, or a
    chunk split again), each fitting the window and ``max_request_bytes``; or why none can be made.

    Chunks are cut at ``max_bytes`` first; when escaping makes a rendered chunk too large after all,
    the text is split again with a smaller size (deterministic: the same record gives the same chunks).
    """
    chunking = spec.chunking
    assert chunking is not None and chunking.field is not None
    text = getattr(record, chunking.field)[span[0] : span[1]]
    overlap = chunking.overlap_tokens * BYTES_PER_TOKEN
    target = chunking.target_tokens * BYTES_PER_TOKEN
    for _ in range(_CHUNK_TRIES):
        if max_bytes < overlap + MIN_CHUNK_BYTES:
            break
        spans = split_text(text, max_bytes, target, overlap, chunking.headings)
        if len(spans) < 2:
            max_bytes = min(max_bytes, len(text.encode())) // 2
            continue
        requests = []
        for number, part in enumerate(spans, start=1):
            custom_id = chunk_custom_id(parent_id, number, len(spans))
            user_text = builder.user_text(record.model_copy(update={chunking.field: part.of(text)}))
            line = builder.request_line(custom_id, user_text)
            tokens = estimated_tokens(builder, user_text) + spec.max_tokens
            if tokens > spec.context_window_tokens or len(line) > spec.max_request_bytes:
                break
            requests.append(
                ChunkRequest(
                    custom_id,
                    parent_id,
                    number,
                    len(spans),
                    depth,
                    span[0] + part.begin,
                    span[0] + part.end,
                    line,
                )
            )
        else:
            return requests
        max_bytes = int(max_bytes * _CHUNK_SHRINK)
    return (
        f"no split of its {len(text):,} characters into chunks fits one request: the prompt around a "
        f"chunk leaves too little of the context window ({spec.context_window_tokens} tokens with "
        f"max_tokens {spec.max_tokens}) or of max_request_bytes ({spec.max_request_bytes}); shorten the "
        "prompt or lower max_tokens"
    )


class ShardWriter:
    """Appends request lines to numbered files, cutting a new one before a line would cross a target.

    Targets are capped at the API's limits, so no file ever holds more than 100,000 lines or more
    than ``MAX_BATCH_BYTES`` once wrapped in the create-batch body.

    :param round_number: the round the files are for, which names them (``layout.request_file_name``).
    """

    def __init__(
        self, out_dir: OutputDir, round_number: int, target_requests: int, target_bytes: int
    ) -> None:
        self._out_dir = out_dir
        self._round = round_number
        self._target_requests = min(target_requests, MAX_BATCH_REQUESTS)
        self._target_bytes = min(target_bytes, MAX_BATCH_BYTES - BATCH_BODY_OVERHEAD)
        self._file: IO[bytes] | None = None
        self._count = 0
        self._bytes = 0
        self.shards: list[Shard] = []

    def add(self, line: bytes) -> int:
        """Append one request line; returns the index of the shard it went into."""
        if len(line) + BATCH_BODY_OVERHEAD > MAX_BATCH_BYTES:
            raise ValueError(f"a request line of {len(line)} bytes cannot fit in any batch")
        if self._file is None or (
            self._count + 1 > self._target_requests or self._bytes + len(line) > self._target_bytes
        ):
            self._file = self._cut()
        self._file.write(line)
        self._count += 1
        self._bytes += len(line)
        return len(self.shards) - 1

    def _cut(self) -> IO[bytes]:
        self._finish()
        path = self._out_dir / request_file_name(self._round, len(self.shards))
        self.shards.append(Shard(index=len(self.shards), path=str(path), request_count=0, byte_size=0))
        self._count = 0
        self._bytes = 0
        return path.open("wb")

    def _finish(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self.shards[-1] = self.shards[-1].model_copy(
                update={"request_count": self._count, "byte_size": self._bytes}
            )

    def close(self) -> None:
        self._finish()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_shards(
    spec: WorkloadSpec,
    reads: Iterable[RecordRead],
    out_dir: OutputDir,
    run_date: date,
    answered: Container[str] = frozenset(),
) -> ShardPlan:
    """Shard one run's input into ``out_dir``; see the module docstring for the files.

    :param reads: the input, e.g. ``records.read_records(spec.input, path)``.
    :param run_date: the date in the custom_ids (``spec.run_date(logical_date)``).
    :param answered: custom_ids the validation sample answered validly; they go to no shard.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    builder = request_builder(spec)
    manifest_path = out_dir / manifest_name(0)
    quarantine_path = out_dir / quarantine_name(0)
    quarantined: Counter[QuarantineClass] = Counter()
    records_read = 0
    requests = 0
    from_sample = 0
    records_chunked = chunk_requests = 0

    with (
        CustomIdRegistry() as registry,
        ShardWriter(out_dir, 0, spec.sharding.target_requests, spec.sharding.target_bytes) as shards,
        ManifestWriter(out_dir, 0) as manifest,
        quarantine_path.open("wb") as quarantine,
    ):

        def reject(entry: QuarantineEntry) -> None:
            quarantined[entry.quarantine_class] += 1
            quarantine.write(entry.model_dump_json().encode() + b"\n")

        for read in reads:
            records_read += 1
            checked = check_record(spec, read, run_date)
            if isinstance(checked, QuarantineEntry):
                reject(checked)
                continue
            id_check = registry.register(checked.custom_id, checked.business_key, checked.position)
            if id_check.outcome is not IdOutcome.NEW:
                reject(_id_problem(checked, id_check.outcome, id_check.first_key, id_check.first_position))
                continue
            line = request_line(spec, builder, checked)
            if isinstance(line, QuarantineEntry) and spec.chunking and line.quarantine_class in OVERSIZED:
                chunks = _chunk_record(spec, builder, checked, registry)
                if isinstance(chunks, QuarantineEntry):
                    reject(chunks)
                    continue
                for chunk in chunks:
                    entry = {
                        "custom_id": chunk.custom_id,
                        "business_key": checked.business_key,
                        "shard": shards.add(chunk.line),
                        "round": 0,
                        "position": checked.position,
                        "action": None,
                    }
                    manifest.write(entry | chunk.manifest_fields())
                records_chunked += 1
                chunk_requests += len(chunks)
                requests += len(chunks)
                continue
            if isinstance(line, QuarantineEntry):
                reject(line)
                continue
            if checked.custom_id in answered:
                shard = SAMPLE_SHARD
                from_sample += 1
            else:
                shard = shards.add(line)
                requests += 1
            manifest.write(
                {
                    "custom_id": checked.custom_id,
                    "business_key": checked.business_key,
                    "shard": shard,
                    "round": 0,
                    "position": checked.position,
                    "action": None,
                },
                in_shard_file=shard != SAMPLE_SHARD,
            )

    return ShardPlan(
        shards=shards.shards,
        manifest_path=str(manifest_path),
        quarantine_path=str(quarantine_path),
        records_read=records_read,
        requests=requests,
        request_bytes=sum(s.byte_size for s in shards.shards),
        quarantined=dict(quarantined),
        answered_by_sample=from_sample,
        records_chunked=records_chunked,
        chunk_requests=chunk_requests,
    )


def record_chunks(
    spec: WorkloadSpec, builder: RequestBuilder, checked: ValidRecord
) -> list[ChunkRequest] | QuarantineEntry:
    """A record too large for one request as the chunk requests shard sends for it (the spec declares
    ``chunking``), or why it cannot be split. Shard, the cost guard and a re-run all cut it here, so
    they see the same chunks."""
    assert spec.chunking is not None and spec.chunking.field is not None
    length = len(getattr(checked.record, spec.chunking.field))
    try:
        budget = chunk_budget_bytes(spec, builder, checked.record, checked.custom_id)
        chunks = split_request(spec, builder, checked.record, checked.custom_id, (0, length), 1, budget)
    except jinja2.TemplateError as error:
        return _problem(
            checked, QuarantineClass.RENDER_FAILED, f"the user template failed on a chunk: {error}"
        )
    if isinstance(chunks, str):
        return _problem(checked, QuarantineClass.CONTEXT_WINDOW, chunks)
    return chunks


def _chunk_record(
    spec: WorkloadSpec, builder: RequestBuilder, checked: ValidRecord, registry: CustomIdRegistry
) -> list[ChunkRequest] | QuarantineEntry:
    """A record too large for one request as chunk requests, their ids claimed in the registry."""
    chunks = record_chunks(spec, builder, checked)
    if isinstance(chunks, QuarantineEntry):
        return chunks
    for chunk in chunks:
        taken = registry.register(chunk.custom_id, checked.business_key, checked.position)
        if taken.outcome is not IdOutcome.NEW:
            return _problem(
                checked,
                QuarantineClass.ID_COLLISION,
                f"its chunk id {chunk.custom_id} is already the id of business key {taken.first_key} "
                f"(position {taken.first_position}); rename one of the keys",
            )
    return chunks


def _problem(record: ValidRecord, quarantine_class: QuarantineClass, why: str) -> QuarantineEntry:
    return QuarantineEntry(
        quarantine_class=quarantine_class,
        position=record.position,
        custom_id=record.custom_id,
        business_key=record.business_key,
        reason=f"{record.where} ({record.business_key}): {why}",
    )


def _id_problem(
    record: ValidRecord, outcome: IdOutcome, first_key: str | None, first_position: int | None
) -> QuarantineEntry:
    if outcome is IdOutcome.DUPLICATE_KEY:
        return _problem(
            record,
            QuarantineClass.DUPLICATE_KEY,
            f"the same business key was first seen at position {first_position}, which is the one sent; "
            "remove or merge the duplicate",
        )
    return _problem(
        record,
        QuarantineClass.ID_COLLISION,
        f"custom_id {record.custom_id} is already taken by business key {first_key} "
        f"(position {first_position}); two keys must not map to one id, so this one is held back",
    )
