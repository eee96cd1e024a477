"""The Celery deployment as a cluster of hosts that share nothing but the network.

Each Celery worker and the triggerer run on a host of their own (``tests/system/hosts.py``: a network
namespace with its own address, a private ``/tmp`` holding its Airflow home, its own hostname). The
scheduler, dag-processor and api-server stay on the "control" host (the root namespace) and, with
PostgreSQL (metadata DB and store), Redis, the Claude emulator and an S3 server, are reached over the
cluster network: no host can read another's files. The input and the run's data folder are on the
S3 server (``CLAUDE_BATCH_DATA_URI=s3://aws_default@bucket/prefix`` through ``ObjectStoragePath`` and
the Amazon provider).

The night: worker-a runs the pipeline alone until its partition task dies mid-partition (the crash
point after the results are classified into partition files, before the shard's summary), and the
host is lost with it. worker-b, a fresh host, joins, takes the retry over and finishes the night from
what is on the object store and in the store; every record ends exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from claude_batch.faultpoints import CRASH_AT_VARIABLE
from claude_batch.store import Store
from claude_emulator.testing import running_emulator
from tests.conftest import skip_outside_ci
from tests.system.conftest import BATCH_PROCESSING_SECONDS, LOAN_RECORDS
from tests.system.deployment import AirflowDeployment, wait_for
from tests.system.hosts import HostNetwork, namespaces_supported
from tests.system.object_store import running_s3_server
from tests.system.pipeline import RUN_DATE, WORKLOAD, assert_store_complete, start_loan_review
from tests.system.test_celery import celery_broker, store_url  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.system, pytest.mark.postgres, pytest.mark.timeout(480)]

RUN_ID = "system-hosts-worker-lost-mid-partition"
PARTITION_TASK = "shards.partition"
BUCKET = "claude-batch-night"
DATA_CONNECTION = "aws_default"
RUN_FOLDER = f"runs/{WORKLOAD}/{RUN_DATE.isoformat()}/"
SHARD_PARTITION = f"{RUN_FOLDER}partitions/round-00/shard-00000/"
# A host's Airflow home is on its private /tmp: nothing another host wrote is there.
HOST_ENV = {"AIRFLOW_HOME": "/tmp/airflow", "AIRFLOW__CORE__HOSTNAME_CALLABLE": "socket.gethostname"}


@pytest.fixture
def host_network() -> Iterator[HostNetwork]:
    """The cluster network; every namespace, veth and process on it is removed afterwards."""
    if reason := namespaces_supported():
        skip_outside_ci(reason)
    with HostNetwork() as network:
        yield network


def _over(network: HostNetwork, url: str, port: int) -> str:
    """``url`` with its host and port replaced by the cluster network's forward."""
    return sa.make_url(url).set(host=network.address, port=port).render_as_string(hide_password=False)


def _partition_try(deployment: AirflowDeployment) -> dict | None:
    return next(
        (ti for ti in deployment.task_instances(WORKLOAD, RUN_ID) if ti["task_id"] == PARTITION_TASK), None
    )


def test_a_worker_host_lost_mid_partition_leaves_each_record_published_once(
    host_network,
    deployment_factory,
    postgres_url,
    store_url,  # noqa: F811 (the fixture imported above)
    celery_broker,  # noqa: F811
    loans,
    tmp_path,
) -> None:
    network = host_network
    postgres = sa.make_url(postgres_url)
    postgres_port = network.forward(postgres.port or 5432, postgres.host or "127.0.0.1")
    metadata_url = _over(network, postgres_url, postgres_port)
    broker_url, key_prefix = celery_broker
    redis = urlsplit(broker_url)
    redis_port = network.forward(redis.port or 6379, redis.hostname or "127.0.0.1")
    broker_over_network = redis._replace(netloc=f"{network.address}:{redis_port}").geturl()

    with (
        running_s3_server(network.address, BUCKET, tmp_path / "s3.log") as s3,
        running_emulator(
            state=tmp_path / "emulator.db", processing_seconds=BATCH_PROCESSING_SECONDS, host=network.address
        ) as emulator,
    ):
        s3.client().upload_file(str(loans), BUCKET, "inputs/loans.jsonl")
        deployment = deployment_factory(
            emulator.base_url,
            metadata_url=metadata_url,
            executor="CeleryExecutor",
            address=network.address,
            extra_env={
                "AIRFLOW_CONN_CLAUDE_BATCH_STORE": (
                    f'{{"conn_type": "generic", "extra": {{"url": "{_over(network, store_url, postgres_port)}"}}}}'
                ),
                f"AIRFLOW_CONN_{DATA_CONNECTION.upper()}": s3.connection(),
                "CLAUDE_BATCH_DATA_URI": f"s3://{DATA_CONNECTION}@{BUCKET}/runs",
                "AIRFLOW__CELERY__BROKER_URL": broker_over_network,
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
        deployment.start("triggerer", "triggerer", env=HOST_ENV, on=network.add_host("triggerer").command())
        worker_a = network.add_host("worker-a")
        deployment.start(
            "worker-a",
            "celery", "worker", "--celery-hostname", "worker-a@%h",
            env={**HOST_ENV, CRASH_AT_VARIABLE: "partition.after_classify"},
            on=worker_a.command(),
        )  # fmt: skip
        deployment.wait_until_serving()
        start_loan_review(deployment, f"s3://{DATA_CONNECTION}@{BUCKET}/inputs/loans.jsonl", RUN_ID)

        def partition_died() -> dict | None:
            ti = _partition_try(deployment)
            return ti if ti and ti["state"] == "up_for_retry" else None

        first_try = wait_for("worker-a's partition task to die mid-partition", partition_died, timeout=300)
        # The host is lost with its task: every process on it ends at once, its /tmp with them.
        deployment.kill("worker-a")
        worker_a.power_off()
        assert first_try["hostname"] == "worker-a"
        # Mid-partition: the classified results are on the object store, the shard's summary is not.
        left = s3.keys(SHARD_PARTITION)
        assert left and f"{SHARD_PARTITION}summary.json" not in left, left

        deployment.start(
            "worker-b",
            "celery", "worker", "--celery-hostname", "worker-b@%h",
            env=HOST_ENV,
            on=network.add_host("worker-b").command(),
        )  # fmt: skip
        assert deployment.wait_for_run(WORKLOAD, RUN_ID, timeout=360) == "success"

        store = Store.connect(store_url)
        assert_store_complete(store, emulator, LOAN_RECORDS)
        store.close()
        instances = {ti["task_id"]: ti for ti in deployment.task_instances(WORKLOAD, RUN_ID)}
        assert instances["route"]["hostname"] == "worker-a"
        partition = instances[PARTITION_TASK]
        assert (partition["state"], partition["try_number"], partition["hostname"]) == (
            "success",
            2,
            "worker-b",
        )
        assert instances["publish"]["hostname"] == "worker-b"
        triggerers = deployment.api("GET", "/jobs", params={"job_type": "TriggererJob"})["jobs"]
        assert {job["hostname"] for job in triggerers} == {"triggerer"}
        # The run's data folder is on the object store, and nowhere on the control host's disk.
        keys = set(s3.keys(RUN_FOLDER))
        assert {
            f"{RUN_FOLDER}results/round-00/shard-00000.jsonl",
            f"{SHARD_PARTITION}summary.json",
            f"{RUN_FOLDER}report.json",
        } <= keys
        assert not (deployment.home / "claude_batch_data").exists()
