"""The one line reader of every JSONL the project reads: inputs, request files, results, manifests,
partitions, quarantine files.

A line is the bytes up to a ``\\n`` (0x0A) and nothing else: JSONL and the API split there only.
``str.splitlines()`` and HTTP libraries' ``iter_lines()`` also split on U+2028, U+2029, U+0085,
``\\x0b``, ``\\x0c`` and ``\\x1c``-``\\x1e``, all of which a JSON string may hold (a key, an answer),
so they are never used on JSONL here. A ``\\r`` before the ``\\n`` is dropped (CRLF files), and a
UTF-8 byte-order mark at the very start of the stream is dropped (the only place a BOM is handled).

The stream is read in chunks of ``CHUNK_BYTES``; a line is held whole only while it is at most
``max_line_bytes`` long. A longer one is counted and skipped, never held: it comes back with
``data`` None, its size and its first ``HEAD_BYTES`` (enough to name it), so the caller can
quarantine it or fail with the line number.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from claude_batch.strategy.paths import ReadablePath

CHUNK_BYTES = 1 << 20
HEAD_BYTES = 512

MAX_FILE_LINE_BYTES = 512_000_000
"""Cap of the files the pipeline writes itself (request files, manifests, partitions): above the
256 MB a whole batch may hold, so only a corrupt file ever reaches it."""


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a stream.

    :param number: 1-based line number (every ``\\n`` counts, blank lines too).
    :param data: the line without its ``\\n`` (and ``\\r``); None when it was over the cap.
    :param size: the line's length in bytes, without its ``\\n`` and ``\\r``.
    :param terminated: False for a last line the stream ended in without a ``\\n``.
    :param head: the first bytes of a line over the cap (empty otherwise).
    """

    number: int
    data: bytes | None
    size: int
    terminated: bool = True
    head: bytes = b""

    @property
    def oversized(self) -> bool:
        return self.data is None

    @property
    def blank(self) -> bool:
        """Only ASCII whitespace (or nothing); checked without copying the line."""
        return self.data is not None and (not self.data or self.data.isspace())


class LineTooLongError(ValueError):
    """A line of a file the pipeline wrote is over the cap: the file is corrupt, not the input."""


def split_lines(chunks: Iterable[bytes], max_line_bytes: int) -> Iterator[Line]:
    """The lines of a stream given as chunks of bytes (see the module docstring for the rules)."""
    pending = bytearray()
    skipped = 0  # bytes of the line being skipped, while one is over the cap
    skipping = False
    head = b""
    number = 0
    for chunk in _without_bom(chunks):
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            number += 1
            if skipping:
                size = skipped + end - start
                if size and (chunk[end - 1 : end] if end > start else b"") == b"\r":
                    size -= 1
                yield Line(number, None, size, head=head)
                skipping = False
            elif pending:
                pending += chunk[start:end]
                if pending.endswith(b"\r"):
                    del pending[-1]
                if len(pending) > max_line_bytes:
                    yield Line(number, None, len(pending), head=bytes(pending[:HEAD_BYTES]))
                else:
                    yield Line(number, bytes(pending), len(pending))
                pending = bytearray()
            else:
                stop = end - 1 if end > start and chunk[end - 1] == 0x0D else end
                if stop - start > max_line_bytes:
                    yield Line(number, None, stop - start, head=chunk[start : start + HEAD_BYTES])
                else:
                    yield Line(number, chunk[start:stop], stop - start)
            start = end + 1
        rest = len(chunk) - start
        if not rest:
            continue
        if skipping:
            skipped += rest
        elif len(pending) + rest > max_line_bytes + 1:  # +1: a \r that a \n may still follow
            head = (bytes(pending[:HEAD_BYTES]) + chunk[start : start + HEAD_BYTES])[:HEAD_BYTES]
            skipped = len(pending) + rest
            skipping = True
            pending = bytearray()
        else:
            pending += chunk[start:]
    if skipping:
        yield Line(number + 1, None, skipped, terminated=False, head=head)
    elif pending:
        if pending.endswith(b"\r"):
            del pending[-1]
        if len(pending) > max_line_bytes:
            yield Line(number + 1, None, len(pending), terminated=False, head=bytes(pending[:HEAD_BYTES]))
        else:
            yield Line(number + 1, bytes(pending), len(pending), terminated=False)


def _without_bom(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The chunks with a UTF-8 byte-order mark at the start of the stream removed (chunks may be tiny)."""
    chunks = iter(chunks)
    opening = b""
    for chunk in chunks:
        opening += chunk
        if len(opening) >= len(codecs.BOM_UTF8):
            break
    if opening := opening.removeprefix(codecs.BOM_UTF8):
        yield opening
    yield from chunks


def stream_chunks(stream: IO[Any], chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """An open binary stream as chunks of at most ``chunk_bytes``."""
    while chunk := stream.read(chunk_bytes):
        yield chunk


def read_lines(path: ReadablePath, max_line_bytes: int) -> Iterator[Line]:
    """Every line of the file at ``path`` (blank ones too), streamed."""
    with path.open("rb") as stream:
        yield from split_lines(stream_chunks(stream), max_line_bytes)


def jsonl_lines(paths: Iterable[ReadablePath], max_line_bytes: int = MAX_FILE_LINE_BYTES) -> Iterator[bytes]:
    """The non-blank lines of files the pipeline wrote, one file after the other.

    Raises ``LineTooLongError`` for a line over the cap: in a file of our own that is corruption.
    """
    for path in paths:
        for line in read_lines(path, max_line_bytes):
            if line.data is None:
                raise LineTooLongError(
                    f"{path}: line {line.number} is {line.size:,} bytes, over {max_line_bytes:,}; "
                    "the file is damaged: delete it and clear the task that wrote it"
                )
            if not line.blank:
                yield line.data
