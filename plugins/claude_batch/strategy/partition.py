"""Partition a batch's results: join them to the manifest, classify each, and account for every id.

Every custom_id the batch was sent with ends in exactly one class: succeeded (answer valid against
the output model), invalid_output (answered, but not a valid output; billed), errored (by error kind),
canceled, expired, or missing (no result line at all). Result lines for ids the batch was not sent
with, or a second line for the same id, are ``unknown``: reported, never published.

Memory stays flat whatever the result count: lines are streamed, partition files are appended to,
and the manifest join goes through an on-disk SQLite index (see ``_scratch``).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, closing
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic_core import from_json

from claude_batch.strategy._json import JSON_ENCODER, json_line
from claude_batch.strategy._scratch import scratch_db
from claude_batch.strategy.failures import (
    API_ERROR,
    RESULT_TOO_LARGE,
    UNRECOGNIZED_ERROR,
    UNRECOGNIZED_RESULT,
    ResultClass,
)
from claude_batch.strategy.layout import class_file_name
from claude_batch.strategy.lines import Line, jsonl_lines, read_lines
from claude_batch.strategy.manifest import ManifestEntry
from claude_batch.strategy.outputs import message_text, parse_output
from claude_batch.strategy.paths import OutputDir, ReadablePath
from claude_batch.strategy.storable import storable, unstorable_in
from claude_batch.strategy.usage import Usage, UsageTally, usage_counts

MAX_RESULT_LINE_BYTES = 32_000_000
"""The longest result line read. An answer is at most ``max_tokens`` (128,000 output tokens, some
hundreds of KB even when every character is escaped), so a longer line is no answer this pipeline
asked for; it is skipped unread, its custom_id taken from its first bytes (the API writes it first)."""
_LEADING_CUSTOM_ID = re.compile(rb'^\s*\{\s*"custom_id"\s*:\s*"([a-zA-Z0-9_-]{1,64})"')

FAILURE_CLASSES = tuple(c for c in ResultClass if c is not ResultClass.SUCCEEDED)


class FailureRecord(BaseModel):
    """One line of a failure partition file (every class but succeeded).

    :param business_key: null for ``unknown`` lines, which match no manifest entry.
    :param error_kind: for ``errored``, ``result.error.error.type`` as the API sent it.
    :param stop_reason: for ``invalid_output``, why the model stopped (``max_tokens`` = cut off).
    """

    model_config = ConfigDict(extra="forbid")

    custom_id: str | None
    business_key: str | None
    result_class: ResultClass
    error_kind: str | None = None
    message: str = ""
    stop_reason: str | None = None


class PartitionSummary(BaseModel):
    """Counts by class, usage, and where each class's lines were written.

    :param expected: manifest entries the batch was sent with.
    :param counts: result lines per class (every class present, 0 when none).
    :param errored_by_kind: errored lines per error kind.
    :param usage: tokens of every answered request (valid or not: both are billed).
    :param files: partition file path per class.
    """

    model_config = ConfigDict(extra="forbid")

    expected: int
    result_lines: int
    counts: dict[ResultClass, int]
    errored_by_kind: dict[str, int]
    usage: Usage
    files: dict[ResultClass, str]

    def accounted(self) -> bool:
        """Every expected id ended in exactly one class (``unknown`` lines are outside the batch)."""
        return self.expected == sum(n for c, n in self.counts.items() if c is not ResultClass.UNKNOWN)

    def cause_counts(self) -> dict[str, int]:
        """Counts with ``errored`` broken down by error kind: the mix that health compares run to run."""
        causes = {c.value: n for c, n in self.counts.items() if c is not ResultClass.ERRORED}
        causes.update(self.errored_by_kind)
        return causes


class _ExpectedIds:
    """custom_id → business key of the batch, each claimable once: the keys on disk, the claims in memory.

    The index is only read while results are joined: marking a row seen in it dirtied a page per
    claim, and once the index outgrew its cache (some 100,000 ids) every claim wrote a page back to
    the temp file, so the join grew worse than linear. Claims are one byte per id instead (400 KB for
    400,000 ids), by the entry's position in the manifest.
    """

    def __init__(self, entries: Iterable[ManifestEntry]) -> None:
        self._db = scratch_db(
            "CREATE TABLE expected (custom_id TEXT PRIMARY KEY, position INTEGER NOT NULL,"
            " business_key TEXT NOT NULL) WITHOUT ROWID"
        )
        try:
            self._db.executemany(
                "INSERT INTO expected (custom_id, position, business_key) VALUES (?, ?, ?)",
                ((e.custom_id, position, e.business_key) for position, e in enumerate(entries)),
            )
        except sqlite3.IntegrityError as error:
            self._db.close()
            raise ValueError(
                "the manifest lists a custom_id twice; it cannot be joined to results"
            ) from error
        self.count = self._db.execute("SELECT count(*) FROM expected").fetchone()[0]
        self._seen = bytearray(self.count)

    def claim(self, custom_id: str) -> tuple[str | None, str]:
        """(business key, "") the first time an expected id is seen, else (None, why it is unknown)."""
        row = self._db.execute(
            "SELECT position, business_key FROM expected WHERE custom_id = ?", (custom_id,)
        ).fetchone()
        if row is None:
            return None, f"{custom_id} is not in this batch's manifest"
        position, business_key = row
        if self._seen[position]:
            return None, f"a second result line for {custom_id}; the first one counts"
        self._seen[position] = 1
        return business_key, ""

    def unseen(self) -> Iterator[tuple[str, str]]:
        for custom_id, position, business_key in self._db.execute(
            "SELECT custom_id, position, business_key FROM expected"
        ):
            if not self._seen[position]:
                yield custom_id, business_key

    def close(self) -> None:
        self._db.close()


def _failure(
    custom_id: str | None,
    business_key: str | None,
    result_class: ResultClass,
    message: str,
    error_kind: str | None = None,
    stop_reason: str | None = None,
) -> bytes:
    return json_line(
        {
            "custom_id": custom_id,
            "business_key": business_key,
            "result_class": result_class.value,
            "error_kind": error_kind,
            "message": storable(message),
            "stop_reason": stop_reason,
        }
    )


def partition_results(
    results: Iterable[Line | bytes | str],
    expected: Iterable[ManifestEntry],
    output_model: type[BaseModel],
    out_dir: OutputDir,
) -> PartitionSummary:
    """Classify each result line of one batch and write ``<class>.jsonl`` files into ``out_dir``.

    :param results: the results JSONL, line by line: ``Line`` from ``lines.read_lines`` (a line over
        ``MAX_RESULT_LINE_BYTES`` is classified without being read), or raw lines (bytes or str).
    :param expected: the manifest entries of exactly the requests this batch was sent with.
    :param output_model: what a succeeded answer must validate against.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {c: out_dir / class_file_name(c.value) for c in ResultClass}
    counts: Counter[ResultClass] = Counter()
    errored_by_kind: Counter[str] = Counter()
    usage_total = UsageTally()
    lines = 0
    with ExitStack() as stack:
        index = stack.enter_context(closing(_ExpectedIds(expected)))
        writers = {c: stack.enter_context(path.open("wb")) for c, path in files.items()}
        for number, line in enumerate(results, start=1):
            if isinstance(line, Line):
                if line.blank:
                    continue
                number = line.number
                if line.data is None:
                    lines += 1
                    result_class, output_line, kind, usage = _oversized(line, index)
                    counts[result_class] += 1
                    if kind is not None:
                        errored_by_kind[kind] += 1
                    writers[result_class].write(output_line)
                    continue
                line = line.data
            if not line.strip():
                continue
            lines += 1
            result_class, output_line, kind, usage = _classify(number, line, index, output_model)
            counts[result_class] += 1
            if kind is not None:
                errored_by_kind[kind] += 1
            if usage is not None:
                usage_total.add_counts(usage)
            writers[result_class].write(output_line)
        for custom_id, business_key in index.unseen():
            counts[ResultClass.MISSING] += 1
            writers[ResultClass.MISSING].write(
                _failure(custom_id, business_key, ResultClass.MISSING, "no result line for this request")
            )
    return PartitionSummary(
        expected=index.count,
        result_lines=lines,
        counts={c: counts[c] for c in ResultClass},
        errored_by_kind=dict(errored_by_kind),
        usage=usage_total.total(),
        files={c: str(path) for c, path in files.items()},
    )


