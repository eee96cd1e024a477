"""A connection that cannot batch (Bedrock, Vertex AI, Foundry) routes the bulk sync, or refuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from claude_batch.dag_factory import build_workload_dag
from claude_batch.strategy.spec import load_workload
from tests.airflow.conftest import API_KEY

LOGICAL_DATE = datetime(2026, 6, 7, 5, 0, tzinfo=UTC)


def _route(conn_id: str, input_uri: str, deadline: datetime) -> dict:
    """The nightly DAG's route task, run on its own: the provider's Bedrock client needs botocore
    (not installed here), so the stages after route cannot run against a Bedrock connection."""
    dag = build_workload_dag(load_workload("loan_disclosure_review"), conn_id=conn_id)
    route = dag.get_task("route")
    route.input_uri, route.deadline = input_uri, deadline.isoformat()
    dag_run = SimpleNamespace(run_id="manual__route_test", logical_date=LOGICAL_DATE, run_after=LOGICAL_DATE)
    return route.execute({"dag_run": dag_run})


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
    context = _route("claude_bedrock", str(loans), datetime.now(UTC) + timedelta(days=1))

    assert context["route"] == "sync"
    assert "connection claude_bedrock is a bedrock connection" in context["route_rationale"]
    assert "Message Batches are served only by the first-party API" in context["route_rationale"]
    assert bedrock.emulator.stats()["batches_created"] == 0
    # The same night on the first-party connection is a batch.
    assert _route("anthropic_default", str(loans), datetime.now(UTC) + timedelta(days=1))["route"] == "batch"


def test_a_bedrock_connection_refuses_a_night_sync_cannot_finish(bedrock) -> None:
    loans = bedrock.loan_input(3000)
    # 3,000 requests at 50 a minute take an hour: a deadline 20 minutes away cannot be met sync.
    with pytest.raises(AirflowFailException, match="Refusing the run of loan_disclosure_review") as raised:
        _route("claude_bedrock", str(loans), datetime.now(UTC) + timedelta(minutes=20))

    assert "sync misses the deadline" in str(raised.value)
    stats = bedrock.emulator.stats()
    assert (stats["batches_created"], stats["messages_created"]) == (0, 0)
