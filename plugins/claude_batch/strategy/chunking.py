"""Chunking: a document too large for one request becomes several chunk requests, answered and merged.

Splitting follows the document's own structure first: it is cut into sections at heading lines, a
section too large for one chunk into paragraphs, a paragraph into lines, a line between words, and
only a single word longer than a chunk is cut inside. Consecutive pieces are then packed into chunks
up to the target size. A section that fits in a chunk is never cut. Sizes are UTF-8 bytes of the text,
which is what a request is limited by.

Each chunk is a span of the text: its *core* spans cover the whole text in order, end to end, and a
chunk may also repeat the end of the previous chunk before its core (the overlap), so a passage cut
at a boundary is read whole at least once. Everything here is pure and deterministic: the same text
and limits always give the same chunks, so a cleared task, and recovery, find the same spans again.

The custom_id of a chunk is its record's with ``-cIIofNN`` added (``loan-2026-06-07-114829-c02of05``);
a chunk split again in recovery adds one more (``...-c02of05-c1of2``). An id that would pass the API's
64 characters is shortened and keeps a hash of the full one, so distinct chunks keep distinct ids.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from claude_batch.strategy.custom_ids import HASH_LENGTH, MAX_CUSTOM_ID_LENGTH

DEFAULT_HEADINGS = r"^[ \t]*(?:#{1,6}[ \t]+\S.*|[A-Z][A-Z0-9 ,.'&/()-]{2,}:?)[ \t]*$"
"""A heading line: a Markdown heading, or a line in capitals (``PAYMENT SCHEDULE``, ``TERMS:``)."""

MIN_CHUNK_BYTES = 4
"""A chunk's own text holds at least one character of any size (UTF-8 takes up to 4 bytes)."""

_PARAGRAPH = re.compile(r"\n[ \t]*\n")
_LINE = re.compile(r"\n")

MergeRule = Callable[[Sequence[BaseModel]], BaseModel]
"""Combines the answers of a record's chunks (in text order) into the one output of the record."""


@dataclass(frozen=True, slots=True)
class TextChunk:
    """One chunk of a text: ``text[begin:end]`` is sent; ``start..end`` is its own part (the core).

    :param begin: where the chunk's text begins: ``start``, or earlier by the overlap.
    """

    begin: int
    start: int
    end: int

    def of(self, text: str) -> str:
        return text[self.begin : self.end]


def _size(text: str, start: int, end: int) -> int:
    return len(text[start:end].encode())


def _boundaries(text: str, start: int, end: int, pattern: re.Pattern[str], at_match_start: bool) -> list[int]:
    """Cut points inside ``start..end``: before each match (headings) or after it (separators)."""
    cuts = []
    for match in pattern.finditer(text, start, end):
        cut = match.start() if at_match_start else match.end()
        if start < cut < end:
            cuts.append(cut)
    return cuts


