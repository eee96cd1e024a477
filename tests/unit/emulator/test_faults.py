"""Every fault kind, seen through the SDK: per-request outcomes and HTTP faults per endpoint."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx2
import pytest
from anthropic.types.messages import MessageBatch

from claude_emulator.testing import EmulatorHandle, running_emulator
from claude_workloads.loan_disclosure_review import LoanReview
from tests.unit.emulator.support import MODEL, batch_request, sdk_client

REQUEST_FAULTS = {
    "requests": {
        "errored": {"api_error": 0.15, "overloaded_error": 0.1, "invalid_request_error": 0.05},
        "expired": 0.1,
        "canceled": 0.1,
        "invalid_output": 0.15,
    }
}


def loan_request(custom_id: str) -> dict:
    return batch_request(custom_id, f'<loan_file id="{custom_id}">\nANNUAL PERCENTAGE RATE\n</loan_file>')


def outcome(result) -> str:
    """The result's class as a pipeline sees it: errored by kind, invalid output apart."""
    if result.type == "errored":
        return f"errored:{result.error.error.type}"
    if result.type == "succeeded":
        try:
            LoanReview.model_validate_json(result.message.content[0].text)
        except ValueError:
            return "invalid_output"
    return result.type


def outcomes_of(emulator: EmulatorHandle, custom_ids: list[str]) -> dict[str, str]:
    client = sdk_client(emulator)
    batch = client.messages.batches.create(requests=[loan_request(custom_id) for custom_id in custom_ids])
    return {line.custom_id: outcome(line.result) for line in client.messages.batches.results(batch.id)}


def test_request_faults_give_every_outcome_at_about_its_rate() -> None:
    custom_ids = [f"loan-{i}" for i in range(400)]
    with running_emulator(faults=REQUEST_FAULTS, seed=7) as emulator:
        outcomes = outcomes_of(emulator, custom_ids)
        batch = sdk_client(emulator).messages.batches.list().data[0]
        stats = emulator.stats()

    tally = Counter(outcomes.values())
    expected_rates = {
        "errored:api_error": 0.15,
        "errored:overloaded_error": 0.1,
        "errored:invalid_request_error": 0.05,
        "expired": 0.1,
        "canceled": 0.1,
        "invalid_output": 0.15,
        "succeeded": 0.35,
    }
    assert set(tally) == set(expected_rates)
    for kind, rate in expected_rates.items():
        assert abs(tally[kind] / len(custom_ids) - rate) < 0.06, (kind, tally[kind])
    counts = batch.request_counts
    assert counts.errored == sum(n for kind, n in tally.items() if kind.startswith("errored"))
    assert (counts.expired, counts.canceled) == (tally["expired"], tally["canceled"])
    assert counts.succeeded == tally["succeeded"] + tally["invalid_output"]
    assert stats["batch_results"]["invalid_output"] == tally["invalid_output"]


def test_outcomes_depend_only_on_the_seed_and_the_custom_id() -> None:
    custom_ids = [f"loan-{i}" for i in range(60)]
    with running_emulator(faults=REQUEST_FAULTS, seed=7) as emulator:
        first = outcomes_of(emulator, custom_ids)
    with running_emulator(faults=REQUEST_FAULTS, seed=7) as emulator:
        again = outcomes_of(emulator, custom_ids)
    with running_emulator(faults=REQUEST_FAULTS, seed=8) as emulator:
        other_seed = outcomes_of(emulator, custom_ids)

    assert again == first
    assert other_seed != first


def test_a_resubmitted_custom_id_can_succeed_where_its_first_submission_failed() -> None:
    with running_emulator(faults={"requests": {"errored": {"api_error": 0.5}}}) as emulator:
        first = outcomes_of(emulator, [f"loan-{i}" for i in range(40)])
        failed = sorted(custom_id for custom_id, kind in first.items() if kind != "succeeded")
        second = outcomes_of(emulator, failed)
        stats = emulator.stats()

    assert failed and set(first.values()) == {"succeeded", "errored:api_error"}
    assert "succeeded" in second.values()
    assert stats["custom_id_max_submissions"] == 2
    assert stats["custom_ids_resubmitted"] == len(failed)


