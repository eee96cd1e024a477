"""Text the store cannot hold, found before it gets there.

PostgreSQL refuses U+0000 in ``text`` and in ``jsonb`` strings (SQLite takes it), and a lone
surrogate (half of a UTF-16 pair, which a JSON ``\\ud83d`` escape can produce) is no character at
all and cannot be encoded to UTF-8 for either store. A record whose key holds one is quarantined
in sharding, an answer that holds one is an invalid output, and quarantine rows show them escaped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# In JSON text (not ASCII-escaped) a NUL is written ``\u0000`` and a lone surrogate as itself, so a
# value whose encoding matches neither holds neither; a match may be a literal backslash-u text.
_UNSTORABLE_ENCODED = re.compile(r"\\u0000|[\ud800-\udfff]")
_ENCODER = json.JSONEncoder(ensure_ascii=False, check_circular=False)


def unstorable(text: str) -> str | None:
    """What in ``text`` no store can hold, in words, or None when it is fine."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "a NUL character (U+0000)"
    return f"a lone surrogate (U+{ord(found.group()):04X}, half of a UTF-16 pair)"


def storable(text: str) -> str:
    """``text`` with what no store can hold written as escapes (``\\x00``, ``\\ud83d``)."""
    return _UNSTORABLE.sub(lambda found: ascii(found.group())[1:-1], text)


def unstorable_in(value: Any, encoded: str | None = None) -> str | None:
    """``unstorable`` over every string (keys too) of a JSON-like value.

    :param encoded: the value's JSON text, not ASCII-escaped (or that of a value holding it), when
        the caller has it already: it is searched instead of encoding the value again.
    """
    # One C-level encode and search instead of a Python walk of every string: partition checks
    # every answer, and the walk was a fifth of its time. A match (or a value JSON cannot encode)
    # is looked at string by string, which also says what was found.
    try:
        if not _may_hold_unstorable(_ENCODER.encode(value) if encoded is None else encoded):
            return None
    except (TypeError, ValueError):
        pass
    return _unstorable_walk(value)


def _may_hold_unstorable(encoded: str) -> bool:
    """Whether JSON text (not ASCII-escaped) may encode a NUL or a lone surrogate."""
    # ASCII text holds no surrogate, so a substring test is all it needs: the regex's alternation
    # took 10 us on a 650-byte succeeded line (a sixth of partition's time), isascii and ``in`` 0.3.
    if encoded.isascii():
        return "\\u0000" in encoded
    return _UNSTORABLE_ENCODED.search(encoded) is not None


def _unstorable_walk(value: Any) -> str | None:
    if isinstance(value, str):
        return unstorable(value)
    if isinstance(value, dict):
        items: Iterable[Any] = (part for pair in value.items() for part in pair)
    elif isinstance(value, list | tuple):
        items = value
    else:
        return None
    for item in items:
        if found := _unstorable_walk(item):
            return found
    return None
