"""A connection that cannot batch (Bedrock, Vertex AI, Foundry) routes the bulk sync, or refuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from claude_batch.dag_factory import build_workload_dag
from claude_batch.strategy.spec import load_workload
from tests.airflow.conftest import API_KEY

LOGICAL_DATE = datetime(2026, 6, 7, 5, 0, tzinfo=UTC)


def _route_only(conn_id: str):
    """The nightly DAG's route task alone (the provider's Bedrock client needs botocore, absent here)."""
    dag = build_workload_dag(load_workload("loan_disclosure_review"), conn_id=conn_id)
    return dag.partial_subset(task_ids=["route"], include_upstream=False, include_downstream=False)


def _test(dag, input_uri: str, deadline: datetime):
    return dag.test(
        logical_date=LOGICAL_DATE, run_conf={"input_uri": input_uri, "deadline": deadline.isoformat()}
    )


@pytest.fixture
def bedrock(pipeline_for, monkeypatch: pytest.MonkeyPatch):
    pipeline = pipeline_for()
    extra = {"platform": "bedrock", "aws_region": "us-east-1"}
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLAUDE_BEDROCK",
        json.dumps(
            {
                "conn_type": "anthropic",
                "password": API_KEY,
                "host": pipeline.emulator.base_url,
                "extra": extra,
            }
        ),
    )
    return pipeline


def test_a_bedrock_connection_routes_the_bulk_sync_with_the_reason(bedrock) -> None:
    loans = bedrock.loan_input(300)
    dag_run = _test(_route_only("claude_bedrock"), str(loans), datetime.now(UTC) + timedelta(days=1))

    assert dag_run.state == "success"
    (ti,) = dag_run.get_task_instances()
    context = ti.xcom_pull(task_ids="route")
    assert context["route"] == "sync"
    assert "connection claude_bedrock is a bedrock connection" in context["route_rationale"]
    assert "Message Batches are served only by the first-party API" in context["route_rationale"]
    # 300 requests with a day to go would be a batch on a first-party connection.
    assert bedrock.emulator.stats()["batches_created"] == 0


def test_a_bedrock_connection_refuses_a_night_sync_cannot_finish(bedrock) -> None:
    loans = bedrock.loan_input(3000)
    # 3,000 requests at 50 a minute take an hour: a deadline 20 minutes away cannot be met sync.
    dag_run = _test(_route_only("claude_bedrock"), str(loans), datetime.now(UTC) + timedelta(minutes=20))

    assert dag_run.state == "failed"
    stats = bedrock.emulator.stats()
    assert (stats["batches_created"], stats["messages_created"]) == (0, 0)
