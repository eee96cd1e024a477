"""What a run costs, and what it would have cost all-synchronous.

Prices are data (``prices.yaml`` beside this module, overridable per workload), matched to a model
name by the longest prefix. Batch requests cost ``batch_discount`` of the standard price, and prompt
caching stacks with it: cache writes cost 1.25x (5 min TTL) or 2x (1 h TTL) the input price, cache
reads 0.1x. The API reports ``input_tokens`` without the cached tokens, so the four counts add up.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from claude_batch.strategy.usage import Usage

PRICES_FILE = Path(__file__).with_name("prices.yaml")
_PER_TOKEN = 1 / 1_000_000


class UnknownModelPriceError(LookupError):
    """No price row matches the model; the spec's ``prices`` can add one."""


class ModelPrice(BaseModel):
    """Standard (synchronous) price of a model family, USD per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = Field(min_length=1)
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class PriceTable(BaseModel):
    """Model prices and the multipliers that apply on top of them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_discount: float = Field(gt=0, le=1)
    cache_write_5m_multiplier: float = Field(ge=0)
    cache_write_1h_multiplier: float = Field(ge=0)
    cache_read_multiplier: float = Field(ge=0)
    models: list[ModelPrice]

    def price_for(self, model: str) -> ModelPrice:
        """The row with the longest prefix of ``model``."""
        matches = [row for row in self.models if model.startswith(row.prefix)]
        if not matches:
            raise UnknownModelPriceError(
                f"no price for model {model!r}; add a row under 'prices:' in the workload spec "
                f"(known prefixes: {', '.join(row.prefix for row in self.models)})"
            )
        return max(matches, key=lambda row: len(row.prefix))

    def with_overrides(self, rows: Iterable[ModelPrice]) -> PriceTable:
        """This table with ``rows`` replacing rows of the same prefix and adding new ones."""
        by_prefix = {row.prefix: row for row in self.models}
        by_prefix.update({row.prefix: row for row in rows})
        return self.model_copy(update={"models": list(by_prefix.values())})


@cache
def default_price_table() -> PriceTable:
    """The published prices from ``prices.yaml``."""
    return PriceTable.model_validate(yaml.safe_load(PRICES_FILE.read_text(encoding="utf-8")))


def cost_usd(usage: Usage, model: str, batch: bool, prices: PriceTable | None = None) -> float:
    """The cost of ``usage`` on ``model``, through Message Batches (``batch``) or synchronously."""
    table = prices or default_price_table()
    price = table.price_for(model)
    cache_5m = usage.cache_creation_input_tokens - usage.cache_creation_1h_input_tokens
    input_equivalent = (
        usage.input_tokens
        + cache_5m * table.cache_write_5m_multiplier
        + usage.cache_creation_1h_input_tokens * table.cache_write_1h_multiplier
        + usage.cache_read_input_tokens * table.cache_read_multiplier
    )
    standard = (
        input_equivalent * price.input_per_mtok + usage.output_tokens * price.output_per_mtok
    ) * _PER_TOKEN
    return standard * table.batch_discount if batch else standard


class RunCost(BaseModel):
    """A run's actual cost and the all-synchronous counterfactual for the same tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actual_usd: float
    all_sync_usd: float

    @property
    def saving_usd(self) -> float:
        return self.all_sync_usd - self.actual_usd


def run_cost(batch_usage: Usage, sync_usage: Usage, model: str, prices: PriceTable | None = None) -> RunCost:
    """Actual = batch tokens at the batch price + sync tokens (sample, near-deadline) at full price.

    The counterfactual prices every token synchronously; it keeps the same cache counts, which is
    what the same requests sent one by one would see with the same cached prefix.
    """
    return RunCost(
        actual_usd=cost_usd(batch_usage, model, batch=True, prices=prices)
        + cost_usd(sync_usage, model, batch=False, prices=prices),
        all_sync_usd=cost_usd(batch_usage + sync_usage, model, batch=False, prices=prices),
    )


class SampleCostFacts(BaseModel):
    """What the sample's answers tell about the cost of one request, and what the sample cost.

    :param usage: the billed tokens of every sampled request that was answered.
    :param answered: sampled requests answered (valid or not: both are billed).
    :param invalid: answered requests whose answer was not a valid output (a repair round resends them).
    :param published: valid answers published as the run's outputs (their records are not resent).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    usage: Usage
    answered: int = Field(gt=0)
    invalid: int = Field(default=0, ge=0)
    published: int = Field(default=0, ge=0)


