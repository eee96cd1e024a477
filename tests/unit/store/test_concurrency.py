"""Concurrent runs of different dates write at the same time without colliding.

The runs meet at barriers between their stages, so their writes overlap by construction, however
the threads are scheduled on a loaded machine (no timing is measured).
"""

from __future__ import annotations

import threading
from datetime import date

from claude_batch.store import Accounting, ManifestRow, OutputRow, QuarantineRow, ShardRecord, Store

RECORDS = 3_000
SHARDS = 3
# Long enough for the slowest machine; a barrier that times out breaks, so a stuck run fails the test.
BARRIER_TIMEOUT_SECONDS = 120.0


def _nightly_run(url: str, logical_date: date, barrier: threading.Barrier) -> Accounting:
    """What one DAG run writes, stage by stage, through its own store (as each Airflow worker has).

    Both runs wait for each other before their first write, after the manifest and after the ledger,
    so each stage's writes of one run meet the other run's writes. Returns the run's accounting.
    """
    with Store.connect(url) as store:
        barrier.wait()
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
        barrier.wait()
        for shard in range(SHARDS):
            attempt = store.record_intent(
                run.id, shard, 0, "batch", RECORDS // SHARDS, f"sha256:{day}:{shard}"
            )
            store.attach_batch(attempt.id, f"msgbatch_{day}_{shard}")
            store.update_attempt(f"msgbatch_{day}_{shard}", "ended", {"succeeded": RECORDS // SHARDS})
        barrier.wait()
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
        return store.accounting(run.id)


def test_two_runs_of_different_dates_write_at_the_same_time_without_collision(
    store: Store, store_url: str
) -> None:
    dates = [date(2026, 6, 7), date(2026, 6, 8)]
    barrier = threading.Barrier(len(dates), timeout=BARRIER_TIMEOUT_SECONDS)
    results: dict[date, Accounting] = {}
    errors: list[BaseException] = []

    def work(logical_date: date) -> None:
        try:
            results[logical_date] = _nightly_run(store_url, logical_date, barrier)
        except BaseException as error:
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(logical_date,)) for logical_date in dates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    for logical_date in dates:
        accounting = results[logical_date]
        assert (accounting.manifest, accounting.published, accounting.quarantined) == (RECORDS, 2_970, 30)
        assert accounting.balanced
        assert store.outputs_count("loan_review", logical_date) == 2_970
    assert store.requests_in_flight() == 0
    assert len(store.recent_runs("loan_review")) == 2
