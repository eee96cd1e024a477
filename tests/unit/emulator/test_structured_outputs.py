"""Structured outputs (output_config.format) and the newer models' refusals, through the SDK."""

from __future__ import annotations

import json

import anthropic
import pytest

from claude_batch.strategy.models import structured_output_schema
from claude_emulator.testing import running_emulator
from claude_workloads.loan_disclosure_review import LoanReview
from tests.unit.emulator.support import MODEL, batch_request, sdk_client

LOAN = '<loan_file id="7">\nANNUAL PERCENTAGE RATE\nFINANCE CHARGE\n</loan_file>'
LOAN_FORMAT = {"format": {"type": "json_schema", "schema": structured_output_schema(LoanReview)}}
POINT_SCHEMA = {
    "type": "object",
    "properties": {
        "x": {"type": "integer"},
        "label": {"type": "string", "format": "date"},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 1},
    },
    "required": ["x", "label", "tags"],
    "additionalProperties": False,
}


def _format(schema: dict) -> dict:
    return {"format": {"type": "json_schema", "schema": schema}}


def test_an_answer_follows_the_workloads_schema(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=MODEL, max_tokens=400, messages=[{"role": "user", "content": LOAN}], output_config=LOAN_FORMAT
    )
    assert LoanReview.model_validate_json(message.content[0].text).loan_file_id == "7"


def test_an_answer_follows_any_schema_it_is_given(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=MODEL,
        max_tokens=400,
        messages=[{"role": "user", "content": "Where is the point?"}],
        output_config=_format(POINT_SCHEMA),
    )
    answer = json.loads(message.content[0].text)
    assert set(answer) == {"x", "label", "tags"}
    assert isinstance(answer["x"], int) and answer["tags"] and answer["tags"][0] in ("a", "b")


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({**POINT_SCHEMA, "additionalProperties": True}, "objects must set additionalProperties to false"),
        (
            {k: v for k, v in POINT_SCHEMA.items() if k != "additionalProperties"},
            "objects must set additionalProperties to false",
        ),
        (
            {
                **POINT_SCHEMA,
                "properties": {**POINT_SCHEMA["properties"], "x": {"type": "integer", "minimum": 0}},
            },
            "output_config.format.schema.properties.x: 'minimum' is not supported",
        ),
        (
            {
                **POINT_SCHEMA,
                "properties": {**POINT_SCHEMA["properties"], "label": {"type": "string", "maxLength": 9}},
            },
            "'maxLength' is not supported",
        ),
        (
            {
                **POINT_SCHEMA,
                "properties": {**POINT_SCHEMA["properties"], "tags": {"type": "array", "minItems": 3}},
            },
            "minItems 3 is not supported",
        ),
        (
            {
                **POINT_SCHEMA,
                "properties": {**POINT_SCHEMA["properties"], "label": {"type": "string", "format": "iban"}},
            },
            "string format 'iban' is not supported",
        ),
        (
            {
                "$defs": {
                    "Node": {
                        "type": "object",
                        "properties": {"next": {"$ref": "#/$defs/Node"}},
                        "additionalProperties": False,
                    }
                },
                "$ref": "#/$defs/Node",
            },
            "recursive schemas are not supported",
        ),
        ({"$ref": "https://example.com/schema.json"}, "only references into the schema's own $defs"),
        ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "'oneOf' is not supported"),
    ],
)
def test_a_schema_the_api_refuses_is_refused_with_the_apis_error(
    client: anthropic.Anthropic, schema: dict, message: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.messages.create(
            model=MODEL,
            max_tokens=100,
            messages=[{"role": "user", "content": "hi"}],
            output_config=_format(schema),
        )
    assert raised.value.status_code == 400
    body = raised.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert message in body["error"]["message"]
    assert body["error"]["message"].startswith("output_config.format.schema")


def test_a_refused_schema_in_a_batch_is_an_errored_line(client: anthropic.Anthropic) -> None:
    bad = _format({**POINT_SCHEMA, "additionalProperties": True})
    batch = client.messages.batches.create(
        requests=[batch_request("bad", output_config=bad), batch_request("good", output_config=LOAN_FORMAT)]
    )
    results = {line.custom_id: line.result for line in client.messages.batches.results(batch.id)}
    assert results["bad"].type == "errored"
    assert results["bad"].error.error.type == "invalid_request_error"
    assert "additionalProperties" in results["bad"].error.error.message
    assert results["good"].type == "succeeded"


def test_a_model_without_structured_outputs_refuses_the_format(client: anthropic.Anthropic) -> None:
    with pytest.raises(
        anthropic.BadRequestError, match="structured outputs are not supported by claude-sonnet-4-0"
    ):
        client.messages.create(
            model="claude-sonnet-4-0",
            max_tokens=100,
            messages=[{"role": "user", "content": "hi"}],
            output_config=LOAN_FORMAT,
        )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"model": "claude-sonnet-5", "temperature": 0.5}, "temperature: claude-sonnet-5 does not support"),
        (
            {
                "model": "claude-opus-4-7",
                "max_tokens": 4000,
                "thinking": {"type": "enabled", "budget_tokens": 2000},
            },
            "use thinking.type 'adaptive'",
        ),
        ({"model": "claude-opus-5-5", "thinking": {"type": "disabled"}}, "thinking cannot be disabled"),
        (
            {
                "model": "claude-opus-5-5",
                "tools": [{"name": "t", "input_schema": {"type": "object"}}],
                "tool_choice": {"type": "tool", "name": "t"},
            },
            "does not support forcing a tool",
        ),
    ],
)
def test_newer_models_refuse_what_the_api_refuses(
    client: anthropic.Anthropic, params: dict, message: str
) -> None:
    # SDK 2.x no longer lists the sampling parameters; the API still reads them from the body.
    sampling = {name: value for name, value in params.items() if name in ("temperature", "top_p", "top_k")}
    known = {name: value for name, value in params.items() if name not in sampling}
    with pytest.raises(anthropic.BadRequestError, match=message):
        client.messages.create(
            **{"max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], **known},
            extra_body=sampling,
        )


def test_invalid_output_faults_spare_structured_answers_but_cut_offs_do_not() -> None:
    custom_ids = [f"loan-{i}" for i in range(120)]
    faults = {"requests": {"invalid_output": 0.3, "cut_off": 0.1}}
    with running_emulator(faults=faults, seed=5) as emulator:
        client = sdk_client(emulator)
        requests = [
            batch_request(c, f'<loan_file id="{c}">\nFINANCE CHARGE\n</loan_file>', max_tokens=400)
            for c in custom_ids
        ]
        free = client.messages.batches.create(requests=requests)
        free_results = list(client.messages.batches.results(free.id))
        structured = client.messages.batches.create(
            requests=[{**r, "params": {**r["params"], "output_config": LOAN_FORMAT}} for r in requests]
        )
        structured_results = list(client.messages.batches.results(structured.id))

    def invalid(results) -> dict[str, str]:
        bad = {}
        for line in results:
            try:
                LoanReview.model_validate_json(line.result.message.content[0].text)
            except ValueError:
                bad[line.custom_id] = line.result.message.stop_reason
        return bad

    free_invalid, structured_invalid = invalid(free_results), invalid(structured_results)
    # The second batch is each id's second submission, so its draws differ: the rates are what hold.
    assert len(structured_invalid) < len(free_invalid)
    assert set(structured_invalid.values()) == {"max_tokens"}
    assert "end_turn" in set(free_invalid.values())