class BulkEstimate(BaseModel):
    """A run's foreseen cost: the sample as paid, the rest from the sample's real usage per request.

    :param to_send: requests the bulk will send (the input less the sample's published answers).
    :param per_request: the sample's mean usage per answered request.
    :param cache_writes: prefix writes foreseen (one per shard: a batch may run after the cache expired).
    :param repairs: answers foreseen invalid (the sample's share), each resent once.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_usd: float
    bulk_usd: float
    to_send: int
    per_request: Usage
    cache_writes: int
    repairs: int

    @property
    def estimated_usd(self) -> float:
        return self.sample_usd + self.bulk_usd


SHAPE_MARGIN = 0.1
"""How far beyond the sampled sizes a record still counts as the sample's shape (10 %)."""


class InputShape:
    """Uncached input tokens of the records to send, foreseen from the sample's records.

    A record's size is the length of its text fields. The sample's records give sizes with their
    billed uncached input tokens, and a line through them (least squares) gives any record's tokens
    from its size, within the sizes the sample covered. A record outside them is not the sample's
    shape: its tokens are counted (``count_tokens``) rather than extrapolated.
    """

    def __init__(self, sampled: Iterable[tuple[int, int]]) -> None:
        points = list(sampled)
        if not points:
            raise ValueError("the shape of the input needs at least one sampled record")
        sizes = [size for size, _ in points]
        self.smallest, self.largest = min(sizes), max(sizes)
        tokens = [n for _, n in points]
        if self.smallest == self.largest:
            self._slope, self._intercept = 0.0, sum(tokens) / len(tokens)
        else:
            self._slope, self._intercept = statistics.linear_regression(sizes, tokens)

    def covers(self, size: int) -> bool:
        """Within the sampled sizes, give or take ``SHAPE_MARGIN``."""
        return self.smallest * (1 - SHAPE_MARGIN) <= size <= self.largest * (1 + SHAPE_MARGIN)

    def tokens(self, size: int) -> float:
        """Uncached input tokens of a record of ``size`` (extrapolated outside the sampled sizes)."""
        return max(self._intercept + self._slope * size, 0.0)


def estimate_run_cost(
    sample: SampleCostFacts,
    volume: int,
    bulk_input_tokens: int,
    shards: int,
    model: str,
    batch: bool,
    cache_ttl: str = "5m",
    prices: PriceTable | None = None,
) -> BulkEstimate:
    """The run's cost foreseen from the sample's own answers, priced for the route.

    :param bulk_input_tokens: uncached input tokens of the records still to send (``InputShape``).

    Each request of the bulk has the sample's mean output and reads the shared prefix (the sample's
    cache writes and reads per request) from the cache the sample warmed; each shard may have to
    write it once more. Invalid answers are resent once, at the sample's rate. The sample itself is
    counted as paid (synchronously, at the standard price).
    """
    n = sample.answered
    mean = sample.usage
    prefix = (mean.cache_creation_input_tokens + mean.cache_read_input_tokens) / n
    to_send = max(volume - sample.published, 0)
    per_request = Usage(
        input_tokens=round(bulk_input_tokens / to_send) if to_send else 0,
        output_tokens=round(mean.output_tokens / n),
        cache_read_input_tokens=round(prefix),
    )
    repairs = round(to_send * sample.invalid / n)
    sends = to_send + repairs
    cache_writes = min(shards, sends) if prefix else 0
    one_hour = cache_ttl == "1h"
    repaired_input = round(per_request.input_tokens * repairs)
    bulk = Usage(
        input_tokens=bulk_input_tokens + repaired_input,
        output_tokens=per_request.output_tokens * sends,
        cache_read_input_tokens=per_request.cache_read_input_tokens * (sends - cache_writes),
        cache_creation_input_tokens=round(prefix) * cache_writes,
        cache_creation_1h_input_tokens=round(prefix) * cache_writes if one_hour else 0,
    )
    return BulkEstimate(
        sample_usd=cost_usd(sample.usage, model, batch=False, prices=prices),
        bulk_usd=cost_usd(bulk, model, batch=batch, prices=prices) if sends else 0.0,
        to_send=to_send,
        per_request=per_request,
        cache_writes=cache_writes,
        repairs=repairs,
    )
