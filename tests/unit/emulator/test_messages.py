"""The synchronous Messages API and count_tokens through the SDK: answers, usage, prompt caching."""

from __future__ import annotations

import anthropic
import pytest

from claude_emulator.testing import running_emulator
from claude_workloads.loan_disclosure_review import Disclosure, LoanReview
from tests.unit.emulator.support import MODEL, batch_request, sdk_client

LOAN_WITHOUT_PREPAYMENT = (
    '<loan_file id="42">\nANNUAL PERCENTAGE RATE\nFINANCE CHARGE\nAMOUNT FINANCED\nTOTAL OF PAYMENTS\n'
    "PAYMENT SCHEDULE\nLATE PAYMENT CHARGE\nNOTICE OF RIGHT TO CANCEL\n</loan_file>"
)


def cached_system(topic: str, ttl: str | None = None) -> list[dict]:
    """A system prompt of about 3,000 tokens (claude-sonnet-4-6 caches 1,024 or more), marked for caching.

    Each test names its own `topic`, so no test reads a prefix another one wrote.
    """
    marker = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    text = f"You review {topic} for missing disclosures. " * 240
    return [{"type": "text", "text": text, "cache_control": marker}]


def test_a_loan_file_gets_a_review_naming_its_missing_disclosures(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=MODEL, max_tokens=400, messages=[{"role": "user", "content": LOAN_WITHOUT_PREPAYMENT}]
    )

    review = LoanReview.model_validate_json(message.content[0].text)
    assert review.loan_file_id == "42"
    assert review.missing_disclosures == [Disclosure.PREPAYMENT]
    assert review.risk_level == "medium"
    assert message.stop_reason == "end_turn" and message.role == "assistant"
    assert message.usage.service_tier == "standard"
    assert message.usage.output_tokens == (len(message.content[0].text) + 3) // 4


def test_count_tokens_equals_the_input_a_message_is_billed_for(client: anthropic.Anthropic) -> None:
    prompt = {
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Summarise the Truth in Lending Act."}],
    }

    counted = client.messages.count_tokens(model=MODEL, **prompt)
    message = client.messages.create(model=MODEL, max_tokens=100, **prompt)

    assert counted.input_tokens == message.usage.input_tokens > 0


def test_a_cached_prefix_is_written_once_then_read(client: anthropic.Anthropic) -> None:
    system = cached_system("mortgage files")
    first = client.messages.create(
        model=MODEL, max_tokens=50, system=system, messages=[{"role": "user", "content": "File A"}]
    )
    second = client.messages.create(
        model=MODEL, max_tokens=50, system=system, messages=[{"role": "user", "content": "File B"}]
    )

    prefix = first.usage.cache_creation_input_tokens
    assert prefix >= 1024 and first.usage.cache_read_input_tokens == 0
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == prefix
    assert second.usage.cache_read_input_tokens == prefix and second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens == first.usage.input_tokens


def test_a_one_hour_marker_creates_one_hour_cache(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=MODEL,
        max_tokens=50,
        system=cached_system("auto loans", "1h"),
        messages=[{"role": "user", "content": "x"}],
    )

    assert (
        message.usage.cache_creation.ephemeral_1h_input_tokens
        == message.usage.cache_creation_input_tokens
        > 0
    )
    assert message.usage.cache_creation.ephemeral_5m_input_tokens == 0


def test_a_prefix_shorter_than_the_model_minimum_is_not_cached(client: anthropic.Anthropic) -> None:
    short_system = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]

    for _ in range(2):
        message = client.messages.create(
            model=MODEL, max_tokens=50, system=short_system, messages=[{"role": "user", "content": "hi"}]
        )
        assert message.usage.cache_creation_input_tokens == message.usage.cache_read_input_tokens == 0


def test_a_batch_writes_a_shared_prefix_once_and_reads_it_after(client: anthropic.Anthropic) -> None:
    requests = [
        batch_request(f"r-{i}", f"File {i}", system=cached_system("personal loans", "1h")) for i in range(4)
    ]

    batch = client.messages.batches.create(requests=requests)
    usages = [line.result.message.usage for line in client.messages.batches.results(batch.id)]

    prefix = max(usage.cache_creation_input_tokens for usage in usages)
    assert [usage.cache_creation_input_tokens for usage in usages] == [prefix, 0, 0, 0]
    assert [usage.cache_read_input_tokens for usage in usages] == [0, prefix, prefix, prefix]
    assert {usage.service_tier for usage in usages} == {"batch"}


def test_max_tokens_cuts_the_answer_short(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=MODEL, max_tokens=5, messages=[{"role": "user", "content": LOAN_WITHOUT_PREPAYMENT}]
    )

    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 5 and len(message.content[0].text) == 20


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        (
            {"model": MODEL, "max_tokens": -1, "messages": [{"role": "user", "content": "hi"}]},
            anthropic.BadRequestError,
            "max_tokens: Input should be greater than or equal to 0",
        ),
        (
            {"model": "claude-unknown", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
            anthropic.NotFoundError,
            "model: claude-unknown",
        ),
        (
            {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "word " * 170_000}]},
            anthropic.BadRequestError,
            "prompt is too long",
        ),
        (
            {
                "model": "claude-3-haiku-20240307",
                "max_tokens": 5000,
                "messages": [{"role": "user", "content": "hi"}],
            },
            anthropic.BadRequestError,
            "maximum allowed number of output tokens",
        ),
    ],
)
def test_invalid_params_are_refused_at_once(
    client: anthropic.Anthropic, params: dict, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        client.messages.create(**params)


def test_stats_count_messages_tokens_and_usage_by_tier() -> None:
    with running_emulator() as emulator:
        client = sdk_client(emulator)
        message = client.messages.create(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        )
        client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        batch = client.messages.batches.create(requests=[batch_request("b-1"), batch_request("b-2")])
        batch_usage = [line.result.message.usage for line in client.messages.batches.results(batch.id)]
        stats = emulator.stats()

    assert stats["messages_created"] == 1 and stats["count_tokens_calls"] == 1
    assert stats["batches_created"] == 1 and stats["batch_requests_submitted"] == 2
    assert stats["batch_results"]["succeeded"] == 2
    assert stats["usage"]["standard"]["input_tokens"] == message.usage.input_tokens
    assert stats["usage"]["standard"]["output_tokens"] == message.usage.output_tokens
    assert stats["usage"]["batch"]["output_tokens"] == sum(usage.output_tokens for usage in batch_usage)
