"""One machine: SQLite metadata DB, LocalExecutor, each Airflow component its own process.

The run is triggered through the REST API and its waits are watched in the triggerer, exactly as in
``make airflow``; in the second test the triggerer crashes while the batch is in flight.
"""

from __future__ import annotations

import time

import pytest

from claude_batch.store import Store
from tests.system.conftest import LOAN_RECORDS
from tests.system.pipeline import (
    WAIT_TASK,
    WORKLOAD,
    assert_store_complete,
    batches_in_progress,
    deferred_waits,
    start_loan_review,
)

pytestmark = [pytest.mark.system, pytest.mark.timeout(420)]

RUN_TIMEOUT = 300


def _standalone(deployment_factory, emulator):
    deployment = deployment_factory(emulator.base_url)
    deployment.initialize()
    deployment.start("api-server", "api-server")
    deployment.start("scheduler", "scheduler")
    deployment.start("dag-processor", "dag-processor")
    deployment.start("triggerer", "triggerer")
    deployment.wait_until_serving()
    store = Store.connect(f"sqlite:///{deployment.home / 'claude_batch_store.db'}")
    return deployment, store


def test_waits_defer_to_the_triggerer_and_the_run_publishes_every_record(
    deployment_factory, emulator, loans
) -> None:
    deployment, store = _standalone(deployment_factory, emulator)
    start_loan_review(deployment, loans, "system-standalone")

    waits = deferred_waits(deployment, "system-standalone")
    # Deferred while the batch is still processing: the worker slot is free, the triggerer polls.
    assert batches_in_progress(emulator, store)
    assert {ti["trigger"]["classpath"] for ti in waits} == {"claude_batch.triggers.batch.BatchEndedTrigger"}

    assert deployment.wait_for_run(WORKLOAD, "system-standalone", RUN_TIMEOUT) == "success"
    assert_store_complete(store, emulator, LOAN_RECORDS)


def test_a_triggerer_killed_mid_wait_hands_over_without_a_duplicate_batch(
    deployment_factory, emulator, loans
) -> None:
    deployment, store = _standalone(deployment_factory, emulator)
    start_loan_review(deployment, loans, "system-triggerer-crash")

    waits = deferred_waits(deployment, "system-triggerer-crash")
    first_triggerer = frozenset(ti["triggerer_job"]["id"] for ti in waits)
    deployment.kill("triggerer")
    assert batches_in_progress(emulator, store), "the batch ended before the triggerer was killed"
    time.sleep(2)
    deployment.start("triggerer", "triggerer")

    # The new triggerer takes the triggers over once the dead one's heartbeat is stale.
    deferred_waits(deployment, "system-triggerer-crash", timeout=60, not_held_by=first_triggerer)

    assert deployment.wait_for_run(WORKLOAD, "system-triggerer-crash", RUN_TIMEOUT) == "success"
    assert_store_complete(store, emulator, LOAN_RECORDS)
    # The deferral survived the crash: the waits never failed and were never retried.
    waits = [
        ti
        for ti in deployment.task_instances(WORKLOAD, "system-triggerer-crash")
        if ti["task_id"] == WAIT_TASK
    ]
    assert {(ti["state"], ti["try_number"]) for ti in waits} == {("success", 1)}
