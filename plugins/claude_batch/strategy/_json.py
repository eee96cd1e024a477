"""One JSON encoding for every file the strategy writes.

Compact, UTF-8 and NaN-free, exactly like the anthropic SDK serializes a request body, so the bytes
counted for a shard line are the bytes the API will count.
"""

from __future__ import annotations

import json
from typing import Any

JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def json_line(value: Any) -> bytes:
    """``value`` as one JSONL line (UTF-8, ending in a bare newline)."""
    return (JSON_ENCODER.encode(value) + "\n").encode()
