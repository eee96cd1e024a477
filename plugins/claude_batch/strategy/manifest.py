"""The manifest: which custom_id stands for which business key, in which shard and round."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from pydantic import BaseModel, ConfigDict

from claude_batch.strategy._json import json_line
from claude_batch.strategy.layout import manifest_name, shard_manifest_name
from claude_batch.strategy.lines import jsonl_lines
from claude_batch.strategy.paths import OutputDir, ReadablePath


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


class ManifestWriter:
    """Writes a round's manifest, and each shard's entries once more in the shard's own manifest.

    The store loads the round's manifest. Each shard's partition (a task of its own) reads only its
    shard's file: were it to filter the round's, every partition would read every entry, and a
    night's partition time would grow with the square of its size (78 shards of 600,000 records:
    47 million entries read for 600,000 sent). Entries come in shard order, as ``ShardWriter`` fills
    the shards, so one shard file is open at a time.

    :param out_dir: the round's folder (``RunLayout.round_dir``).
    """

    def __init__(self, out_dir: OutputDir, round_number: int) -> None:
        self._out_dir = out_dir
        self._round = round_number
        self._round_file: IO[bytes] = (out_dir / manifest_name(round_number)).open("wb")
        self._shard: int | None = None
        self._shard_file: IO[bytes] | None = None

    def write(self, entry: dict[str, Any], *, in_shard_file: bool = True) -> None:
        """Write one entry; ``in_shard_file=False`` for an entry no partition reads (the sample's)."""
        line = json_line(entry)
        self._round_file.write(line)
        if not in_shard_file:
            return
        shard = entry["shard"]
        if shard != self._shard:
            if self._shard is not None and shard < self._shard:
                raise ValueError(f"manifest entries went back from shard {self._shard} to shard {shard}")
            self._close_shard_file()
            self._shard_file = (self._out_dir / shard_manifest_name(self._round, shard)).open("wb")
            self._shard = shard
        assert self._shard_file is not None
        self._shard_file.write(line)

    def _close_shard_file(self) -> None:
        if self._shard_file is not None:
            self._shard_file.close()
            self._shard_file = None

    def close(self) -> None:
        self._close_shard_file()
        self._round_file.close()

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
