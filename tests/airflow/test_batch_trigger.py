"""BatchEndedTrigger against the real emulator process: one event per run, transient errors survived."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import anthropic
import pytest
from airflow.sdk.exceptions import TaskDeferred
from airflow.sdk.module_loading import import_string

from claude_batch.sensors.batch import BatchWaitSensor
from claude_batch.triggers.batch import BatchEndedTrigger
from claude_demo.loans import loan_files
from claude_emulator.faults import EndpointFaults
from claude_emulator.testing import EmulatorHandle, running_emulator
from tests.airflow.submit_support import RUN_DATE, WORKLOAD, run_context, shard_file, submit_operator

API_KEY = "sk-ant-test-trigger-key"
REQUESTS = [
    {
        "custom_id": f"doc-{i}",
        "params": {
            "model": "claude-haiku-4-5",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": f"Say hello to number {i}"}],
        },
    }
    for i in range(5)
]


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """Start an emulator and point the ``anthropic_default`` connection at it (no SDK retries, so the
    trigger's own tolerance is what is tested)."""
    contexts = []

    def start(**options) -> tuple[EmulatorHandle, anthropic.Anthropic]:
        context = running_emulator(**options)
        emulator = context.__enter__()
        contexts.append(context)
        monkeypatch.setenv(
            "AIRFLOW_CONN_ANTHROPIC_DEFAULT",
            json.dumps(
                {
                    "conn_type": "anthropic",
                    "password": API_KEY,
                    "host": emulator.base_url,
                    "extra": {"anthropic_client_kwargs": {"max_retries": 0}},
                }
            ),
        )
        return emulator, anthropic.Anthropic(base_url=emulator.base_url, api_key=API_KEY)

    yield start
    for context in contexts:
        context.__exit__(None, None, None)


def _trigger(batch_id: str, **overrides) -> BatchEndedTrigger:
    options = {
        "conn_id": "anthropic_default",
        "batch_id": batch_id,
        "deadline": time.time() + 60,
        "created_at": time.time(),
        "poll_interval": 0.1,
        "max_poll_interval": 0.5,
    }
    return BatchEndedTrigger(**(options | overrides))


async def _events(trigger: BatchEndedTrigger) -> list[dict]:
    return [event.payload async for event in trigger.run()]


def test_serialize_round_trip_rebuilds_the_same_trigger() -> None:
    trigger = _trigger("msgbatch_123", deadline=1_800_000_000.0, created_at=1_700_000_000.0)
    classpath, kwargs = trigger.serialize()
    rebuilt = import_string(classpath)(**kwargs)
    assert classpath == "claude_batch.triggers.batch.BatchEndedTrigger"
    assert rebuilt.serialize() == (classpath, kwargs)
    assert json.loads(json.dumps(kwargs)) == kwargs


async def test_ended_batch_yields_one_ended_event_with_counts(connect) -> None:
    _, client = connect(processing_seconds=0.5)
    batch = client.messages.batches.create(requests=REQUESTS)

    events = await _events(_trigger(batch.id))

    assert len(events) == 1
    assert events[0]["status"] == "ended"
    assert events[0]["request_counts"]["succeeded"] == len(REQUESTS)


async def test_deadline_passing_first_yields_a_deadline_event(connect) -> None:
    _, client = connect(processing_seconds=3600)
    batch = client.messages.batches.create(requests=REQUESTS)

    events = await _events(_trigger(batch.id, deadline=time.time() + 0.5))

    assert [e["status"] for e in events] == ["deadline"]
    assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"


async def test_unknown_batch_long_after_creation_yields_an_error_event(connect) -> None:
    connect()

    events = await _events(_trigger("msgbatch_does_not_exist", created_at=time.time() - 3600))

    assert [e["status"] for e in events] == ["error"]
    assert "does not exist" in events[0]["message"]


def _seed_failing_the_first_polls(faults: EndpointFaults) -> int:
    """A seed whose first poll answers 404 and whose second answers 500, from the emulator's own draws."""
    for seed in range(10_000):
        first, second = (faults.failure_for(seed, "retrieve_batch", call) for call in (1, 2))
        if first == "not_found_after_create" and second == "api_error":
            return seed
    raise AssertionError("no seed fails the first two polls that way")


async def test_transient_errors_and_the_early_404_are_tolerated(connect) -> None:
    # The 404 window is long enough that the first poll falls in it on any machine; the seed makes
    # the first poll a 404 and the second a 500, so both are met whatever the timing.
    retrieve_faults = {"api_error": 0.3, "not_found_after_create": 0.5, "not_found_window_seconds": 30.0}
    seed = _seed_failing_the_first_polls(EndpointFaults.model_validate(retrieve_faults))
    emulator, client = connect(
        processing_seconds=1.5, faults={"endpoints": {"retrieve_batch": retrieve_faults}}, seed=seed
    )
    batch = client.messages.batches.create(requests=REQUESTS)

    events = await _events(_trigger(batch.id, created_at=time.time()))

    assert [e["status"] for e in events] == ["ended"]
    injected = emulator.stats()["http_faults_injected"]["retrieve_batch"]
    assert injected.get("api_error", 0) > 0 and injected.get("not_found_after_create", 0) > 0


async def test_transient_errors_past_the_tolerance_yield_an_error_event(connect) -> None:
    _, client = connect(processing_seconds=3600, faults={"endpoints": {"retrieve_batch": {"api_error": 1.0}}})
    batch = client.messages.batches.create(requests=REQUESTS)

    events = await _events(_trigger(batch.id, max_consecutive_errors=3))

    assert [e["status"] for e in events] == ["error"]
    assert "3 times in a row" in events[0]["message"]


async def test_on_kill_cancels_the_batch(connect) -> None:
    _, client = connect(processing_seconds=3600)
    batch = client.messages.batches.create(requests=REQUESTS)

    await _trigger(batch.id).on_kill()

    assert client.messages.batches.retrieve(batch.id).processing_status in {"canceling", "ended"}


async def test_a_night_killed_mid_wait_leaves_no_requests_in_flight(pipeline_for, store_url: str) -> None:
    pipeline = pipeline_for(store_url=store_url, processing_seconds=3600)
    store = pipeline.store()
    run = store.open_run(WORKLOAD, RUN_DATE, "tonight")
    requests = shard_file(pipeline.tmp_path, 0, list(loan_files(30)))
    submission = submit_operator(run_context(run.id, 30), 0, requests, 30).execute({})
    wait = BatchWaitSensor(task_id="wait", submission=submission, deadline=time.time() + 3600)
    with pytest.raises(TaskDeferred) as deferred:
        wait.execute({})
    assert store.requests_in_flight() == 30

    # What the triggerer does when a person marks the waiting task failed: on_kill on its trigger.
    await deferred.value.trigger.on_kill()

    assert store.requests_in_flight() == 0
    assert store.attempt(run.id, 0, 0).status == "canceled"
    client = anthropic.Anthropic(base_url=pipeline.emulator.base_url, api_key=API_KEY)
    assert client.messages.batches.retrieve(submission["batch_id"]).processing_status in {
        "canceling",
        "ended",
    }
