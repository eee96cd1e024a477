"""The one usage model: parsed once from the API's usage, 5 min and 1 h cache writes priced apart, and
kept whole through partition files and store rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from claude_batch.store import OutputRow
from claude_batch.strategy.cost import cost_usd
from claude_batch.strategy.manifest import ManifestEntry
from claude_batch.strategy.partition import ResultClass, partition_results
from claude_batch.strategy.usage import Usage, usage_counts
from claude_workloads.loan_disclosure_review import LoanReview
from tests.unit.strategy.helpers import review_json, succeeded_line

MILLION = 1_000_000

# A Message's usage with both kinds of cache write: 1M for 5 minutes, 2M for 1 hour.
API_USAGE = {
    "input_tokens": 100,
    "output_tokens": 50,
    "cache_creation_input_tokens": 3 * MILLION,
    "cache_read_input_tokens": 400,
    "cache_creation": {"ephemeral_5m_input_tokens": MILLION, "ephemeral_1h_input_tokens": 2 * MILLION},
    "service_tier": "batch",
}


def test_the_api_usage_keeps_every_count_and_the_two_cache_writes_apart() -> None:
    usage = Usage.from_api(API_USAGE)

    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == (100, 50, 400)
    assert usage.cache_creation_input_tokens == 3 * MILLION
    assert (usage.cache_creation_5m_input_tokens, usage.cache_creation_1h_input_tokens) == (
        MILLION,
        2 * MILLION,
    )


def test_1h_cache_writes_cost_2x_and_5m_ones_1_25x_the_input_price() -> None:
    writes_only = Usage.from_api(
        {"cache_creation_input_tokens": 3 * MILLION, "cache_creation": API_USAGE["cache_creation"]}
    )

    # Sonnet input is $3 per million: 1M at 1.25x + 2M at 2x = 5.25M input-equivalent tokens.
    assert cost_usd(writes_only, "claude-sonnet-4-5", batch=False) == pytest.approx(15.75)
    all_5m = Usage(cache_creation_input_tokens=3 * MILLION)
    assert cost_usd(all_5m, "claude-sonnet-4-5", batch=False) == pytest.approx(11.25)


def test_a_missing_usage_or_breakdown_is_zero_and_all_writes_count_as_5m() -> None:
    assert Usage.from_api(None) == Usage.from_message({}) == Usage()
    older = Usage.from_api({"input_tokens": 7, "cache_creation_input_tokens": 9, "output_tokens": None})

    assert older == Usage(input_tokens=7, cache_creation_input_tokens=9)
    assert older.cache_creation_5m_input_tokens == 9


def test_sums_keep_the_1h_part() -> None:
    usage = Usage.from_api(API_USAGE)

    assert (usage + usage).cache_creation_1h_input_tokens == 4 * MILLION
    assert Usage.total([usage, usage, usage]) == Usage(
        input_tokens=300,
        output_tokens=150,
        cache_creation_input_tokens=9 * MILLION,
        cache_read_input_tokens=1200,
        cache_creation_1h_input_tokens=6 * MILLION,
    )


def test_partition_keeps_the_1h_writes_in_its_summary_and_in_each_answer(tmp_path: Path) -> None:
    line = json.loads(succeeded_line("loan-1", review_json("1")))
    line["result"]["message"]["usage"] = API_USAGE
    entry = ManifestEntry(custom_id="loan-1", business_key="1", shard=0)

    summary = partition_results([json.dumps(line)], [entry], LoanReview, tmp_path)

    assert summary.usage == Usage.from_api(API_USAGE)
    (answer,) = Path(summary.files[ResultClass.SUCCEEDED]).read_text().splitlines()
    assert Usage.model_validate(json.loads(answer)["usage"]) == Usage.from_api(API_USAGE)


def test_an_output_row_holds_the_whole_usage() -> None:
    usage = Usage.from_api(API_USAGE)
    row = OutputRow(
        business_key="1",
        custom_id="loan-1",
        output={},
        model="claude-sonnet-4-5",
        source="batch",
        **OutputRow.token_counts(usage),
    )

    assert row.usage == usage


@pytest.mark.parametrize(
    "api_usage",
    [
        API_USAGE,
        None,
        {},
        {"input_tokens": None, "output_tokens": 7, "cache_creation": None},
        {"input_tokens": "1200", "output_tokens": 60.0},
        {"input_tokens": True},
        {"input_tokens": 10**30, "cache_creation": {"ephemeral_1h_input_tokens": 5}},
    ],
)
def test_usage_counts_are_the_models_dump_built_without_it_when_they_are_plain(
    api_usage: dict | None,
) -> None:
    counts = usage_counts(api_usage)

    assert counts == Usage.from_api(api_usage).model_dump()
    assert list(counts) == list(Usage.model_fields)
    assert all(type(count) is int for count in counts.values())


@pytest.mark.parametrize(
    "api_usage", [{"input_tokens": -1}, {"output_tokens": "many"}, {"input_tokens": 1.5}]
)
def test_usage_counts_refuse_what_the_model_refuses(api_usage: dict) -> None:
    with pytest.raises(ValidationError):
        Usage.from_api(api_usage)
    with pytest.raises(ValidationError):
        usage_counts(api_usage)
