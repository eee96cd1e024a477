"""The store takes the strategy's manifest and quarantine entries as they are, from objects or file lines."""

from __future__ import annotations

from claude_batch.store import ManifestRow, QuarantineRow
from claude_batch.strategy.manifest import ManifestEntry
from claude_batch.strategy.quarantine import QuarantineClass, QuarantineEntry


def test_a_strategy_manifest_entry_is_a_manifest_row() -> None:
    entry = ManifestEntry(
        custom_id="loan-2026-06-07-114829", business_key="114829", shard=3, round=0, position=41
    )

    assert ManifestRow.model_validate(entry) == ManifestRow.model_validate_json(entry.model_dump_json())
    assert ManifestRow.model_validate(entry).model_dump() == {
        "custom_id": "loan-2026-06-07-114829",
        "business_key": "114829",
        "shard": 3,
        "round": 0,
        "position": 41,
        **dict.fromkeys(("chunk_of", "chunk", "chunk_count", "chunk_depth", "text_start", "text_end")),
    }
    chunk = entry.model_copy(
        update={
            "custom_id": f"{entry.custom_id}-c02of05",
            "chunk_of": entry.custom_id,
            "chunk": 2,
            "chunk_count": 5,
        }
    )
    assert ManifestRow.model_validate(chunk).model_dump()["chunk_of"] == "loan-2026-06-07-114829"


def test_a_strategy_quarantine_entry_is_a_quarantine_row() -> None:
    entry = QuarantineEntry(
        quarantine_class=QuarantineClass.DUPLICATE_KEY,
        reason="the same business key was first seen at position 3",
        position=9,
        custom_id="loan-2026-06-07-114829",
        business_key="114829",
    )

    row = QuarantineRow.model_validate(entry)

    assert row == QuarantineRow.model_validate_json(entry.model_dump_json())
    assert (row.quarantine_class, row.position, row.attempts) == ("duplicate_key", 9, 0)
