from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_batch.strategy import lines as lines_module
from claude_batch.strategy.lines import HEAD_BYTES, LineTooLongError, jsonl_lines, read_lines, split_lines

SEPARATORS = ["\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"]


def expected_lines(data: bytes, cap: int) -> list[tuple[int, bytes | None, int, bool]]:
    """The rule, written the obvious way: split on \\n, drop one \\r, a leading BOM gone."""
    parts = data.removeprefix(codecs.BOM_UTF8).split(b"\n")
    terminated = [True] * (len(parts) - 1) + [False]
    if parts[-1] == b"":
        parts, terminated = parts[:-1], terminated[:-1]
    lines = []
    for number, (part, ended) in enumerate(zip(parts, terminated, strict=True), start=1):
        part = part.removesuffix(b"\r")
        lines.append((number, part if len(part) <= cap else None, len(part), ended))
    return lines


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    chunks, start = [], 0
    for size in sizes:
        chunks.append(data[start : start + size])
        start += size
    return [*chunks, data[start:]]


@given(
    st.binary(max_size=300).map(lambda b: b.replace(b"\x00", b"\n").replace(b"\x01", b"\r"))
    | st.just(codecs.BOM_UTF8 + b"a\r\nb\n"),
    st.lists(st.integers(1, 40), max_size=30),
    st.integers(0, 60),
    st.integers(0, 30),
)
def test_lines_are_split_on_newline_only_whatever_the_chunks(
    data: bytes, sizes: list[int], cap: int, spill: int
) -> None:
    # A small spill threshold sends long lines through the temporary file, as lines over 4 MB go.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lines_module, "SPILL_BYTES", spill)
        got = [
            (line.number, line.data, line.size, line.terminated)
            for line in split_lines(chunked(data, sizes), cap)
        ]
    assert got == expected_lines(data, cap)


def test_unicode_line_separators_are_not_line_ends() -> None:
    text = "".join(f"a{separator}b" for separator in SEPARATORS)
    (line,) = split_lines([text.encode() + b"\n"], 1000)
    assert line.data == text.encode()


def test_a_line_over_the_cap_is_skipped_with_its_size_and_first_bytes(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    path.write_bytes(b'{"ok": 1}\n' + b'{"custom_id":"x",' + b"9" * 5_000_000 + b"}\n" + b'{"ok": 2}')
    lines = list(read_lines(path, 1_000_000))
    assert [(line.number, line.size, line.terminated) for line in lines] == [
        (1, 9, True),
        (2, 5_000_018, True),
        (3, 9, False),
    ]
    assert (
        lines[1].oversized
        and lines[1].head.startswith(b'{"custom_id":"x",')
        and len(lines[1].head) == HEAD_BYTES
    )


def test_a_file_of_our_own_with_a_line_over_the_cap_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(b"{}\n\n" + b"x" * 100 + b"\n")
    try:
        list(jsonl_lines([path], 50))
    except LineTooLongError as error:
        assert "line 3 is 100 bytes" in str(error)
    else:
        raise AssertionError("a line over the cap went through")
