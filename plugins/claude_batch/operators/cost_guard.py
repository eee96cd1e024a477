"""Between the sample and the shards: foresee the run's cost and stop it before the bulk spend."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException
from pydantic import BaseModel, ConfigDict

from claude_batch.operators.run import RunContext, read_lines
from claude_batch.strategy.cost import SampleCostFacts, Usage, estimate_run_cost
from claude_batch.strategy.outputs import message_text, parse_output
from claude_batch.strategy.report import Lever
from claude_batch.strategy.routing import Route
from claude_batch.strategy.spec import BudgetSpec, WorkloadSpec


class CostEstimate(BaseModel):
    """The foreseen cost of a run and how it was worked out; publish sets it against the actual.

    :param sample_usd: what the sample cost (paid, standard price).
    :param to_send: requests the bulk will send (the input less the sample's published answers).
    :param per_request: the sample's mean billed tokens per answered request.
    :param repairs: answers foreseen invalid at the sample's rate, each resent once.
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
        return (
            f"${self.estimated_usd:,.4f} = the sample's ${self.sample_usd:,.4f} ({self.sampled} answers, "
            f"{self.from_sample} published) + {self.to_send} requests by {self.route.value} "
            f"(+{self.repairs} repairs) at the sample's usage per request: {tokens.input_tokens:,} input, "
            f"{tokens.output_tokens:,} output, {tokens.cache_read_input_tokens:,} cached prefix read "
            f"({self.cache_writes} prefix writes); {budget}"
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


def sample_cost_facts(spec: WorkloadSpec, sample: dict) -> SampleCostFacts | None:
    """The sample's billed usage and answers, from its result files (None when nothing was answered)."""
    usage, answered, invalid = Usage(), 0, 0
    output_model = spec.output_model()
    for line in read_lines([ObjectStoragePath(part) for part in sample["results"]]):
        result = json.loads(line)["result"]
        if result["type"] != "succeeded":
            continue
        answered += 1
        usage = usage + Usage.from_api(result["message"].get("usage") or {})
        if parse_output(message_text(result["message"]), output_model).value is None:
            invalid += 1
    if not answered:
        return None
    return SampleCostFacts(
        usage=usage, answered=answered, invalid=invalid, published=sample.get("answered", 0)
    )


def _shards_foreseen(run: RunContext, spec: WorkloadSpec, to_send: int) -> int:
    """Shards the bulk will be cut into, from the sample's mean request size and the spec's targets."""
    sizes = [len(line) for line in read_lines([run.path("sample", "requests.jsonl")])]
    mean_bytes = sum(sizes) / len(sizes) if sizes else 0
    by_count = math.ceil(to_send / spec.sharding.target_requests)
    by_bytes = math.ceil(to_send * mean_bytes / int(spec.sharding.target_bytes))
    return max(by_count, by_bytes, 1)


class CostGuardOperator(BaseOperator):
    """Estimate the run's cost from the sample's own answers and compare it with the spec's ``budget``.

    The sample was paid for and answered with the run's real prompts: its billed tokens per request
    (uncached input, output, and the cached prefix) are what every other request will cost, priced
    for the route chosen, with the prefix read from the cache the sample warmed (one write per shard
    foreseen) and the sample's share of invalid answers resent once. The sample's published answers
    are not sent again. Over budget with ``action: fail`` fails this task before any batch exists;
    ``warn`` logs and goes on. The estimate is this task's return value, for publish to set against
    the actual cost.

    :param run: the route stage's run context.
    :param sample: the sample stage's return value (its result files and published answers).
    :param budget: the spec's ``budget`` as the DAG was built with it (``{usd, action}``), or None.
    :param conn_id: Airflow connection of type ``anthropic`` (unused: the estimate makes no call).
    """

    template_fields: Sequence[str] = ("run", "sample")

    def __init__(
        self,
        *,
        run: Any,
        sample: Any,
        budget: dict[str, Any] | None,
        conn_id: str = "anthropic_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.run = run
        self.sample = sample
        self.budget = budget
        self.conn_id = conn_id

    def execute(self, context: Any) -> dict:
        run = RunContext.of(self.run)
        spec = run.spec()
        budget = BudgetSpec.model_validate(self.budget) if self.budget else None
        facts = sample_cost_facts(spec, self.sample)
        if facts is None:
            raise AirflowFailException(
                f"No sample request of {spec.name} was answered, so the run's cost cannot be foreseen; "
                "see sample_validate's log, then clear sample_validate."
            )
        to_send = max(run.input_count - facts.published, 0)
        bulk = estimate_run_cost(
            facts,
            run.input_count,
            _shards_foreseen(run, spec, to_send),
            spec.model,
            run.route is Route.BATCH,
            spec.prompt.cache_ttl,
            spec.price_table(),
        )
        estimate = CostEstimate(
            estimated_usd=bulk.estimated_usd,
            sample_usd=bulk.sample_usd,
            volume=run.input_count,
            sampled=facts.answered,
            from_sample=facts.published,
            to_send=bulk.to_send,
            per_request=bulk.per_request,
            repairs=bulk.repairs,
            cache_writes=bulk.cache_writes,
            route=run.route,
            budget_usd=budget.usd if budget else None,
            action=budget.action if budget else None,
        )
        self.log.info("Cost estimate: %s", estimate.describe())
        if estimate.over_budget and estimate.action == "fail":
            raise AirflowFailException(
                f"Over budget for {spec.name}: the run would cost about ${estimate.estimated_usd:,.2f}, "
                f"over the budget of ${estimate.budget_usd:,.2f}. No batch was created. "
                f"Estimate: {estimate.describe()}. Raise budget.usd in the spec, cut the input or "
                "shorten the prompt, then clear this task."
            )
        if estimate.over_budget:
            self.log.warning(
                "Over budget (warn only): about $%.2f against $%.2f; going on as budget.action is warn",
                estimate.estimated_usd,
                estimate.budget_usd,
            )
        return estimate.model_dump(mode="json")
