"""Many machines' worth of Airflow on this one: PostgreSQL metadata DB, CeleryExecutor on Redis, two
Celery workers, the store on PostgreSQL. One worker is SIGKILLed while it runs the submit task."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import psutil
import pytest
import sqlalchemy as sa

from claude_batch.store import Store
from claude_emulator.testing import running_emulator
from tests.conftest import skip_outside_ci
from tests.system.conftest import BATCH_PROCESSING_SECONDS, LOAN_RECORDS
from tests.system.deployment import AirflowDeployment, free_port, wait_for
from tests.system.pipeline import WORKLOAD, assert_store_complete, start_loan_review

pytestmark = [pytest.mark.system, pytest.mark.postgres, pytest.mark.timeout(480)]

REDIS_URL_VARIABLE = "CLAUDE_BATCH_TEST_REDIS_URL"
RUN_ID = "system-celery-worker-crash"
SUBMIT_TASK = "shards.submit"
WORKERS = ("worker-a", "worker-b")
# Each batch create answers only after this many seconds: the submit task is running long enough to
# kill its worker mid-call, after the request reached the API (the orphan case submit must adopt).
SLOW_CREATE_SECONDS = 8.0


@pytest.fixture
def store_url(postgres_url: str) -> Iterator[str]:
    """A second fresh database beside the metadata DB: the store, as the compose stack keeps it."""
    url = sa.make_url(postgres_url)
    name = f"{url.database}_store"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def celery_broker() -> Iterator[tuple[str, str]]:
    """The Redis URL and a key prefix of this test alone, so concurrent suites never share a queue."""
    import redis

    url = os.environ.get(REDIS_URL_VARIABLE)
    if not url:
        skip_outside_ci(f"{REDIS_URL_VARIABLE} is not set; the Celery system test runs in CI")
    prefix = f"claude-batch-system-{uuid.uuid4().hex[:8]}:"
    yield url, prefix
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


def _worker_running(deployment: AirflowDeployment, pid: int) -> str | None:
    """The Celery worker whose process tree holds ``pid`` (a task's process)."""
    for name in WORKERS:
        tree = psutil.Process(deployment.components[name].pid).children(recursive=True)
        if pid in {process.pid for process in tree}:
            return name
    return None


def test_a_celery_worker_killed_mid_submit_leaves_each_record_published_once(
    deployment_factory, postgres_url, store_url, celery_broker, loans, tmp_path
) -> None:
    broker_url, key_prefix = celery_broker
    metadata_url = postgres_url
    faults = {"endpoints": {"create_batch": {"slow": 1.0, "slow_seconds": SLOW_CREATE_SECONDS}}}
    with running_emulator(
        state=tmp_path / "emulator.db", processing_seconds=BATCH_PROCESSING_SECONDS, faults=faults
    ) as emulator:
        deployment = deployment_factory(
            emulator.base_url,
            metadata_url=metadata_url,
            executor="CeleryExecutor",
            extra_env={
                "AIRFLOW_CONN_CLAUDE_BATCH_STORE": f'{{"conn_type": "generic", "extra": {{"url": "{store_url}"}}}}',
                "AIRFLOW__CELERY__BROKER_URL": broker_url,
                "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": key_prefix,
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata_url}",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
                # A task whose worker died stops heartbeating; fail it (and retry it) within seconds.
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            },
        )
        deployment.initialize()
        deployment.start("api-server", "api-server")
        deployment.start("scheduler", "scheduler")
        deployment.start("dag-processor", "dag-processor")
        deployment.start("triggerer", "triggerer")
        for name in WORKERS:
            # Two workers on one host: each needs its own Celery node name and log server port.
            deployment.start(
                name,
                "celery", "worker", "--celery-hostname", f"{name}@%h",
                env={"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())},
            )  # fmt: skip
        deployment.wait_until_serving()
        started = time.monotonic()
        start_loan_review(deployment, loans, RUN_ID)

        def submit_running() -> tuple[str, dict] | None:
            for ti in deployment.task_instances(WORKLOAD, RUN_ID):
                if ti["task_id"] == SUBMIT_TASK and ti["state"] == "running" and ti["pid"]:
                    worker = _worker_running(deployment, ti["pid"])
                    return (worker, ti) if worker else None
            return None

        victim, submit = wait_for("a worker to run the submit task", submit_running, timeout=240)
        deployment.kill(victim)
        print(
            f"killed {victim} running {SUBMIT_TASK} (pid {submit['pid']}) at {time.monotonic() - started:.0f} s"
        )

        assert deployment.wait_for_run(WORKLOAD, RUN_ID, timeout=360) == "success"
        store = Store.connect(store_url)
        assert_store_complete(store, emulator, LOAN_RECORDS)
        # The killed try was failed by the heartbeat check and retried on the surviving worker.
        retried = [ti for ti in deployment.task_instances(WORKLOAD, RUN_ID) if ti["task_id"] == SUBMIT_TASK]
        assert [(ti["state"], ti["try_number"]) for ti in retried] == [("success", 2)]
        store.close()
