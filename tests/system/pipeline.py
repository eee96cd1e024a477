"""The nightly loan review as the system tests drive it: trigger through the REST API, check the store."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import anthropic

from claude_batch.store import Store
from claude_emulator.testing import EmulatorHandle
from tests.system.deployment import AirflowDeployment, wait_for

WORKLOAD = "loan_disclosure_review"
RUN_DATE = date(2026, 6, 7)
LOGICAL_DATE = "2026-06-07T05:00:00Z"
WAIT_TASK = "shards.wait"


def start_loan_review(deployment: AirflowDeployment, loans: Path | str, run_id: str) -> None:
    """Wait for the DAG to be parsed without import errors, unpause it and trigger one run."""
    deployment.wait_for_dag(WORKLOAD)
    deadline = datetime.now(UTC) + timedelta(days=1)
    deployment.trigger(
        WORKLOAD, run_id, LOGICAL_DATE, {"input_uri": str(loans), "deadline": deadline.isoformat()}
    )


def deferred_waits(
    deployment: AirflowDeployment,
    run_id: str,
    timeout: float = 240,
    not_held_by: frozenset[int] = frozenset(),
) -> list[dict]:
    """Wait until every ``shards.wait`` task instance is deferred and held by a triggerer job whose
    id is not in ``not_held_by``."""

    def deferred() -> list[dict] | None:
        if deployment.dag_run(WORKLOAD, run_id)["state"] == "failed":
            raise AssertionError("the run failed before its waits were deferred")
        waits = [ti for ti in deployment.task_instances(WORKLOAD, run_id) if ti["task_id"] == WAIT_TASK]
        ready = waits and all(
            ti["state"] == "deferred" and ti["triggerer_job"] and ti["triggerer_job"]["id"] not in not_held_by
            for ti in waits
        )
        return waits if ready else None

    return wait_for("the shards.wait task instances to be deferred", deferred, timeout)


def batches_in_progress(emulator: EmulatorHandle, store: Store) -> list[str]:
    """The run's batches the emulator still processes, read through the SDK as the trigger reads them."""
    run = run_of_the_day(store)
    client = anthropic.Anthropic(base_url=emulator.base_url, api_key="sk-ant-system-test")
    batch_ids = [attempt.batch_id for attempt in store.attempts_of_run(run.id) if attempt.batch_id]
    return [
        batch_id
        for batch_id in batch_ids
        if client.messages.batches.retrieve(batch_id).processing_status == "in_progress"
    ]


def run_of_the_day(store: Store):
    return next(run for run in store.recent_runs(WORKLOAD) if run.logical_date == RUN_DATE)


def assert_store_complete(store: Store, emulator: EmulatorHandle, records: int) -> None:
    """Each input record ended exactly once, all published (the emulator injects no fault), and the
    emulator created exactly the batches the run's ledger knows: no batch was paid for twice."""
    run = run_of_the_day(store)
    accounting = store.accounting(run.id)
    assert accounting.inputs == records
    assert accounting.balanced, accounting
    quarantined = accounting.quarantined + accounting.rejected
    assert store.outputs_count(WORKLOAD, RUN_DATE) == records - quarantined == records
    created = store.batches_created(run.id)
    assert created >= 1
    assert emulator.stats()["batches_created"] == created
