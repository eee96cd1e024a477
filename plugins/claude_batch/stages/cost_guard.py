"""The cost guard's estimate: what the cost guard stage returns, and what the sample report and
publish read back."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from claude_batch.strategy.report import Lever
from claude_batch.strategy.routing import Route
from claude_batch.strategy.usage import Usage


class CostEstimate(BaseModel):
    """The foreseen cost of a run and how it was worked out; publish sets it against the actual.

    :param sample_usd: what the sample cost (paid, standard price).
    :param to_send: requests the bulk will send (the input less the sample's published answers).
    :param per_request: the sample's mean billed tokens per answered request.
    :param repairs: answers foreseen invalid at the sample's rate, each resent once.
    :param counted: requests outside the sample's sizes whose input was counted with count_tokens.
    :param extrapolated: requests outside the sample's sizes extrapolated (over the count limit, or
        a connection without count_tokens).
    :param records_chunked: records too large for one request, priced as the chunks shard cuts
        (each chunk a request: the cached prefix, its part of the text, an answer).
    :param chunks: their chunk requests (in ``to_send``).
    """

    model_config = ConfigDict(extra="forbid")

    estimated_usd: float
    sample_usd: float
    volume: int
    sampled: int
    from_sample: int
    to_send: int
    per_request: Usage
    repairs: int
    cache_writes: int
    counted: int = 0
    extrapolated: int = 0
    records_chunked: int = 0
    chunks: int = 0
    route: Route
    budget_usd: float | None
    action: str | None

    @property
    def over_budget(self) -> bool:
        return self.budget_usd is not None and self.estimated_usd > self.budget_usd

    def describe(self) -> str:
        budget = (
            f"budget ${self.budget_usd:,.2f} ({self.action})" if self.budget_usd is not None else "no budget"
        )
        tokens = self.per_request
        chunked = (
            f"{self.records_chunked} records too large for one request as {self.chunks} chunk requests; "
            if self.records_chunked
            else ""
        )
        return (
            f"${self.estimated_usd:,.4f} = the sample's ${self.sample_usd:,.4f} ({self.sampled} answers, "
            f"{self.from_sample} published) + {self.to_send} requests by {self.route.value} "
            f"(+{self.repairs} repairs) at the sample's usage per request: {tokens.input_tokens:,} input, "
            f"{tokens.output_tokens:,} output, {tokens.cache_read_input_tokens:,} cached prefix read "
            f"({self.cache_writes} prefix writes); {chunked}input by request size against the sample's, "
            f"{self.counted} requests outside its sizes counted, {self.extrapolated} extrapolated; {budget}"
        )


def estimate_lever(estimate: dict, actual_usd: float) -> Lever:
    """The cost guard's lever in the run report: the estimate set against what the run cost."""
    guard = CostEstimate.model_validate(estimate)
    error = f"{(guard.estimated_usd - actual_usd) / actual_usd:+.1%} of the actual; " if actual_usd else ""
    return Lever(
        lever="cost guard",
        value=f"estimated ${guard.estimated_usd:,.4f}, actual ${actual_usd:,.4f}",
        rationale=error + guard.describe(),
    )