def test_an_errored_kind_is_an_http_error_on_the_messages_api() -> None:
    with running_emulator(faults={"requests": {"errored": {"overloaded_error": 1.0}}}) as emulator:
        client = sdk_client(emulator)
        with pytest.raises(anthropic.OverloadedError):
            client.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi"}])


def test_a_retried_message_draws_again_and_can_succeed() -> None:
    with running_emulator(faults={"requests": {"errored": {"api_error": 0.5}}}) as emulator:
        client = sdk_client(emulator)
        failed_prompt = None
        for attempt in range(20):
            prompt = [{"role": "user", "content": f"question {attempt}"}]
            try:
                client.messages.create(model=MODEL, max_tokens=50, messages=prompt)
            except anthropic.InternalServerError:
                failed_prompt = prompt
                break
        assert failed_prompt is not None

        retried = sdk_client(emulator, max_retries=6).messages.create(
            model=MODEL, max_tokens=50, messages=failed_prompt
        )

    assert retried.content[0].text.startswith("This is the Claude emulator")


def test_invalid_output_on_the_messages_api_is_malformed_json() -> None:
    with running_emulator(faults={"requests": {"invalid_output": 1.0}}) as emulator:
        message = sdk_client(emulator).messages.create(
            model=MODEL, max_tokens=400, messages=loan_request("loan-1")["params"]["messages"]
        )

    assert message.stop_reason == "end_turn"
    with pytest.raises(json.JSONDecodeError):
        json.loads(message.content[0].text)


# One emulator for the HTTP faults that fail every call of an endpoint.
ALWAYS_FAILING = {
    "endpoints": {
        "list_batches": {"rate_limited": 1.0, "retry_after_seconds": 0.25},
        "count_tokens": {"overloaded": 1.0},
        "messages": {"api_error": 1.0},
        "cancel_batch": {"connection_reset": 1.0},
        "results": {"truncated": 1.0},
        "retrieve_batch": {"not_found_after_create": 1.0, "not_found_window_seconds": 0.5},
        "delete_batch": {"slow": 1.0, "slow_seconds": 0.5},
    }
}


@pytest.fixture(scope="module")
def failing() -> Iterator[EmulatorHandle]:
    with running_emulator(faults=ALWAYS_FAILING) as handle:
        yield handle


def retrieve_once_found(client: anthropic.Anthropic, batch_id: str) -> MessageBatch:
    """Retrieve the batch until the transient 404 after its create is over, as a poller would."""
    give_up = time.monotonic() + 60
    while True:
        try:
            return client.messages.batches.retrieve(batch_id)
        except anthropic.NotFoundError:
            assert time.monotonic() < give_up, f"batch {batch_id} was never found"
            time.sleep(0.05)


def test_rate_limited_calls_get_429_with_retry_after(failing: EmulatorHandle) -> None:
    with pytest.raises(anthropic.RateLimitError) as raised:
        sdk_client(failing).messages.batches.list()

    assert raised.value.response.headers["retry-after"] == "0.25"
    assert raised.value.body["error"]["type"] == "rate_limit_error"


def test_overloaded_calls_get_529(failing: EmulatorHandle) -> None:
    with pytest.raises(anthropic.OverloadedError) as raised:
        sdk_client(failing).messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hi"}])

    assert raised.value.status_code == 529 and raised.value.body["error"]["type"] == "overloaded_error"


def test_api_errors_get_500(failing: EmulatorHandle) -> None:
    with pytest.raises(anthropic.InternalServerError) as raised:
        sdk_client(failing).messages.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )

    assert raised.value.status_code == 500 and raised.value.body["error"]["type"] == "api_error"