def _oversized(line: Line, index: _ExpectedIds) -> tuple[ResultClass, bytes, str | None, None]:
    """A result line over ``MAX_RESULT_LINE_BYTES``: errored (not resent: it was answered and paid for)."""
    found = _LEADING_CUSTOM_ID.match(line.head)
    why = (
        f"the result line is {line.size:,} bytes, over the {MAX_RESULT_LINE_BYTES:,} a result line is read "
        "up to; it was answered (and billed) but is not read or resent: lower max_tokens, or fetch the "
        "batch's results from the API to look at it"
    )
    if found is None:
        message = f"line {line.number}: {why}; its custom_id is not among its first bytes"
        return ResultClass.UNKNOWN, _failure(None, None, ResultClass.UNKNOWN, message), None, None
    custom_id = found.group(1).decode()
    business_key, why_unknown = index.claim(custom_id)
    if business_key is None:
        return ResultClass.UNKNOWN, _failure(custom_id, None, ResultClass.UNKNOWN, why_unknown), None, None
    failure = _failure(custom_id, business_key, ResultClass.ERRORED, why, error_kind=RESULT_TOO_LARGE.name)
    return ResultClass.ERRORED, failure, RESULT_TOO_LARGE.name, None


def _loads(line: bytes | str) -> Any:
    """The JSON value of a result line.

    pydantic-core's parser takes a third of the json module's time, and where it reads a line it
    reads the same value. What it refuses goes to ``json.loads``, which reads some of it the same
    as before (an escaped lone surrogate, a BOM, UTF-16) and words the error of the rest as the
    quarantine texts always have.
    """
    try:
        return from_json(line)
    except (ValueError, TypeError):  # TypeError: a str holding a lone surrogate
        return json.loads(line)


