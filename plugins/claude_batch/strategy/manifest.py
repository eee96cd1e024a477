"""The manifest: which custom_id stands for which business key, in which shard and round."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict

from claude_batch.strategy.lines import jsonl_lines
from claude_batch.strategy.paths import ReadablePath


class ManifestEntry(BaseModel):
    """One request sent (or to be sent) for one record.

    :param shard: index of the request file within its round.
    :param round: 0 for the first submission, then 1, 2, ... for recovery rounds.
    :param position: the input line or row (round 0 only; later rounds inherit it through the key).
    :param action: for recovery rounds, what was done to the request (retry, requeue, split, repair).
    :param chunk_of: for a chunk, the custom_id it is a part of: its record's (the record's own id,
        which no request carries when the record was chunked at shard time), or the request it was
        split from in recovery.
    :param chunk: the chunk's number, 1 to ``chunk_count``, in text order.
    :param chunk_depth: 1 for a chunk of a record, 2 for a chunk of a chunk, ...
    :param text_start: where the chunk's text begins in the record's chunked field (characters).
    :param text_end: where it ends.
    """

    model_config = ConfigDict(extra="forbid")

    custom_id: str
    business_key: str
    shard: int
    round: int = 0
    position: int | None = None
    action: str | None = None
    chunk_of: str | None = None
    chunk: int | None = None
    chunk_count: int | None = None
    chunk_depth: int | None = None
    text_start: int | None = None
    text_end: int | None = None


def read_manifest(path: ReadablePath, shard: int | None = None) -> Iterator[ManifestEntry]:
    """Stream a manifest file, optionally only the entries of one shard."""
    for line in jsonl_lines([path]):
        entry = ManifestEntry.model_validate_json(line)
        if shard is None or entry.shard == shard:
            yield entry
