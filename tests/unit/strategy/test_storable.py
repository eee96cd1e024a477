"""What no store can hold, found in answers before they reach one."""

from __future__ import annotations

import json

import pytest

from claude_batch.strategy.storable import storable, unstorable_in


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ({"rationale": "All present."}, None),
        ({"rationale": "the text \\u0000 written out"}, None),  # six characters, not a NUL
        ({"rationale": "a NUL \u0000 in it"}, "a NUL character (U+0000)"),
        ({"a NUL \u0000 in a key": 1}, "a NUL character (U+0000)"),
        ({"rationale": "Zinssatz — 利率 \U0001f600 \u2028"}, None),
        (
            {"rationale": "Zinssatz — half \ud83d of a pair"},
            "a lone surrogate (U+D83D, half of a UTF-16 pair)",
        ),
        (["ascii", "lone \udc00"], "a lone surrogate (U+DC00, half of a UTF-16 pair)"),
    ],
)
def test_unstorable_text_is_found_whether_the_text_is_ascii_or_not(value: object, found: str | None) -> None:
    assert unstorable_in(value) == found
    encoded = json.JSONEncoder(ensure_ascii=False).encode({"output": value})
    assert unstorable_in(value, encoded=encoded) == found


def test_storable_text_writes_what_no_store_holds_as_escapes() -> None:
    assert storable("a \u0000 and \ud83d") == "a \\x00 and \\ud83d"
