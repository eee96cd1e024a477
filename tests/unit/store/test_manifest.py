"""Shards and the manifest: idempotent writes, streaming reads, bulk at speed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from claude_batch.store import (
    ManifestRow,
    OutputRow,
    QuarantineRow,
    RunRecord,
    ShardRecord,
    Store,
    UnknownRunError,
)

BULK_ROWS = 20_000
# A bulk write or lookup of BULK_ROWS goes in pages of a thousand rows or so, not a statement per row:
# row by row is 20,000 round trips, seconds to minutes on PostgreSQL. How fast it is belongs to bench/.
BULK_STATEMENTS = BULK_ROWS // 200


def _entries(count: int, shard_size: int = 1_000) -> Iterator[ManifestRow]:
    for position in range(count):
        yield ManifestRow(
            custom_id=f"loan-2026-06-07-{position:06d}",
            business_key=f"LF-{position:06d}",
            shard=position // shard_size,
            position=position,
        )


def test_recording_shards_again_replaces_them(store: Store, run: RunRecord) -> None:
    first = [
        ShardRecord(shard_index=i, uri=f"file:///tmp/a/{i}.jsonl", request_count=10, byte_size=99)
        for i in (0, 1)
    ]
    store.record_shards(run.id, first)
    redone = ShardRecord(shard_index=1, uri="file:///tmp/b/1.jsonl", request_count=12, byte_size=120)

    store.record_shards(run.id, [redone])
    store.record_shards(run.id, [])

    assert store.shards(run.id) == [first[0], redone]


def test_shards_of_recovery_rounds_sit_beside_the_first_ones(store: Store, run: RunRecord) -> None:
    first = ShardRecord(shard_index=0, uri="file:///tmp/r0/0.jsonl", request_count=1000, byte_size=9_000)
    recovery = ShardRecord(
        shard_index=0, round=1, uri="file:///tmp/r1/0.jsonl", request_count=12, byte_size=99
    )

    store.record_shards(run.id, [recovery, first])

    assert store.shards(run.id) == [first, recovery]


def test_a_resubmitted_custom_id_stays_filed_where_it_first_appeared(store: Store, run: RunRecord) -> None:
    store.add_manifest(run.id, _entries(3))
    resubmitted = ManifestRow(custom_id="loan-2026-06-07-000001", business_key="LF-000001", shard=0, round=1)
    split = ManifestRow(custom_id="loan-2026-06-07-000001-part2", business_key="LF-000001", shard=0, round=1)

    store.add_manifest(run.id, [resubmitted, split])

    assert store.manifest_lookup(run.id, [resubmitted.custom_id])[resubmitted.custom_id].round == 0
    assert store.manifest_lookup(run.id, [split.custom_id])[split.custom_id].round == 1
    assert store.manifest_count(run.id) == 4


def test_adding_the_manifest_twice_keeps_one_entry_per_custom_id(store: Store, run: RunRecord) -> None:
    assert store.add_manifest(run.id, _entries(2_500)) == 2_500
    assert store.add_manifest(run.id, _entries(2_500)) == 2_500

    assert store.manifest_count(run.id) == 2_500


def test_manifest_lookup_returns_only_known_custom_ids(store: Store, run: RunRecord) -> None:
    store.add_manifest(run.id, _entries(3_000))
    wanted = [f"loan-2026-06-07-{position:06d}" for position in range(0, 3_000, 2)] + ["loan-unknown"]

    found = store.manifest_lookup(run.id, iter(wanted))

    assert len(found) == 1_500
    assert "loan-unknown" not in found
    assert found["loan-2026-06-07-002998"] == ManifestRow(
        custom_id="loan-2026-06-07-002998", business_key="LF-002998", shard=2, position=2998
    )


def test_manifest_of_a_run_is_invisible_to_another_run(store: Store, run: RunRecord) -> None:
    other = store.open_run("document_tagging", run.logical_date, "other")
    store.add_manifest(run.id, _entries(10))

    assert store.manifest_count(other.id) == 0
    assert store.manifest_lookup(other.id, ["loan-2026-06-07-000001"]) == {}


def test_manifest_of_an_unknown_run_is_refused(store: Store) -> None:
    with pytest.raises(UnknownRunError):
        store.add_manifest(404, _entries(1))


def test_bulk_manifest_of_twenty_thousand_entries_goes_in_pages_of_rows(
    store: Store, run: RunRecord, statement_log: list[int]
) -> None:
    store.add_manifest(run.id, _entries(BULK_ROWS))
    found = store.manifest_lookup(run.id, (f"loan-2026-06-07-{p:06d}" for p in range(BULK_ROWS)))

    assert store.manifest_count(run.id) == BULK_ROWS
    assert len(found) == BULK_ROWS
    assert max(statement_log) == 1, "a bulk statement went as executemany (a round trip per row)"
    assert len(statement_log) <= BULK_STATEMENTS, len(statement_log)


def _chunk(
    key: str, position: int, number: int, count: int, round: int = 0, of: str | None = None
) -> ManifestRow:
    record_id = f"loan-2026-06-07-{key}"
    parent = of or record_id
    return ManifestRow(
        custom_id=f"{parent}-c{number:02d}of{count:02d}",
        business_key=key,
        shard=0,
        round=round,
        position=position,
        chunk_of=parent,
        chunk=number,
        chunk_count=count,
        chunk_depth=1 if of is None else 2,
        text_start=number * 100,
        text_end=number * 100 + 100,
    )


def test_a_chunked_record_counts_once_and_its_chunks_stream_grouped_by_record(
    store: Store, run: RunRecord
) -> None:
    whole = ManifestRow(custom_id="loan-2026-06-07-B", business_key="B", shard=0, position=2)
    split_again = _chunk("A", 1, 1, 2, round=1, of="loan-2026-06-07-A-c02of02")
    store.add_manifest(
        run.id,
        [
            _chunk("A", 1, 1, 2),
            whole,
            _chunk("C", 3, 1, 3),
            _chunk("A", 1, 2, 2),
            split_again,
            _chunk("C", 3, 2, 3),
            _chunk("C", 3, 3, 3),
        ],
    )

    chunks = list(store.iter_chunks(run.id))
    assert [c.business_key for c in chunks] == ["A", "A", "A", "C", "C", "C"]
    assert chunks[2] == split_again
    accounting = store.accounting(run.id)
    assert (accounting.manifest, accounting.unaccounted) == (3, 3)
    # A chunk quarantined by recovery stands for its record: found by the position its entry carries.
    store.quarantine(
        run.id,
        [QuarantineRow(quarantine_class="attempts_exhausted", reason="r", custom_id=split_again.custom_id)],
    )
    store.upsert_outputs(
        "loan_review",
        run.logical_date,
        [
            OutputRow(
                business_key=key, custom_id=f"loan-2026-06-07-{key}", output={}, model="m", source="batch"
            )
            for key in ("B", "C")
        ],
    )
    accounting = store.accounting(run.id)
    assert (accounting.manifest, accounting.published, accounting.quarantined) == (3, 2, 1)
    assert accounting.balanced
