from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from upath import UPath

from claude_batch.strategy.records import (
    RecordProblem,
    count_records,
    read_csv,
    read_jsonl,
    read_records,
    read_sql,
)
from claude_batch.strategy.spec import InputSpec


def _file(tmp_path: Path, content: bytes, name: str = "input.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_jsonl_records_come_with_their_line_numbers(tmp_path: Path) -> None:
    reads = list(read_jsonl(_file(tmp_path, b'{"a": 1}\n\n{"a": 2}\n')))
    assert [(r.position, r.record) for r in reads] == [(1, {"a": 1}), (3, {"a": 2})]
    assert reads[1].where == "line 3"


def test_jsonl_bad_lines_are_reported_and_reading_goes_on(tmp_path: Path) -> None:
    content = b'{"a": 1}\n{"a": \n\xff\xfe{"a": 2}\n[1, 2]\n{"a": 3}\n{"a": 4'
    reads = list(read_jsonl(_file(tmp_path, content)))
    assert [(r.position, r.problem) for r in reads] == [
        (1, None),
        (2, RecordProblem.BAD_JSON),
        (3, RecordProblem.NOT_UTF8),
        (4, RecordProblem.NOT_AN_OBJECT),
        (5, None),
        (6, RecordProblem.TRUNCATED),
    ]
    assert reads[2].detail == "byte 0 is not UTF-8"
    assert "no final newline" in reads[5].detail


def test_jsonl_last_line_without_newline_is_fine_when_complete(tmp_path: Path) -> None:
    assert [r.record for r in read_jsonl(_file(tmp_path, b'{"a": 1}\n{"a": 2}'))] == [{"a": 1}, {"a": 2}]


def test_jsonl_byte_order_mark_and_crlf_are_tolerated(tmp_path: Path) -> None:
    reads = list(read_jsonl(_file(tmp_path, b'\xef\xbb\xbf{"a": 1}\r\n{"a": 2}\r\n')))
    assert [r.record for r in reads] == [{"a": 1}, {"a": 2}]


def test_jsonl_reads_through_a_universal_path(tmp_path: Path) -> None:
    path = _file(tmp_path, b'{"a": 1}\n')
    assert [r.record for r in read_jsonl(UPath(f"file://{path}"))] == [{"a": 1}]


def test_csv_rows_are_keyed_by_the_header_with_the_line_they_start_on(tmp_path: Path) -> None:
    content = b'doc_id,title,body\nkb-1,"Hello","two\nlines"\nkb-2,Bye,text\n'
    reads = list(read_csv(_file(tmp_path, content, "input.csv")))
    assert [(r.position, r.record) for r in reads] == [
        (2, {"doc_id": "kb-1", "title": "Hello", "body": "two\nlines"}),
        (4, {"doc_id": "kb-2", "title": "Bye", "body": "text"}),
    ]


def test_csv_bad_rows_are_reported_and_reading_goes_on(tmp_path: Path) -> None:
    content = b'doc_id,body\nkb-1,fine\nkb-2\nkb-3,caf\xe9\n\nkb-4,"a"b\nkb-5,also fine\nkb-6,"cut off\n'
    reads = list(read_csv(_file(tmp_path, content, "input.csv")))
    assert [(r.position, r.problem) for r in reads] == [
        (2, None),
        (3, RecordProblem.BAD_CSV_ROW),
        (4, RecordProblem.NOT_UTF8),
        (6, RecordProblem.BAD_CSV_ROW),
        (7, None),
        (8, RecordProblem.BAD_CSV_ROW),
    ]
    assert reads[1].detail == "1 cells where the header has 2"
    assert reads[5].detail == "unexpected end of data"


def test_sql_rows_stream_as_records() -> None:
    engine = sa.create_engine("sqlite://")
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE loans (loan_file_id TEXT, text TEXT)"))
        connection.execute(sa.text("INSERT INTO loans VALUES ('1', 'a'), ('2', 'b')"))
    reads = list(read_sql(engine, "SELECT loan_file_id, text FROM loans ORDER BY loan_file_id"))
    assert [(r.where, r.record) for r in reads] == [
        ("row 1", {"loan_file_id": "1", "text": "a"}),
        ("row 2", {"loan_file_id": "2", "text": "b"}),
    ]


def test_read_records_picks_the_reader_of_the_input_format(tmp_path: Path) -> None:
    path = _file(tmp_path, b"a\n1\n", "input.csv")
    assert [r.record for r in read_records(InputSpec(format="csv", uri=str(path)), path)] == [{"a": "1"}]
    with pytest.raises(ValueError, match="needs an engine"):
        read_records(InputSpec(format="sql", query="SELECT 1", sqlalchemy_url="sqlite://"))


def test_csv_rows_after_an_unterminated_quote_are_read_again_one_by_one(tmp_path: Path) -> None:
    content = b'doc_id,body\nkb-1,fine\nkb-2,"never closed\nkb-3,also fine\nkb-4,"two\nlines"\n'
    reads = list(read_csv(_file(tmp_path, content, "input.csv")))
    assert [(r.position, r.problem, (r.record or {}).get("doc_id")) for r in reads] == [
        (2, None, "kb-1"),
        (3, RecordProblem.BAD_CSV_ROW, None),
        (4, None, "kb-3"),
        (5, None, "kb-4"),
    ]
    assert "a quote may never close" in reads[1].detail
    assert reads[3].record == {"doc_id": "kb-4", "body": "two\nlines"}


def test_csv_cells_may_be_as_long_as_a_record(tmp_path: Path) -> None:
    cell = "w" * 500_000
    reads = list(read_csv(_file(tmp_path, f"a,b\n1,{cell}\n2,x\n".encode(), "input.csv")))
    assert [r.record for r in reads] == [{"a": "1", "b": cell}, {"a": "2", "b": "x"}]


def test_a_record_over_the_cap_is_reported_with_its_size_and_not_read(tmp_path: Path) -> None:
    big = b'{"a": "' + b"x" * 3_000 + b'"}'
    jsonl = list(read_jsonl(_file(tmp_path, b'{"a": 1}\n' + big + b'\n{"a": 2}\n'), 2_000))
    assert [(r.position, r.problem) for r in jsonl] == [(1, None), (2, RecordProblem.TOO_LARGE), (3, None)]
    assert "3,009 bytes, over input.max_record_bytes (2,000)" in jsonl[1].detail
    rows = list(read_csv(_file(tmp_path, b"a\n1\n" + b"x" * 3_000 + b"\n2\n", "input.csv"), 2_000))
    assert [(r.position, r.problem) for r in rows] == [(2, None), (3, RecordProblem.TOO_LARGE), (4, None)]


def test_the_count_is_the_number_of_records_the_reader_yields(tmp_path: Path) -> None:
    csv_path = _file(tmp_path, b'\xef\xbb\xbf\na,b\n1,"two\nlines"\n\n2,x\n3\n', "input.csv")
    jsonl_path = _file(tmp_path, b'\xef\xbb\xbf\n{"a": 1}\n\n  \nnot json\n{"a": 2}')
    for spec, path in (
        (InputSpec(format="csv", uri="x"), csv_path),
        (InputSpec(format="jsonl", uri="x"), jsonl_path),
    ):
        assert count_records(spec, path) == len(list(read_records(spec, path))) == 3
