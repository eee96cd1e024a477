"""custom_ids: deterministic, readable where the key allows, and checked for collisions.

``custom_id_for("loan", ["114829"], date(2026, 6, 7))`` is ``loan-2026-06-07-114829``: an analyst
reading a result line knows which loan file it is. A key that would not fit the API's
``^[a-zA-Z0-9_-]{1,64}$`` (other characters, too long, empty, or a compound key whose parts
contain ``-`` and would read ambiguously) is slugged and suffixed with a hash of the exact key,
so distinct keys still get distinct ids. The ``CustomIdRegistry`` then reports, per record, a
duplicate business key or two keys meeting on one id, rather than merging them.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from claude_batch.strategy._scratch import scratch_db

CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_CUSTOM_ID_LENGTH = 64
# 16 hex digits = 64 bits: the chance of two of 100,000 hashed keys meeting is about 3e-10.
HASH_LENGTH = 16

_PREFIX = re.compile(r"^[a-zA-Z0-9_]{1,24}$")
_PART_WITH_DASH = re.compile(r"^[a-zA-Z0-9_-]+$")
_PART_WITHOUT_DASH = re.compile(r"^[a-zA-Z0-9_]+$")
_NOT_ALLOWED = re.compile(r"[^a-zA-Z0-9_-]+")

KeyValue = str | int


def key_text(key_values: Sequence[KeyValue]) -> str:
    """A business key as text: the value itself, or a JSON array for a compound key (unambiguous)."""
    parts = [str(v) for v in key_values]
    return parts[0] if len(parts) == 1 else json.dumps(parts, ensure_ascii=False)


def custom_id_for(prefix: str, key_values: Sequence[KeyValue], logical_date: date) -> str:
    """The custom_id of a record: ``<prefix>-<YYYY-MM-DD>-<key>``, hashed when the key does not fit.

    Values are compared as text, so ``114829`` and ``"114829"`` are the same key (as in the manifest
    and the outputs table). All keys of one workload have the same number of parts (the spec's
    ``business_key``), which is what keeps readable ids of distinct keys distinct.
    """
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"custom_id prefix {prefix!r} must be 1 to 24 letters, digits or underscores")
    if not key_values:
        raise ValueError("a custom_id needs at least one key value")
    parts = [str(v) for v in key_values]
    head = f"{prefix}-{logical_date.isoformat()}"
    readable = f"{head}-{'-'.join(parts)}"
    unambiguous = (
        _PART_WITH_DASH.fullmatch(parts[0]) is not None
        if len(parts) == 1
        else all(_PART_WITHOUT_DASH.fullmatch(part) for part in parts)
    )
    if unambiguous and len(readable) <= MAX_CUSTOM_ID_LENGTH:
        return readable
    digest = hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()[:HASH_LENGTH]
    room = MAX_CUSTOM_ID_LENGTH - len(head) - len(digest) - 2
    slug = _NOT_ALLOWED.sub("_", "-".join(parts)).strip("_-")[:room].rstrip("_-")
    return f"{head}-{slug}-{digest}" if slug else f"{head}-{digest}"


class IdOutcome(StrEnum):
    NEW = "new"
    DUPLICATE_KEY = "duplicate_key"
    COLLISION = "collision"


@dataclass(frozen=True, slots=True)
class IdCheck:
    """What registering one record's custom_id found.

    :param first_position: for a duplicate or collision, where the id was first registered.
    :param first_key: the business key that holds the id.
    """

    outcome: IdOutcome
    custom_id: str
    first_position: int | None = None
    first_key: str | None = None


class CustomIdRegistry:
    """The custom_ids of one run so far, on disk (see ``_scratch``), so a huge input keeps memory flat.

    Use as a context manager; the index vanishes when it closes.
    """

    def __init__(self) -> None:
        self._db = scratch_db(
            "CREATE TABLE ids (custom_id TEXT PRIMARY KEY, business_key TEXT NOT NULL,"
            " position INTEGER) WITHOUT ROWID"
        )

    def register(self, custom_id: str, business_key: str, position: int | None) -> IdCheck:
        """Claim ``custom_id`` for ``business_key``; a second claim is a duplicate or a collision."""
        try:
            self._db.execute("INSERT INTO ids VALUES (?, ?, ?)", (custom_id, business_key, position))
        except sqlite3.IntegrityError:
            first_key, first_position = self._db.execute(
                "SELECT business_key, position FROM ids WHERE custom_id = ?", (custom_id,)
            ).fetchone()
            outcome = IdOutcome.DUPLICATE_KEY if first_key == business_key else IdOutcome.COLLISION
            return IdCheck(outcome, custom_id, first_position, first_key)
        return IdCheck(IdOutcome.NEW, custom_id)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> CustomIdRegistry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