def _classify(
    number: int, line: bytes | str, index: _ExpectedIds, output_model: type[BaseModel]
) -> tuple[ResultClass, bytes, str | None, dict[str, int] | None]:
    """(class, partition line, error kind, billed usage counts) of one result line."""
    try:
        data = _loads(line)
    except ValueError as error:
        return (
            ResultClass.UNKNOWN,
            _failure(None, None, ResultClass.UNKNOWN, f"line {number}: {error}"),
            None,
            None,
        )
    custom_id = data.get("custom_id") if isinstance(data, dict) else None
    if not isinstance(custom_id, str):
        message = f"line {number} is not a result line (no custom_id)"
        return ResultClass.UNKNOWN, _failure(None, None, ResultClass.UNKNOWN, message), None, None
    business_key, why_unknown = index.claim(custom_id)
    if business_key is None:
        return ResultClass.UNKNOWN, _failure(custom_id, None, ResultClass.UNKNOWN, why_unknown), None, None

    result = data.get("result") or {}
    result_type = result.get("type")
    if result_type == "succeeded":
        message = result.get("message") or {}
        usage = usage_counts(message.get("usage"))
        stop_reason = message.get("stop_reason")
        parsed = parse_output(message_text(message), output_model)
        problem = parsed.problem or ""
        if parsed.value is not None:
            # model_dump(mode="json") without its Python wrapper: the same call of its serializer.
            output = parsed.value.__pydantic_serializer__.to_python(parsed.value, mode="json")
            succeeded = {
                "custom_id": custom_id,
                "business_key": business_key,
                "output": output,
                "usage": usage,
                "model": message.get("model"),
            }
            # The line's own JSON text is searched for what no store holds: one encode serves both.
            text = JSON_ENCODER.encode(succeeded)
            held = unstorable_in(output, encoded=text)
            if held is None:
                return ResultClass.SUCCEEDED, (text + "\n").encode(), None, usage
            problem = f"the answer holds {held}, which the output store cannot hold"
        if stop_reason == "max_tokens":
            problem = f"the answer was cut off at max_tokens; {problem}"
        elif stop_reason == "refusal":
            problem = f"the model refused; {problem}"
        return (
            ResultClass.INVALID_OUTPUT,
            _failure(custom_id, business_key, ResultClass.INVALID_OUTPUT, problem, stop_reason=stop_reason),
            None,
            usage,
        )
    if result_type == "errored":
        error = (result.get("error") or {}).get("error") or {}
        kind = str(error.get("type") or UNRECOGNIZED_ERROR.name)
        failure = _failure(
            custom_id, business_key, ResultClass.ERRORED, str(error.get("message") or ""), error_kind=kind
        )
        return ResultClass.ERRORED, failure, kind, None
    if result_type in (ResultClass.CANCELED, ResultClass.EXPIRED):
        result_class = ResultClass(result_type)
        return (
            result_class,
            _failure(custom_id, business_key, result_class, f"the request was {result_type}"),
            None,
            None,
        )
    message = f"unrecognized result type {result_type!r}"
    failure = _failure(
        custom_id, business_key, ResultClass.ERRORED, message, error_kind=UNRECOGNIZED_RESULT.name
    )
    return ResultClass.ERRORED, failure, UNRECOGNIZED_RESULT.name, None


def sync_result_line(
    custom_id: str,
    message: Mapping[str, Any] | None = None,
    error_kind: str | None = None,
    error_message: str = "",
) -> str:
    """The batch result line of a synchronous call (its Message, or its error kind and message), so
    sync answers (sample, near-deadline rounds) are partitioned exactly like batch ones."""
    if message is not None:
        result: dict[str, Any] = {"type": "succeeded", "message": dict(message)}
    else:
        error = {"type": error_kind or API_ERROR.name, "message": error_message}
        result = {"type": "errored", "error": {"type": "error", "error": error, "request_id": None}}
    return json.dumps({"custom_id": custom_id, "result": result})


def read_result_lines(paths: Iterable[ReadablePath]) -> Iterator[Line]:
    """The lines of downloaded result files, each file after the other, capped at ``MAX_RESULT_LINE_BYTES``."""
    for path in paths:
        yield from read_lines(path, MAX_RESULT_LINE_BYTES)


def read_failures(out_dir: OutputDir) -> Iterator[FailureRecord]:
    """Every failure line that ``partition_results`` wrote into ``out_dir`` (unknown lines included)."""
    for result_class in FAILURE_CLASSES:
        yield from read_failure_file(out_dir / class_file_name(result_class.value))


def read_failure_file(path: ReadablePath) -> Iterator[FailureRecord]:
    """Stream one failure partition file."""
    for line in jsonl_lines([path]):
        yield FailureRecord.model_validate_json(line)
