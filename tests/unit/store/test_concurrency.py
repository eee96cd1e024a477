"""Concurrent runs of different dates write at the same time without colliding."""

from __future__ import annotations

import threading
import time
from datetime import date

from claude_batch.store import Accounting, ManifestRow, OutputRow, QuarantineRow, ShardRecord, Store

RECORDS = 3_000
SHARDS = 3


def _nightly_run(url: str, logical_date: date, barrier: threading.Barrier) -> tuple[Accounting, float, float]:
    """What one DAG run writes, stage by stage, through its own store (as each Airflow worker has).

    Returns the run's accounting and when its writes started and ended.
    """
    with Store.connect(url) as store:
        barrier.wait()
        started = time.perf_counter()
        run = store.open_run("loan_review", logical_date, f"scheduled__{logical_date}")
        day = logical_date.isoformat()
        store.record_shards(
            run.id,
            [
                ShardRecord(shard_index=s, uri=f"file:///{day}/{s}.jsonl", request_count=1000, byte_size=1)
                for s in range(SHARDS)
            ],
        )
        store.add_manifest(
            run.id,
            (
                ManifestRow(custom_id=f"loan-{day}-{i}", business_key=f"LF-{i}", shard=i % SHARDS, position=i)
                for i in range(RECORDS)
            ),
        )
        for shard in range(SHARDS):
            attempt = store.record_intent(
                run.id, shard, 0, "batch", RECORDS // SHARDS, f"sha256:{day}:{shard}"
            )
            store.attach_batch(attempt.id, f"msgbatch_{day}_{shard}")
            store.update_attempt(f"msgbatch_{day}_{shard}", "ended", {"succeeded": RECORDS // SHARDS})
        failed = range(0, RECORDS, 100)
        store.quarantine(
            run.id,
            (
                QuarantineRow(
                    quarantine_class="attempts_exhausted",
                    reason="overloaded_error on every round",
                    custom_id=f"loan-{day}-{i}",
                    business_key=f"LF-{i}",
                    attempts=3,
                )
                for i in failed
            ),
        )
        store.upsert_outputs(
            "loan_review",
            logical_date,
            (
                OutputRow(
                    business_key=f"LF-{i}",
                    custom_id=f"loan-{day}-{i}",
                    output={"i": i},
                    model="m",
                    source="batch",
                )
                for i in range(RECORDS)
                if i % 100
            ),
        )
        store.finish_run(run.id, "succeeded", {"date": day})
        return store.accounting(run.id), started, time.perf_counter()


def test_two_runs_of_different_dates_write_at_the_same_time_without_collision(
    store: Store, store_url: str
) -> None:
    dates = [date(2026, 6, 7), date(2026, 6, 8)]
    barrier = threading.Barrier(len(dates))
    results: dict[date, Accounting] = {}
    spans: list[tuple[float, float]] = []
    errors: list[BaseException] = []

    def work(logical_date: date) -> None:
        try:
            results[logical_date], started, ended = _nightly_run(store_url, logical_date, barrier)
            spans.append((started, ended))
        except BaseException as error:
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(logical_date,)) for logical_date in dates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    # The runs' writes really overlapped: each run started writing before the other had finished.
    assert max(start for start, _ in spans) < min(end for _, end in spans)
    for logical_date in dates:
        accounting = results[logical_date]
        assert (accounting.manifest, accounting.published, accounting.quarantined) == (RECORDS, 2_970, 30)
        assert accounting.balanced
        assert store.outputs_count("loan_review", logical_date) == 2_970
    assert store.requests_in_flight() == 0
    assert len(store.recent_runs("loan_review")) == 2
