from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_batch.strategy.cost import (
    InputShape,
    ModelPrice,
    SampleCostFacts,
    UnknownModelPriceError,
    cost_usd,
    default_price_table,
    estimate_run_cost,
    run_cost,
)
from claude_batch.strategy.usage import Usage

MILLION = 1_000_000


@pytest.mark.parametrize(
    ("model", "input_price", "output_price"),
    [
        ("claude-opus-4-5-20251101", 5.0, 25.0),
        ("claude-opus-5", 5.0, 25.0),
        ("claude-sonnet-4-5", 3.0, 15.0),
        ("claude-sonnet-4-20250514", 3.0, 15.0),
        ("claude-haiku-4-5", 1.0, 5.0),
    ],
)
def test_default_prices_match_the_published_table(
    model: str, input_price: float, output_price: float
) -> None:
    price = default_price_table().price_for(model)
    assert (price.input_per_mtok, price.output_per_mtok) == (input_price, output_price)


def test_a_model_without_a_price_says_how_to_add_one() -> None:
    with pytest.raises(UnknownModelPriceError, match="add a row under 'prices:'"):
        default_price_table().price_for("claude-opus-4-1")


def test_overrides_replace_a_row_and_add_new_ones() -> None:
    table = default_price_table().with_overrides(
        [
            ModelPrice(prefix="claude-haiku-4-5", input_per_mtok=0.8, output_per_mtok=4.0),
            ModelPrice(prefix="claude-opus-4-1", input_per_mtok=15.0, output_per_mtok=75.0),
        ]
    )
    assert table.price_for("claude-haiku-4-5").input_per_mtok == 0.8
    assert table.price_for("claude-opus-4-1").output_per_mtok == 75.0


def test_sync_cost_is_the_standard_price_per_token() -> None:
    usage = Usage(input_tokens=MILLION, output_tokens=MILLION)
    assert cost_usd(usage, "claude-sonnet-4-5", batch=False) == pytest.approx(18.0)


def test_cache_writes_and_reads_are_priced_by_their_multipliers() -> None:
    usage = Usage(
        cache_creation_input_tokens=3 * MILLION,
        cache_creation_1h_input_tokens=MILLION,
        cache_read_input_tokens=10 * MILLION,
    )
    # 2M at 1.25x + 1M at 2x + 10M at 0.1x = 5.5M input-equivalent tokens at $3
    assert cost_usd(usage, "claude-sonnet-4-5", batch=False) == pytest.approx(16.5)


@given(
    st.builds(
        Usage,
        input_tokens=st.integers(0, 10**9),
        output_tokens=st.integers(0, 10**8),
        cache_creation_input_tokens=st.integers(0, 10**8),
        cache_read_input_tokens=st.integers(0, 10**9),
    ),
    st.sampled_from(["claude-opus-4-6", "claude-sonnet-4-5", "claude-haiku-4-5"]),
)
def test_batch_costs_half_of_sync_for_the_same_usage(usage: Usage, model: str) -> None:
    assert cost_usd(usage, model, batch=True) == pytest.approx(0.5 * cost_usd(usage, model, batch=False))


def test_usage_from_the_api_and_sums() -> None:
    api_usage = {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_creation_input_tokens": 7,
        "cache_read_input_tokens": None,
        "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 4},
    }
    usage = Usage.from_api(api_usage)
    assert usage.cache_creation_1h_input_tokens == 4 and usage.cache_read_input_tokens == 0
    assert Usage.total([usage, usage]) == Usage(
        input_tokens=20, output_tokens=10, cache_creation_input_tokens=14, cache_creation_1h_input_tokens=8
    )


def test_a_run_costs_batch_price_for_batch_tokens_and_full_price_for_sync_ones() -> None:
    batch = Usage(input_tokens=10 * MILLION, output_tokens=MILLION)
    sync = Usage(input_tokens=MILLION)
    cost = run_cost(batch, sync, "claude-sonnet-4-5")
    assert cost.actual_usd == pytest.approx(0.5 * (30 + 15) + 3)
    assert cost.all_sync_usd == pytest.approx(33 + 15)
    assert cost.saving_usd == pytest.approx(22.5)


def test_the_estimate_is_the_sample_as_paid_plus_its_mean_request_for_the_rest() -> None:
    # 100 answered: the first wrote the 2,000-token prefix (1 h), the others read it.
    usage = Usage(
        input_tokens=100 * 1000,
        output_tokens=100 * 200,
        cache_creation_input_tokens=2000,
        cache_creation_1h_input_tokens=2000,
        cache_read_input_tokens=99 * 2000,
    )
    facts = SampleCostFacts(usage=usage, answered=100, invalid=2, published=98)
    estimate = estimate_run_cost(
        facts, 10_098, 10_000 * 1000, 2, "claude-sonnet-4-5", batch=True, cache_ttl="1h"
    )

    assert estimate.sample_usd == pytest.approx(cost_usd(usage, "claude-sonnet-4-5", batch=False))
    assert (estimate.to_send, estimate.repairs, estimate.cache_writes) == (10_000, 200, 2)
    assert estimate.per_request == Usage(input_tokens=1000, output_tokens=200, cache_read_input_tokens=2000)
    sends = 10_200
    bulk = Usage(
        input_tokens=1000 * sends,
        output_tokens=200 * sends,
        cache_read_input_tokens=2000 * (sends - 2),
        cache_creation_input_tokens=4000,
        cache_creation_1h_input_tokens=4000,
    )
    assert estimate.bulk_usd == pytest.approx(cost_usd(bulk, "claude-sonnet-4-5", batch=True))
    assert estimate.estimated_usd == pytest.approx(estimate.sample_usd + estimate.bulk_usd)


def test_a_night_the_sample_answered_in_full_costs_the_sample() -> None:
    facts = SampleCostFacts(usage=Usage(input_tokens=3000, output_tokens=600), answered=30, published=30)
    estimate = estimate_run_cost(facts, 30, 0, 1, "claude-sonnet-4-5", batch=True)
    assert (estimate.to_send, estimate.bulk_usd) == (0, 0.0)
    assert estimate.estimated_usd == pytest.approx(cost_usd(facts.usage, "claude-sonnet-4-5", batch=False))


def test_the_input_shape_is_the_line_through_the_sampled_sizes() -> None:
    shape = InputShape([(1000, 300), (2000, 550), (3000, 800)])
    assert shape.tokens(1500) == pytest.approx(425)
    # The sampled sizes give or take 10 %.
    assert (shape.covers(900), shape.covers(3300), shape.covers(899), shape.covers(3301)) == (
        True,
        True,
        False,
        False,
    )
    # Outside the sampled sizes the line is extrapolated (the cost guard counts those records instead).
    assert shape.tokens(5000) == pytest.approx(1300)


def test_a_sample_of_one_size_gives_its_mean() -> None:
    shape = InputShape([(800, 200), (800, 220)])
    assert shape.tokens(800) == pytest.approx(210)
    with pytest.raises(ValueError, match="at least one"):
        InputShape([])
