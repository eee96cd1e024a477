"""The one line reader of every JSONL the project reads: inputs, request files, results, manifests,
partitions, quarantine files.

A line is the bytes up to a ``\\n`` (0x0A) and nothing else: JSONL and the API split there only.
``str.splitlines()`` and HTTP libraries' ``iter_lines()`` also split on U+2028, U+2029, U+0085,
``\\x0b``, ``\\x0c`` and ``\\x1c``-``\\x1e``, all of which a JSON string may hold (a key, an answer),
so they are never used on JSONL here. A ``\\r`` before the ``\\n`` is dropped (CRLF files), and a
UTF-8 byte-order mark at the very start of the stream is dropped (the only place a BOM is handled).

The stream is read in chunks of ``CHUNK_BYTES``; a line is held whole only when it is at most
``max_line_bytes`` long (over ``SPILL_BYTES`` it is gathered on disk until its end is found). A longer
one is counted and skipped, never held: it comes back with ``data`` None, its size and its first
``HEAD_BYTES`` (enough to name it), so the caller can quarantine it or fail with the line number.
"""

from __future__ import annotations

import codecs
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from claude_batch.strategy.paths import ReadablePath

CHUNK_BYTES = 1 << 20
HEAD_BYTES = 512
SPILL_BYTES = 4 << 20
"""A line longer than this that runs over chunk boundaries is gathered in a temporary file, so a line
over the cap is never in memory and one under it is in memory once, when it is handed over."""

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


class _LineBuffer:
    """The bytes of a line that runs over chunk boundaries: in memory up to ``SPILL_BYTES``, then in
    a temporary file, and once past the cap only counted (with its first bytes kept to name it)."""

    def __init__(self, max_line_bytes: int) -> None:
        self._cap = max_line_bytes
        self._reset()

    def _reset(self) -> None:
        self._memory = bytearray()
        self._file: IO[bytes] | None = None
        self._head = b""
        self._last = 0
        self._over = False
        self.size = 0

    def add(self, piece: bytes) -> None:
        if not piece:
            return
        if len(self._head) < HEAD_BYTES:
            self._head += piece[: HEAD_BYTES - len(self._head)]
        self.size += len(piece)
        self._last = piece[-1]
        if self._over:
            return
        if self.size > self._cap + 1:  # +1: a \r that the \n may still follow is not counted
            self._over = True
            self._memory = bytearray()
            if self._file is not None:
                self._file.close()
                self._file = None
        elif self._file is None and self.size <= SPILL_BYTES:
            self._memory += piece
        else:
            if self._file is None:
                # Closed in take() or when the line goes over the cap; unlinked from the start.
                self._file = tempfile.TemporaryFile()  # noqa: SIM115
                self._file.write(self._memory)
                self._memory = bytearray()
            self._file.write(piece)

    def take(self, number: int, terminated: bool = True) -> Line:
        """The line held so far, and an empty buffer for the next one."""
        size = self.size - (1 if self.size and self._last == 0x0D else 0)
        if self._over or size > self._cap:
            line = Line(number, None, size, terminated, head=self._head)
        elif self._file is not None:
            self._file.seek(0)
            line = Line(number, self._file.read(size), size, terminated)
            self._file.close()
        else:
            del self._memory[size:]
            line = Line(number, bytes(self._memory), size, terminated)
        self._reset()
        return line


def split_lines(chunks: Iterable[bytes], max_line_bytes: int) -> Iterator[Line]:
    """The lines of a stream given as chunks of bytes (see the module docstring for the rules)."""
    buffer = _LineBuffer(max_line_bytes)
    number = 0
    for chunk in _without_bom(chunks):
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            number += 1
            if buffer.size:
                buffer.add(chunk[start:end])
                yield buffer.take(number)
            else:  # the whole line is in this chunk: no copy but the slice
                stop = end - 1 if end > start and chunk[end - 1] == 0x0D else end
                if stop - start > max_line_bytes:
                    yield Line(number, None, stop - start, head=chunk[start : start + HEAD_BYTES])
                else:
                    yield Line(number, chunk[start:stop], stop - start)
            start = end + 1
        buffer.add(chunk[start:])
    if buffer.size:
        yield buffer.take(number + 1, terminated=False)


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
