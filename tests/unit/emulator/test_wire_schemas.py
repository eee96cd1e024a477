"""Every kind of body the emulator sends validates against the schemas of Anthropic's OpenAPI spec.

The schemas come from tests/fixtures/anthropic_openapi_schemas.json (see openapi_schemas.py), made strict
(no property the spec does not name), so the emulator cannot drift by sending extra fields either.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic import omit

from claude_emulator.testing import running_emulator
from tests.unit.emulator.openapi_schemas import (
    DEFAULT_SPEC,
    assert_valid,
    extract,
    fixture_definitions,
    strict,
)
from tests.unit.emulator.support import MODEL, batch_request, sdk_client

DEFINITIONS = fixture_definitions()
STRICT_DEFINITIONS = strict(DEFINITIONS)


@pytest.fixture(scope="module")
def bodies() -> Iterator[dict[str, list[Any]]]:
    """Raw bodies of every kind, gathered through the SDK from two emulators."""
    collected: dict[str, list[Any]] = {
        "MessageBatch": [],
        "ListResponse_MessageBatch_": [],
        "DeleteMessageBatchResponse": [],
        "MessageBatchIndividualResponse": [],
        "Message": [],
        "CountMessageTokensResponse": [],
        "ErrorResponse": [],
    }
    faults = {
        "requests": {"errored": {"api_error": 0.2, "overloaded_error": 0.1}, "expired": 0.2, "canceled": 0.2}
    }
    with running_emulator(faults=faults) as emulator:
        client = sdk_client(emulator)
        # Faults strike before validation, so several bad requests make sure one reaches it.
        requests = [batch_request(f"r-{i}") for i in range(40)]
        requests += [batch_request(f"bad-{i}", max_tokens="many") for i in range(10)]
        created = client.messages.batches.with_raw_response.create(requests=requests)
        batch_id = created.parse().id
        collected["MessageBatch"] += [
            created.json(),
            client.messages.batches.with_raw_response.retrieve(batch_id).json(),
        ]
        with client.messages.batches.with_streaming_response.results(batch_id) as results:
            collected["MessageBatchIndividualResponse"] += [json.loads(line) for line in results.iter_lines()]
        collected["ListResponse_MessageBatch_"] += [
            client.messages.batches.with_raw_response.list().json(),
            client.messages.batches.with_raw_response.list(after_id=batch_id).json(),
        ]
        collected["DeleteMessageBatchResponse"].append(
            client.messages.batches.with_raw_response.delete(batch_id).json()
        )
        system = [{"type": "text", "text": "Rules. " * 2000, "cache_control": {"type": "ephemeral"}}]
        collected["Message"].append(
            client.messages.with_raw_response.create(
                model=MODEL, max_tokens=100, system=system, messages=[{"role": "user", "content": "hi"}]
            ).json()
        )
        collected["CountMessageTokensResponse"].append(
            client.messages.with_raw_response.count_tokens(
                model=MODEL, messages=[{"role": "user", "content": "hi"}]
            ).json()
        )
        failures = [
            lambda: client.messages.batches.retrieve("msgbatch_01unknown"),
            lambda: client.messages.batches.create(requests=[batch_request("twice"), batch_request("twice")]),
            lambda: client.messages.batches.list(extra_headers={"Authorization": omit}),
        ]
        for fail in failures:
            with pytest.raises(anthropic.APIStatusError) as raised:
                fail()
            collected["ErrorResponse"].append(raised.value.body)
    with running_emulator(processing_seconds=3600) as emulator:
        client = sdk_client(emulator)
        batch_id = client.messages.batches.create(requests=[batch_request("r-1")]).id
        collected["MessageBatch"] += [
            client.messages.batches.with_raw_response.retrieve(batch_id).json(),
            client.messages.batches.with_raw_response.cancel(batch_id).json(),
            client.messages.batches.with_raw_response.retrieve(batch_id).json(),
        ]
    yield collected


@pytest.mark.parametrize(
    "schema",
    [
        "MessageBatch",
        "ListResponse_MessageBatch_",
        "DeleteMessageBatchResponse",
        "MessageBatchIndividualResponse",
        "Message",
        "CountMessageTokensResponse",
        "ErrorResponse",
    ],
)
def test_bodies_validate_against_the_spec(bodies: dict[str, list[Any]], schema: str) -> None:
    assert bodies[schema]
    for body in bodies[schema]:
        assert_valid(schema, body, STRICT_DEFINITIONS)


def test_the_bodies_cover_every_state_and_result_type(bodies: dict[str, list[Any]]) -> None:
    statuses = {batch["processing_status"] for batch in bodies["MessageBatch"]}
    result_types = {line["result"]["type"] for line in bodies["MessageBatchIndividualResponse"]}
    error_kinds = {
        line["result"]["error"]["error"]["type"]
        for line in bodies["MessageBatchIndividualResponse"]
        if line["result"]["type"] == "errored"
    }
    http_error_kinds = {body["error"]["type"] for body in bodies["ErrorResponse"]}

    assert statuses == {"in_progress", "canceling", "ended"}
    assert result_types == {"succeeded", "errored", "canceled", "expired"}
    assert error_kinds == {"api_error", "overloaded_error", "invalid_request_error"}
    assert http_error_kinds == {"not_found_error", "invalid_request_error", "authentication_error"}
    assert bodies["Message"][0]["usage"]["cache_creation_input_tokens"] > 0


def test_a_validator_rejects_a_body_that_breaks_the_spec() -> None:
    with pytest.raises(AssertionError, match="processing_status"):
        assert_valid(
            "MessageBatch",
            {"id": "msgbatch_01x", "type": "message_batch", "processing_status": "done"},
            STRICT_DEFINITIONS,
        )


@pytest.mark.skipif(not DEFAULT_SPEC.exists(), reason=f"the full spec is not at {DEFAULT_SPEC}")
def test_the_fixture_is_what_the_spec_holds() -> None:
    spec = json.loads(DEFAULT_SPEC.read_text(encoding="utf-8"))

    assert extract(spec)["$defs"] == DEFINITIONS