def test_a_reset_connection_loses_the_answer_but_not_the_effect(failing: EmulatorHandle) -> None:
    client = sdk_client(failing)
    batch = client.messages.batches.create(requests=[batch_request("r-1")])

    with pytest.raises(anthropic.APIConnectionError):
        client.messages.batches.cancel(batch.id)

    assert retrieve_once_found(client, batch.id).processing_status == "ended"
    assert failing.stats()["http_faults_injected"]["cancel_batch"]["connection_reset"] >= 1


def test_a_truncated_results_stream_breaks_off_after_half_the_lines(failing: EmulatorHandle) -> None:
    client = sdk_client(failing)
    batch = client.messages.batches.create(requests=[batch_request(f"r-{i}") for i in range(41)])
    # The SDK reads results_url from a retrieve first, which 404s just after the create.
    retrieve_once_found(client, batch.id)
    received = []

    with pytest.raises(httpx2.RemoteProtocolError):
        for line in client.messages.batches.results(batch.id):
            received.append(line.custom_id)

    assert len(received) == 20


def test_a_batch_is_not_found_just_after_create_then_found(failing: EmulatorHandle) -> None:
    client = sdk_client(failing)
    batch = client.messages.batches.create(requests=[batch_request("r-1")])

    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)

    assert retrieve_once_found(client, batch.id).id == batch.id
    assert failing.stats()["http_faults_injected"]["retrieve_batch"]["not_found_after_create"] >= 1


def test_a_slow_response_arrives_late_and_times_out_a_short_timeout(failing: EmulatorHandle) -> None:
    client = sdk_client(failing)
    first, second = (client.messages.batches.create(requests=[batch_request("r-1")]) for _ in range(2))
    # Retrieved once found: a batch ends when first observed, and only an ended batch can be deleted.
    retrieve_once_found(client, first.id)
    retrieve_once_found(client, second.id)

    started = time.monotonic()
    deleted = client.messages.batches.delete(first.id)
    elapsed = time.monotonic() - started
    with pytest.raises(anthropic.APITimeoutError):
        sdk_client(failing, timeout=0.2).messages.batches.delete(second.id)

    assert deleted.id == first.id and elapsed >= 0.5


@pytest.mark.parametrize("fault", ["rate_limited", "overloaded"])
def test_sdk_retries_get_through_429_and_529_honouring_retry_after(fault: str) -> None:
    faults = {"endpoints": {"create_batch": {fault: 0.5, "retry_after_seconds": 0.2}}}
    with running_emulator(faults=faults, seed=0) as emulator:
        client = sdk_client(emulator, max_retries=8)
        started = time.monotonic()
        batches = [client.messages.batches.create(requests=[batch_request("r-1")]) for _ in range(6)]
        elapsed = time.monotonic() - started
        stats = emulator.stats()

    injected = stats["http_faults_injected"]["create_batch"][fault]
    assert injected >= 1
    assert len({batch.id for batch in batches}) == 6 and stats["batches_created"] == 6
    assert elapsed >= 0.2 * injected


def test_a_yaml_fault_file_is_read_by_the_console_script(tmp_path: Path) -> None:
    fault_file = tmp_path / "faults.yaml"
    fault_file.write_text("endpoints:\n  list_batches:\n    api_error: 1.0\n", encoding="utf-8")
    emulator = EmulatorHandle(tmp_path, tmp_path / "state.db", ["--faults", str(fault_file)])
    emulator.start()
    try:
        with pytest.raises(anthropic.InternalServerError):
            sdk_client(emulator).messages.batches.list()
    finally:
        emulator.stop()


def test_a_fault_file_whose_rates_exceed_one_stops_the_emulator_from_starting() -> None:
    with (
        pytest.raises(RuntimeError, match=r"rates add up to 1\.5"),
        running_emulator(faults={"requests": {"expired": 0.8, "canceled": 0.7}}),
    ):
        pass
