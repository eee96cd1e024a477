"""Stream input records from a JSONL or CSV file, or from a SQL query, one result per record.

A bad record never stops the stream: it comes back as a ``RecordRead`` with a ``problem`` and the
line it was on, so sharding can quarantine it with a reason and carry on. Only one record (one line,
or one CSV row) is in memory at a time.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from claude_batch.strategy.paths import ReadablePath
from claude_batch.strategy.spec import InputFormat, InputSpec

_SQL_FETCH_ROWS = 1_000
# A \uD800-\uDFFF escape: JSON allows it, but alone it is no Unicode character and cannot be sent.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class RecordProblem(StrEnum):
    NOT_UTF8 = "not_utf8"
    BAD_JSON = "bad_json"
    TRUNCATED = "truncated"
    NOT_AN_OBJECT = "not_an_object"
    BAD_CSV_ROW = "bad_csv_row"


@dataclass(frozen=True, slots=True)
class RecordRead:
    """One record as read: the parsed fields, or the problem that kept it from being parsed.

    A dataclass rather than a pydantic model: there is one per input record and nothing to validate
    yet (validation against the workload's input model happens in sharding).

    :param position: 1-based line (JSONL), line the row starts on (CSV), or row number (SQL).
    :param unit: ``line`` or ``row``, to say where a record was in words.
    """

    position: int
    unit: str
    record: dict[str, Any] | None = None
    problem: RecordProblem | None = None
    detail: str = ""

    @property
    def where(self) -> str:
        return f"{self.unit} {self.position}"


def _not_json(constant: str) -> None:
    """Python's json reads NaN and Infinity; JSON has no such values (a key would become "nan")."""
    raise ValueError(f"{constant} is not a JSON value")


def read_jsonl(source: ReadablePath) -> Iterator[RecordRead]:
    """One ``RecordRead`` per non-blank line; a last line without newline that fails to parse is truncated."""
    with source.open("rb") as lines:
        for position, raw in enumerate(lines, start=1):
            if position == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield RecordRead(
                    position,
                    "line",
                    problem=RecordProblem.NOT_UTF8,
                    detail=f"byte {error.start} is not UTF-8",
                )
                continue
            try:
                value = json.loads(text, parse_constant=_not_json)
                if _SURROGATE_ESCAPE.search(text):
                    json.dumps(value, ensure_ascii=False).encode()
            except UnicodeEncodeError:
                yield RecordRead(
                    position,
                    "line",
                    problem=RecordProblem.NOT_UTF8,
                    detail="a \\u escape is a lone surrogate (half of a UTF-16 pair), not a character",
                )
                continue
            # RecursionError: nesting deeper than the parser's stack; a bad line, not a reason to stop.
            except (ValueError, RecursionError) as error:
                if not raw.endswith(b"\n"):
                    yield RecordRead(
                        position,
                        "line",
                        problem=RecordProblem.TRUNCATED,
                        detail="the file ends in the middle of a record (no final newline, incomplete JSON)",
                    )
                else:
                    yield RecordRead(position, "line", problem=RecordProblem.BAD_JSON, detail=str(error))
                continue
            if isinstance(value, dict):
                yield RecordRead(position, "line", record=value)
            else:
                yield RecordRead(
                    position,
                    "line",
                    problem=RecordProblem.NOT_AN_OBJECT,
                    detail=f"a JSON {type(value).__name__}, not an object",
                )


class _Utf8Lines:
    """Decoded lines for the csv module; a line that is not UTF-8 is decoded with replacements and
    flagged, so the one row it belongs to is reported instead of the whole file failing."""

    def __init__(self, raw_lines: Iterator[bytes]) -> None:
        self._raw = raw_lines
        self.first = True
        self.bad_byte: int | None = None

    def __iter__(self) -> _Utf8Lines:
        return self

    def __next__(self) -> str:
        raw = next(self._raw)
        if self.first:
            raw = raw.removeprefix(codecs.BOM_UTF8)
            self.first = False
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            self.bad_byte = error.start
            return raw.decode("utf-8", errors="replace")


def read_csv(source: ReadablePath) -> Iterator[RecordRead]:
    """One ``RecordRead`` per data row, keyed by the header row; cells are strings."""
    with source.open("rb") as raw:
        lines = _Utf8Lines(iter(raw))
        # strict: a malformed row (stray quote, file ending inside a quoted cell) is reported
        # instead of being read as something it is not; the reader resumes at the next line.
        reader = csv.reader(lines, strict=True)
        header: list[str] | None = None
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                yield RecordRead(start, "line", problem=RecordProblem.BAD_CSV_ROW, detail=str(error))
                continue
            if lines.bad_byte is not None:
                detail = f"byte {lines.bad_byte} of a line is not UTF-8"
                lines.bad_byte = None
                if header is not None:
                    yield RecordRead(start, "line", problem=RecordProblem.NOT_UTF8, detail=detail)
                    continue
            if header is None:
                header = row
                continue
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                yield RecordRead(
                    start,
                    "line",
                    problem=RecordProblem.BAD_CSV_ROW,
                    detail=f"{len(row)} cells where the header has {len(header)}",
                )
                continue
            yield RecordRead(start, "line", record=dict(zip(header, row, strict=True)))


def read_sql(engine: sa.Engine, query: str) -> Iterator[RecordRead]:
    """One ``RecordRead`` per row of ``query``, through a server-side cursor where the driver has one."""
    with engine.connect() as connection:
        rows = connection.execution_options(stream_results=True, yield_per=_SQL_FETCH_ROWS).execute(
            sa.text(query)
        )
        for position, row in enumerate(rows, start=1):
            yield RecordRead(position, "row", record=dict(row._mapping))


def read_records(
    source_spec: InputSpec, path: ReadablePath | None = None, engine: sa.Engine | None = None
) -> Iterator[RecordRead]:
    """The records of a workload's input: ``path`` for jsonl/csv, ``engine`` for sql."""
    if source_spec.format is InputFormat.SQL:
        if engine is None or source_spec.query is None:
            raise ValueError("a sql input needs an engine and input.query")
        return read_sql(engine, source_spec.query)
    if path is None:
        raise ValueError(f"a {source_spec.format.value} input needs a path")
    return read_jsonl(path) if source_spec.format is InputFormat.JSONL else read_csv(path)
