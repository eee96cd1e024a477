"""Stream input records from a JSONL or CSV file, or from a SQL query, one result per record.

What a record is (README, "Input records"): in JSONL, every line that is not blank (lines split on
``\n`` only, see ``lines``); in CSV, every row after the header (a row may span lines inside quoted
cells) that has a cell that is not blank; in SQL, every row. A record that cannot be read still
comes back, as a ``RecordRead`` with a ``problem`` and the line it was on, so sharding quarantines
it with a reason and carries on, and every stage counts records the same way (``count_records``).
Only one record is in memory at a time, and none longer than ``input.max_record_bytes``.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from claude_batch.strategy.lines import Line, read_lines, split_lines, stream_chunks
from claude_batch.strategy.paths import ReadablePath
from claude_batch.strategy.spec import InputFormat, InputSpec

_SQL_FETCH_ROWS = 1_000
# A \uD800-\uDFFF escape: JSON allows it, but alone it is no Unicode character and cannot be sent.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
DEFAULT_MAX_RECORD_BYTES = 64_000_000


class RecordProblem(StrEnum):
    NOT_UTF8 = "not_utf8"
    BAD_JSON = "bad_json"
    TRUNCATED = "truncated"
    NOT_AN_OBJECT = "not_an_object"
    BAD_CSV_ROW = "bad_csv_row"
    TOO_LARGE = "too_large"


@dataclass(frozen=True, slots=True)
class RecordRead:
    """One record as read: the parsed fields, or the problem that kept it from being parsed.

    A dataclass rather than a pydantic model: there is one per input record and nothing to validate
    yet (validation against the workload's input model happens in sharding).

    :param position: 1-based line (JSONL), line the row starts on (CSV), or row number (SQL).
    :param unit: ``line`` or ``row``, to say where a record was in words.
    :param fix: what to do about the problem, when "fix or remove the line" is not enough.
    """

    position: int
    unit: str
    record: dict[str, Any] | None = None
    problem: RecordProblem | None = None
    detail: str = ""
    fix: str = ""

    @property
    def where(self) -> str:
        return f"{self.unit} {self.position}"


def _too_large(position: int, size: int, max_record_bytes: int, what: str = "the line") -> RecordRead:
    return RecordRead(
        position,
        "line",
        problem=RecordProblem.TOO_LARGE,
        detail=f"{what} is {size:,} bytes, over input.max_record_bytes ({max_record_bytes:,}); it was "
        "skipped unread",
        fix="split the record, or raise input.max_record_bytes in the spec",
    )


def _not_json(constant: str) -> None:
    """Python's json reads NaN and Infinity; JSON has no such values (a key would become "nan")."""
    raise ValueError(f"{constant} is not a JSON value")


def jsonl_record_lines(source: ReadablePath, max_record_bytes: int) -> Iterator[Line]:
    """The lines of a JSONL input that are records: every line that is not blank, oversized ones too."""
    return (line for line in read_lines(source, max_record_bytes) if not line.blank)


def parse_jsonl_line(line: Line, max_record_bytes: int) -> RecordRead:
    """The record of one JSONL line, or why it is not one."""
    position = line.number
    if line.data is None:
        return _too_large(position, line.size, max_record_bytes)
    try:
        text = line.data.decode("utf-8")
    except UnicodeDecodeError as error:
        return RecordRead(
            position, "line", problem=RecordProblem.NOT_UTF8, detail=f"byte {error.start} is not UTF-8"
        )
    try:
        value = json.loads(text, parse_constant=_not_json)
        if _SURROGATE_ESCAPE.search(text):
            json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return RecordRead(
            position,
            "line",
            problem=RecordProblem.NOT_UTF8,
            detail="a \\u escape is a lone surrogate (half of a UTF-16 pair), not a character",
        )
    # RecursionError: nesting deeper than the parser's stack; a bad line, not a reason to stop.
    except (ValueError, RecursionError) as error:
        if not line.terminated:
            return RecordRead(
                position,
                "line",
                problem=RecordProblem.TRUNCATED,
                detail="the file ends in the middle of a record (no final newline, incomplete JSON)",
            )
        return RecordRead(position, "line", problem=RecordProblem.BAD_JSON, detail=str(error))
    if isinstance(value, dict):
        return RecordRead(position, "line", record=value)
    return RecordRead(
        position,
        "line",
        problem=RecordProblem.NOT_AN_OBJECT,
        detail=f"a JSON {type(value).__name__}, not an object",
    )


def read_jsonl(
    source: ReadablePath, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> Iterator[RecordRead]:
    """One ``RecordRead`` per non-blank line; a last line without newline that fails to parse is truncated."""
    for line in jsonl_record_lines(source, max_record_bytes):
        yield parse_jsonl_line(line, max_record_bytes)


class _LineTooLong(Exception):
    def __init__(self, line: Line) -> None:
        self.line = line


class _RowTooLarge(Exception):
    pass


class _CsvLines:
    """Decoded lines for the csv module, remembering the lines of the row being read.

    A malformed row that spans lines (a quote that never closes swallows the rows after it) is
    quarantined at its first line and its other lines are read again as rows of their own
    (``replay_after_first``), so no row after it is lost. A line that is not UTF-8 is decoded with
    replacements and flagged, so the one row it belongs to is reported instead of the whole file.
    """

    def __init__(self, lines: Iterator[Line], max_record_bytes: int) -> None:
        self._lines = lines
        self._max = max_record_bytes
        self._replay: list[Line] = []  # a stack: the next line is the last one
        self.row: list[Line] = []
        self._row_bytes = 0
        self.bad_byte: int | None = None

    def __iter__(self) -> _CsvLines:
        return self

    def start_row(self) -> None:
        self.row = []
        self._row_bytes = 0
        self.bad_byte = None

    def replay_after_first(self) -> None:
        self._replay.extend(reversed(self.row[1:]))

    def __next__(self) -> str:
        line = self._replay.pop() if self._replay else next(self._lines)
        self.row.append(line)
        if line.data is None:
            raise _LineTooLong(line)
        self._row_bytes += line.size + 1
        if self._row_bytes > self._max:
            raise _RowTooLarge
        try:
            return line.data.decode("utf-8") + "\n"
        except UnicodeDecodeError as error:
            if self.bad_byte is None:
                self.bad_byte = error.start
            return line.data.decode("utf-8", errors="replace") + "\n"


_CSV_FIX = "fix or remove the row (every quote closed, one cell per header column)"


def read_csv(source: ReadablePath, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[RecordRead]:
    """One ``RecordRead`` per data row, keyed by the header (the first line that is not blank); cells are strings.

    A malformed row (an unterminated quote, a stray quote, a wrong number of cells, over the record
    cap) is reported at the line it starts on, and reading goes on at the line after that one.
    """
    # A cell may be as long as a record; the csv module's default is 131,072 characters.
    csv.field_size_limit(max(csv.field_size_limit(), max_record_bytes))
    with source.open("rb") as stream:
        lines = _CsvLines(split_lines(stream_chunks(stream), max_record_bytes), max_record_bytes)
        # strict: a malformed row (stray quote, file ending inside a quoted cell) is reported
        # instead of being read as something it is not.
        reader = csv.reader(lines, strict=True)
        header: list[str] | None = None
        while True:
            lines.start_row()
            try:
                row = next(reader)
            except StopIteration:
                return
            except _LineTooLong as over:
                start = lines.row[0].number
                if len(lines.row) == 1:
                    yield _too_large(start, over.line.size, max_record_bytes)
                    continue
                lines.replay_after_first()
                yield RecordRead(
                    start,
                    "line",
                    problem=RecordProblem.BAD_CSV_ROW,
                    detail=f"the row runs on into line {over.line.number}, which is {over.line.size:,} bytes, "
                    f"over input.max_record_bytes ({max_record_bytes:,}): a quote opened in it may never close",
                    fix=_CSV_FIX,
                )
                continue
            except _RowTooLarge:
                start = lines.row[0].number
                lines.replay_after_first()
                yield RecordRead(
                    start,
                    "line",
                    problem=RecordProblem.BAD_CSV_ROW,
                    detail=f"the row is over input.max_record_bytes ({max_record_bytes:,}) by line "
                    f"{lines.row[-1].number}: a quote opened in it may never close",
                    fix=_CSV_FIX,
                )
                continue
            except csv.Error as error:
                start = lines.row[0].number if lines.row else reader.line_num
                ended = lines.row[-1].number if lines.row else start
                lines.replay_after_first()
                detail = str(error)
                if detail == "line contains NUL":
                    detail = "the row holds a NUL byte (U+0000), which no cell can hold"
                elif ended > start:
                    detail = (
                        f"{detail} (the row runs from line {start} to line {ended}: a quote may never close)"
                    )
                yield RecordRead(
                    start, "line", problem=RecordProblem.BAD_CSV_ROW, detail=detail, fix=_CSV_FIX
                )
                continue
            start = lines.row[0].number
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = row
                continue
            if lines.bad_byte is not None:
                yield RecordRead(
                    start,
                    "line",
                    problem=RecordProblem.NOT_UTF8,
                    detail=f"byte {lines.bad_byte} of a line is not UTF-8",
                )
                continue
            if len(row) != len(header):
                lines.replay_after_first()
                yield RecordRead(
                    start,
                    "line",
                    problem=RecordProblem.BAD_CSV_ROW,
                    detail=f"{len(row)} cells where the header has {len(header)}",
                    fix=_CSV_FIX,
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
    cap = int(source_spec.max_record_bytes)
    return read_jsonl(path, cap) if source_spec.format is InputFormat.JSONL else read_csv(path, cap)


def count_records(source_spec: InputSpec, path: ReadablePath) -> int:
    """How many ``RecordRead`` the input's reader yields: the one count route, the cost guard, shard
    and publish use. JSONL lines are counted without being parsed; CSV rows have to be parsed."""
    cap = int(source_spec.max_record_bytes)
    if source_spec.format is InputFormat.JSONL:
        return sum(1 for _ in jsonl_record_lines(path, cap))
    return sum(1 for _ in read_records(source_spec, path))