def _filled_pieces(text: str, start: int, end: int, fill: int) -> list[tuple[int, int, int]]:
    """``start..end`` (no paragraph or line break fits) cut into spans of at most ``fill`` bytes, each
    ending after the last whitespace that lets it fit, or at a character when a word alone is longer."""
    pieces = []
    while start < end:
        stop = min(end, start + fill)
        while (size := _size(text, start, stop)) > fill:
            # Multi-byte characters: back off by the excess (at least one character).
            stop -= max(1, (size - fill) // 4)
        if stop < end:
            space = max(text.rfind(" ", start, stop), text.rfind("\t", start, stop))
            if space >= start:
                stop = space + 1
                size = _size(text, start, stop)
        pieces.append((start, stop, size))
        start = stop
    return pieces


def _pieces(
    text: str, start: int, end: int, limit: int, fill: int, levels: Sequence[tuple[re.Pattern[str], bool]]
) -> list[tuple[int, int, int]]:
    """``start..end`` as consecutive (start, end, bytes) spans of at most ``limit`` bytes, cut at the
    coarsest level that makes a span fit: a span that fits is kept whole. Below the last level, text
    is filled into spans of ``fill`` bytes between words."""
    size = _size(text, start, end)
    if size <= limit:
        return [(start, end, size)]
    if not levels:
        return _filled_pieces(text, start, end, fill)
    (pattern, at_match_start), finer = levels[0], levels[1:]
    cuts = [start, *_boundaries(text, start, end, pattern, at_match_start), end]
    spans: list[tuple[int, int, int]] = []
    for left, right in itertools.pairwise(cuts):
        spans += _pieces(text, left, right, limit, fill, finer)
    return spans


def split_text(
    text: str,
    max_bytes: int,
    target_bytes: int | None = None,
    overlap_bytes: int = 0,
    headings: str | None = DEFAULT_HEADINGS,
) -> list[TextChunk]:
    """The chunks of ``text``: each at most ``max_bytes`` (overlap included), cores near ``target_bytes``.

    :param headings: a regular expression matching a heading line (multiline); sections start at one.
        None: no sections, paragraphs are the coarsest unit.
    :param overlap_bytes: how much of the previous chunk's end each chunk repeats first.
    """
    if not 0 <= overlap_bytes <= max_bytes - MIN_CHUNK_BYTES:
        raise ValueError(
            f"a chunk of {max_bytes} bytes with an overlap of {overlap_bytes} leaves under "
            f"{MIN_CHUNK_BYTES} bytes of its own text"
        )
    if not text:
        return [TextChunk(0, 0, 0)]
    core_limit = max_bytes - overlap_bytes
    # At least one character of any size, so that filling a chunk always moves on.
    target = min(max(target_bytes or core_limit, MIN_CHUNK_BYTES), core_limit)
    levels: list[tuple[re.Pattern[str], bool]] = []
    if headings:
        levels.append((re.compile(headings, re.MULTILINE), True))
    levels += [(_PARAGRAPH, False), (_LINE, False)]

    # Pieces are consecutive, so a run of them is as large as the sum of their sizes.
    cores: list[tuple[int, int]] = []
    pieces = _pieces(text, 0, len(text), core_limit, target, levels)
    start, end, size = pieces[0]
    for piece_start, piece_end, piece_size in pieces[1:]:
        if size + piece_size <= target:
            end, size = piece_end, size + piece_size
            continue
        cores.append((start, end))
        start, end, size = piece_start, piece_end, piece_size
    cores.append((start, end))
    cores = _without_blank_chunks(text, cores, core_limit)
    return [TextChunk(_overlap_begin(text, start, overlap_bytes), start, end) for start, end in cores]


def _without_blank_chunks(text: str, cores: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """``cores`` with each one that holds only whitespace joined to a neighbour it fits in: a request
    for blank text is paid for and says nothing (only two full neighbours keep one apart)."""
    kept: list[tuple[int, int]] = []
    for index, (start, end) in enumerate(cores):
        if text[start:end].strip() or len(cores) == 1:
            kept.append((start, end))
        elif kept and _size(text, kept[-1][0], end) <= limit:
            kept[-1] = (kept[-1][0], end)
        elif index + 1 < len(cores) and _size(text, start, cores[index + 1][1]) <= limit:
            cores[index + 1] = (start, cores[index + 1][1])
        else:
            kept.append((start, end))
    return kept


def _overlap_begin(text: str, start: int, overlap_bytes: int) -> int:
    """Where a chunk whose core begins at ``start`` begins, repeating at most ``overlap_bytes`` before it."""
    if not overlap_bytes or not start:
        return start
    begin = max(0, start - overlap_bytes)
    while _size(text, begin, start) > overlap_bytes:
        begin += 1
    return begin


def chunk_suffix(chunk: int, count: int) -> str:
    """``-c02of05``: the chunk's number and count, zero-padded to the count's width (at least two)."""
    width = max(2, len(str(count)))
    return f"-c{chunk:0{width}d}of{count:0{width}d}"


def chunk_custom_id(parent_id: str, chunk: int, count: int) -> str:
    """The custom_id of chunk ``chunk`` of ``count`` of the request or record ``parent_id``."""
    if not 1 <= chunk <= count:
        raise ValueError(f"chunk {chunk} of {count} does not exist")
    suffix = chunk_suffix(chunk, count)
    if len(parent_id) + len(suffix) <= MAX_CUSTOM_ID_LENGTH:
        return parent_id + suffix
    digest = hashlib.sha256(parent_id.encode()).hexdigest()[:HASH_LENGTH]
    keep = MAX_CUSTOM_ID_LENGTH - len(suffix) - len(digest) - 1
    return f"{parent_id[:keep].rstrip('_-')}-{digest}{suffix}"


@dataclass(frozen=True, slots=True)
class ChunkNode:
    """A chunk request in a record's tree: its parent (the record's id, or a chunk split again)."""

    custom_id: str
    parent: str
    chunk: int


@dataclass(frozen=True, slots=True)
class ChunkedRecord:
    """A record sent as chunks: its own id (``root``), input position and chunk requests."""

    business_key: str
    root: str
    position: int | None
    nodes: tuple[ChunkNode, ...]


class ChunkEntry(Protocol):
    """The manifest fields of a chunk request (``ManifestEntry`` in the strategy and the store)."""

    custom_id: str
    business_key: str
    position: int | None
    chunk_of: str | None
    chunk: int | None


def chunked_records(entries: Iterable[ChunkEntry]) -> Iterator[ChunkedRecord]:
    """The chunked records of a run from its chunk entries, given grouped by business key (the store
    streams them so); the record's id is the one its chunks are parts of and that is no chunk itself."""
    for business_key, group in itertools.groupby(entries, key=lambda entry: entry.business_key):
        chunks = [entry for entry in group if entry.chunk_of is not None and entry.chunk is not None]
        ids = {entry.custom_id for entry in chunks}
        roots = sorted({entry.chunk_of for entry in chunks if entry.chunk_of not in ids})
        if len(roots) != 1:
            raise ValueError(
                f"the chunks of {business_key} are parts of {roots or 'nothing'}, not of one record"
            )
        yield ChunkedRecord(
            business_key=business_key,
            root=roots[0],
            position=next((entry.position for entry in chunks if entry.position is not None), None),
            nodes=tuple(ChunkNode(e.custom_id, e.chunk_of, e.chunk) for e in chunks),  # type: ignore[arg-type]
        )


def covering_answers(
    root: str, nodes: Iterable[ChunkNode], answered: Mapping[str, Any]
) -> tuple[list[str], str | None]:
    """The answered requests that together cover the record ``root``, in text order, and else the first
    request that has no answer and was not split (the chunk that failed).

    A request covers its span when it has an answer, or when it was split and each of its chunks covers
    its own part. Returns ``(ids, None)`` when the record is covered, ``([], failed_id)`` when not.
    """
    children: dict[str, list[ChunkNode]] = {}
    for node in nodes:
        children.setdefault(node.parent, []).append(node)

    def cover(custom_id: str) -> tuple[list[str], str | None]:
        if custom_id in answered:
            return [custom_id], None
        kids = sorted(children.get(custom_id, []), key=lambda node: node.chunk)
        if not kids:
            return [], custom_id
        ids: list[str] = []
        for kid in kids:
            found, failed = cover(kid.custom_id)
            if failed is not None:
                return [], failed
            ids += found
        return ids, None

    return cover(root)


def merge_answers(
    rule: MergeRule, output_model: type[BaseModel], answers: Sequence[Mapping[str, Any]]
) -> BaseModel:
    """The record's output: the chunk answers validated, merged by ``rule``, and validated again."""
    parts = [output_model.model_validate(answer) for answer in answers]
    merged = rule(parts)
    return output_model.model_validate(merged.model_dump(mode="json"))
