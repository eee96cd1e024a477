"""A batch's life through the SDK: create, poll, results, cancel, delete, and the async client."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import anthropic
import pytest

from claude_demo.documents import documents
from claude_demo.loans import loan_files
from claude_emulator.testing import running_emulator
from claude_workloads.document_tagging import DocumentTags
from claude_workloads.loan_disclosure_review import DISCLOSURE_HEADINGS, LoanReview, risk_for
from tests.unit.emulator.support import async_sdk_client, batch_request, sdk_client


def wait_until_ended(client: anthropic.Anthropic, batch_id: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended" or time.monotonic() > deadline:
            return batch
        time.sleep(0.05)


def loan_prompt(record: dict) -> str:
    return f'<loan_file id="{record["loan_file_id"]}">\n{record["text"]}\n</loan_file>'


def test_batch_is_in_progress_with_zero_outcomes_until_it_ends() -> None:
    with running_emulator(processing_seconds=0.5) as emulator:
        client = sdk_client(emulator)
        created = client.messages.batches.create(requests=[batch_request(f"req-{i}") for i in range(3)])

        assert created.processing_status == "in_progress"
        assert created.request_counts.processing == 3
        assert created.request_counts.succeeded == created.request_counts.errored == 0
        assert created.results_url is None and created.ended_at is None
        assert created.expires_at - created.created_at == timedelta(hours=24)
        with pytest.raises(anthropic.AnthropicError, match="No `results_url`"):
            client.messages.batches.results(created.id)

        ended = wait_until_ended(client, created.id)

    assert ended.processing_status == "ended"
    assert ended.request_counts.model_dump() == {
        "processing": 0,
        "succeeded": 3,
        "errored": 0,
        "canceled": 0,
        "expired": 0,
    }
    assert ended.ended_at == created.created_at + timedelta(seconds=0.5)
    assert ended.results_url == f"{emulator.base_url}/v1/messages/batches/{created.id}/results"


def test_results_answer_each_workload_as_its_output_schema(client: anthropic.Anthropic) -> None:
    loans = list(loan_files(6, seed=3, missing_rate=0.6))
    document = next(documents(1))
    requests = [batch_request(f"loan-{r['loan_file_id']}", loan_prompt(r)) for r in loans]
    requests.append(
        batch_request("doc-0", f'<document id="{document["doc_id"]}">\n{document["body"]}\n</document>')
    )
    requests.append(batch_request("chat-0", "What is a finance charge?"))

    batch = client.messages.batches.create(requests=requests)
    results = {line.custom_id: line.result for line in client.messages.batches.results(batch.id)}

    assert set(results) == {request["custom_id"] for request in requests}
    gaps = 0
    for record in loans:
        result = results[f"loan-{record['loan_file_id']}"]
        assert result.type == "succeeded"
        review = LoanReview.model_validate_json(result.message.content[0].text)
        lines = set(record["text"].splitlines())
        expected_missing = [d for d, heading in DISCLOSURE_HEADINGS.items() if heading not in lines]
        assert review.loan_file_id == record["loan_file_id"]
        assert review.missing_disclosures == expected_missing
        assert review.risk_level == risk_for(len(expected_missing))
        assert result.message.usage.service_tier == "batch"
        assert result.message.usage.input_tokens > len(record["text"]) // 5
        gaps += len(expected_missing)
    assert gaps > 0, "the sample should include files with missing disclosures"
    tags = DocumentTags.model_validate_json(results["doc-0"].message.content[0].text)
    assert tags.doc_id == document["doc_id"]
    assert document["department"] in tags.tags
    assert results["chat-0"].message.content[0].text.startswith("This is the Claude emulator")


def test_results_come_back_complete_in_shuffled_order(client: anthropic.Anthropic) -> None:
    custom_ids = [f"item-{i:05d}" for i in range(5000)]
    batch = client.messages.batches.create(requests=[batch_request(cid, f"Item {cid}") for cid in custom_ids])

    returned = [line.custom_id for line in client.messages.batches.results(batch.id)]

    assert sorted(returned) == custom_ids
    assert returned != custom_ids


def test_invalid_params_become_errored_lines_once_the_batch_ends(client: anthropic.Anthropic) -> None:
    good = batch_request("good")
    no_max_tokens = batch_request("no-max-tokens")
    del no_max_tokens["params"]["max_tokens"]
    no_messages = batch_request("no-messages")
    del no_messages["params"]["messages"]
    no_model = batch_request("no-model")
    del no_model["params"]["model"]
    requests = [
        good,
        no_max_tokens,
        no_messages,
        no_model,
        batch_request("negative-max-tokens", max_tokens=-1),
        batch_request("streaming", stream=True),
        batch_request("unknown-model", model="claude-nonexistent-9"),
        batch_request("too-long", "word " * 180_000),
        batch_request("extra-field", colour="blue"),
        batch_request(
            "bad-cache-ttl",
            system=[{"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "2d"}}],
        ),
    ]

    batch = client.messages.batches.create(requests=requests)
    results = {line.custom_id: line.result for line in client.messages.batches.results(batch.id)}
    ended = client.messages.batches.retrieve(batch.id)

    assert results["good"].type == "succeeded"
    assert ended.request_counts.succeeded == 1 and ended.request_counts.errored == len(requests) - 1
    expected = {
        "no-max-tokens": ("invalid_request_error", "max_tokens: Field required"),
        "no-messages": ("invalid_request_error", "messages: Field required"),
        "no-model": ("invalid_request_error", "model: Field required"),
        "negative-max-tokens": ("invalid_request_error", "max_tokens: Input should be greater than"),
        "streaming": ("invalid_request_error", "stream: streaming is not supported"),
        "unknown-model": ("not_found_error", "model: claude-nonexistent-9"),
        "too-long": ("invalid_request_error", "prompt is too long: 225004 tokens > 200000 maximum"),
        "extra-field": ("invalid_request_error", "colour: Extra inputs are not permitted"),
        "bad-cache-ttl": (
            "invalid_request_error",
            "system.0.cache_control.ttl: Input should be '5m' or '1h'",
        ),
    }
    for custom_id, (kind, message) in expected.items():
        result = results[custom_id]
        assert result.type == "errored", custom_id
        assert result.error.error.type == kind, custom_id
        assert result.error.error.message.startswith(message), custom_id


def test_cancel_before_any_request_finished_cancels_them_all() -> None:
    with running_emulator(processing_seconds=10 * 24 * 3600) as emulator:
        client = sdk_client(emulator)
        batch = client.messages.batches.create(requests=[batch_request(f"r-{i}") for i in range(20)])

        canceling = client.messages.batches.cancel(batch.id)
        ended = client.messages.batches.retrieve(batch.id)
        results = list(client.messages.batches.results(batch.id))

    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
    assert ended.processing_status == "ended"
    assert ended.request_counts.canceled == 20 and ended.request_counts.succeeded == 0
    assert {line.result.type for line in results} == {"canceled"}


def test_cancel_keeps_the_results_of_requests_finished_before_it() -> None:
    with running_emulator(processing_seconds=1.0) as emulator:
        client = sdk_client(emulator)
        batch = client.messages.batches.create(requests=[batch_request(f"r-{i}") for i in range(60)])
        time.sleep(0.5)
        client.messages.batches.cancel(batch.id)
        ended = client.messages.batches.retrieve(batch.id)
        kinds = [line.result.type for line in client.messages.batches.results(batch.id)]

    counts = ended.request_counts
    assert counts.succeeded > 0 and counts.canceled > 0
    assert counts.succeeded + counts.canceled == 60
    assert kinds.count("succeeded") == counts.succeeded and kinds.count("canceled") == counts.canceled


def test_canceling_an_ended_batch_changes_nothing(client: anthropic.Anthropic) -> None:
    batch = client.messages.batches.create(requests=[batch_request("only")])
    ended = client.messages.batches.retrieve(batch.id)

    after_cancel = client.messages.batches.cancel(batch.id)

    assert after_cancel == ended


def test_delete_is_refused_until_the_batch_has_ended() -> None:
    with running_emulator(processing_seconds=3600) as emulator:
        client = sdk_client(emulator)
        batch = client.messages.batches.create(requests=[batch_request("r-1")])

        with pytest.raises(anthropic.BadRequestError, match="cannot be deleted while it is in_progress"):
            client.messages.batches.delete(batch.id)
        client.messages.batches.cancel(batch.id)
        client.messages.batches.retrieve(batch.id)
        deleted = client.messages.batches.delete(batch.id)

        assert deleted.id == batch.id and deleted.type == "message_batch_deleted"
        with pytest.raises(anthropic.NotFoundError):
            client.messages.batches.retrieve(batch.id)
        assert batch.id not in [listed.id for listed in client.messages.batches.list()]


@pytest.mark.parametrize("call", ["retrieve", "cancel", "delete", "results"])
def test_an_unknown_batch_is_not_found(client: anthropic.Anthropic, call: str) -> None:
    with pytest.raises(anthropic.NotFoundError) as raised:
        getattr(client.messages.batches, call)("msgbatch_01doesnotexist")

    assert raised.value.body["error"] == {
        "type": "not_found_error",
        "message": "Message Batch msgbatch_01doesnotexist not found",
    }


def test_every_response_carries_a_request_id(client: anthropic.Anthropic) -> None:
    created = client.messages.batches.with_raw_response.create(requests=[batch_request("r-1")])
    with pytest.raises(anthropic.NotFoundError) as raised:
        client.messages.batches.retrieve("msgbatch_01unknown")

    assert created.headers["request-id"].startswith("req_")
    error_id = raised.value.response.headers["request-id"]
    assert error_id.startswith("req_") and raised.value.body["request_id"] == error_id
    assert raised.value.request_id == error_id


async def test_the_async_client_runs_a_batch_to_its_results() -> None:
    with running_emulator(processing_seconds=0.5) as emulator:
        client = async_sdk_client(emulator)
        batch = await client.messages.batches.create(requests=[batch_request(f"a-{i}") for i in range(10)])
        while batch.processing_status != "ended":
            batch = await client.messages.batches.retrieve(batch.id)
        results = [line async for line in await client.messages.batches.results(batch.id)]
        listed = [listed async for listed in client.messages.batches.list()]
        await client.close()

    assert batch.request_counts.succeeded == 10
    assert sorted(line.custom_id for line in results) == sorted(f"a-{i}" for i in range(10))
    assert [listed_batch.id for listed_batch in listed] == [batch.id]
    assert json.loads(results[0].model_dump_json())["result"]["type"] == "succeeded"
