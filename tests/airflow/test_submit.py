"""The submit stage on its own: it waits its turn when the organisation's processing queue is full,
and never pays for one shard's batch twice or hands it to another shard, whatever the pool size."""

from __future__ import annotations

import json
import threading
from datetime import date

import anthropic
import pytest
from airflow.sdk.exceptions import TaskDeferred

from claude_demo.loans import loan_files
from claude_emulator.faults import EndpointFaults
from tests.airflow.conftest import API_KEY
from tests.airflow.submit_support import (
    RUN_DATE,
    WORKLOAD,
    custom_ids,
    digest,
    results_custom_ids,
    run_context,
    shard_file,
    submit_operator,
)


def test_a_shard_waits_while_another_nights_batch_fills_the_queue(pipeline_for, monkeypatch) -> None:
    monkeypatch.setenv("CLAUDE_BATCH_MAX_REQUESTS_IN_FLIGHT", "50")
    pipeline = pipeline_for()
    store = pipeline.store()
    other_night = store.open_run(WORKLOAD, date(2026, 6, 6), "other-night")
    in_flight = store.record_intent(other_night.id, 0, 0, "batch", 40, "digest-of-other-night")
    store.attach_batch(in_flight.id, "msgbatch_other_night")
    run = store.open_run(WORKLOAD, RUN_DATE, "tonight")
    requests = shard_file(pipeline.tmp_path, 0, list(loan_files(30)))
    submit = submit_operator(run_context(run.id, 30), 0, requests, 30)

    with pytest.raises(TaskDeferred):
        submit.execute({})
    assert pipeline.emulator.stats()["batches_created"] == 0

    store.update_attempt("msgbatch_other_night", "ended")
    submission = submit.execute({})

    assert submission["batch_id"].startswith("msgbatch_")
    assert pipeline.emulator.stats()["batches_created"] == 1
    assert store.requests_in_flight() == 30


def test_a_batch_that_ended_unobserved_stops_counting_at_the_next_queue_check(
    pipeline_for, monkeypatch, store_url: str
) -> None:
    # Last night's wait was killed with its worker (no on_kill ran): the ledger still holds its batch
    # as submitted although the batch has ended. Tonight's queue check polls it and records the end.
    monkeypatch.setenv("CLAUDE_BATCH_MAX_REQUESTS_IN_FLIGHT", "50")
    pipeline = pipeline_for(store_url=store_url)
    store = pipeline.store()
    last_night = store.open_run(WORKLOAD, date(2026, 6, 6), "last-night")
    requests = shard_file(pipeline.tmp_path, 0, list(loan_files(40)))
    last_submission = submit_operator(run_context(last_night.id, 40), 0, requests, 40).execute({})
    client = anthropic.Anthropic(base_url=pipeline.emulator.base_url, api_key=API_KEY)
    assert client.messages.batches.retrieve(last_submission["batch_id"]).processing_status == "ended"
    assert store.requests_in_flight() == 40

    tonight = store.open_run(WORKLOAD, RUN_DATE, "tonight")
    submission = submit_operator(run_context(tonight.id, 30), 0, requests, 30).execute({})

    assert submission["batch_id"] != last_submission["batch_id"]
    assert store.attempt(last_night.id, 0, 0).status == "ended"
    assert store.attempt(last_night.id, 0, 0).request_counts.succeeded == 40
    assert store.requests_in_flight() == 30


def _seed_losing_only_the_first_create(faults: EndpointFaults) -> int:
    """A seed whose first batch create is answered by a reset connection and whose next ones are not.

    Derived from the emulator's own fault decisions, so the test holds whatever the seed turns out to be.
    """
    for seed in range(10_000):
        calls = [faults.failure_for(seed, "create_batch", call) for call in range(1, 5)]
        if calls[0] == "connection_reset" and not any(calls[1:]):
            return seed
    raise AssertionError("no seed loses only the first create")


def test_two_submit_slots_and_a_lost_create_response_give_each_shard_its_own_batch(
    pipeline_for, store_url: str
) -> None:
    create_faults = {"connection_reset": 0.5}
    seed = _seed_losing_only_the_first_create(EndpointFaults.model_validate(create_faults))
    pipeline = pipeline_for(
        store_url=store_url, faults={"endpoints": {"create_batch": create_faults}}, seed=seed
    )
    store = pipeline.store()
    run = store.open_run(WORKLOAD, RUN_DATE, "tonight")
    loans = list(loan_files(60))
    files = [shard_file(pipeline.tmp_path, 0, loans[:30]), shard_file(pipeline.tmp_path, 1, loans[30:])]
    context = run_context(run.id, 60)
    # Two pool slots: both shards' submits run at once, their intents written in the same second.
    start = threading.Barrier(2)
    submissions: dict[int, dict] = {}
    errors: list[BaseException] = []

    def slot(index: int) -> None:
        operator = submit_operator(context, index, files[index], 30)
        start.wait()
        try:
            submissions[index] = operator.execute({})
        except BaseException as error:
            errors.append(error)

    slots = [threading.Thread(target=slot, args=(index,)) for index in (0, 1)]
    for thread in slots:
        thread.start()
    for thread in slots:
        thread.join(timeout=120)

    assert errors == []
    stats = pipeline.emulator.stats()
    assert stats["http_faults_injected"]["create_batch"] == {"connection_reset": 1}
    assert stats["batches_created"] == 2 == store.batches_created(run.id)
    attempts = store.attempts_of_run(run.id)
    assert [a.batch_id for a in attempts] == [submissions[0]["batch_id"], submissions[1]["batch_id"]]
    assert sum(a.adopted for a in attempts) == 1  # the batch whose create answer was lost
    for index, path in enumerate(files):
        assert results_custom_ids(pipeline, submissions[index]["batch_id"]) == custom_ids(path)


def test_an_orphan_of_a_crashed_create_goes_to_its_own_shard_not_to_another_of_the_same_size(
    pipeline_for, store_url: str
) -> None:
    # Shard 0's worker died right after its create went through (the batch is in no ledger row);
    # shard 1's worker died right after writing its intent. Both shards hold 30 requests, so the
    # orphan's size and creation time fit either; shard 1's retry runs first.
    pipeline = pipeline_for(store_url=store_url)
    store = pipeline.store()
    run = store.open_run(WORKLOAD, RUN_DATE, "tonight")
    loans = list(loan_files(60))
    files = [shard_file(pipeline.tmp_path, 0, loans[:30]), shard_file(pipeline.tmp_path, 1, loans[30:])]
    context = run_context(run.id, 60)
    crashed = store.record_intent(run.id, 0, 0, "batch", 30, digest(files[0]))
    with store.batch_create_lock():
        store.begin_create(crashed.id, mark=None)
        client = anthropic.Anthropic(base_url=pipeline.emulator.base_url, api_key=API_KEY)
        requests = [json.loads(line) for line in files[0].read_text().splitlines()]
        orphan = client.messages.batches.create(requests=requests)
    store.record_intent(run.id, 1, 0, "batch", 30, digest(files[1]))

    second = submit_operator(context, 1, files[1], 30).execute({})

    assert second["batch_id"] != orphan.id
    assert store.attempt(run.id, 0, 0).batch_id == orphan.id
    assert results_custom_ids(pipeline, second["batch_id"]) == custom_ids(files[1])
    first = submit_operator(context, 0, files[0], 30).execute({})
    assert (first["batch_id"], first["adopted"]) == (orphan.id, True)
    assert results_custom_ids(pipeline, orphan.id) == custom_ids(files[0])
    assert pipeline.emulator.stats()["batches_created"] == 2
