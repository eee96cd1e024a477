"""Between the sample and the shards: foresee the run's cost and stop it before the bulk spend."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import anthropic
from airflow.sdk import BaseOperator, ObjectStoragePath
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from pydantic import BaseModel, ConfigDict

from claude_batch.hooks.claude import ClaudeBatchHook
from claude_batch.operators.run import RunContext, read_lines
from claude_batch.strategy.cost import Usage, projected_cost_usd
from claude_batch.strategy.report import Lever
from claude_batch.strategy.routing import Route
from claude_batch.strategy.spec import BudgetSpec

# The SDK's retries per count_tokens call (it honours retry-after); the default 2 lets one call in a
# hundred-request sample fail the task at a few percent of 429/529/500s.
COUNT_RETRIES = 6


class CostEstimate(BaseModel):
    """The foreseen cost of a run's bulk and how it was worked out; publish sets it against the actual.

    :param input_tokens_per_request: mean of ``count_tokens`` over the sample's requests.
    :param output_tokens_per_request: mean output of the sample's succeeded answers.
    """

    model_config = ConfigDict(extra="forbid")

    estimated_usd: float
    volume: int
    sampled: int
    input_tokens_per_request: float
    output_tokens_per_request: float
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
        return (
            f"${self.estimated_usd:,.4f} for {self.volume} requests by {self.route.value} "
            f"({self.input_tokens_per_request:,.0f} input tokens per request by count_tokens on "
            f"{self.sampled} sampled requests, {self.output_tokens_per_request:,.0f} output tokens per "
            f"answer in the sample); {budget}"
        )


def estimate_lever(estimate: dict, actual_usd: float) -> Lever:
    """The cost guard's lever in the run report: the estimate set against what the run cost."""
    guard = CostEstimate.model_validate(estimate)
    return Lever(
        lever="cost guard",
        value=f"estimated ${guard.estimated_usd:,.4f}, actual ${actual_usd:,.4f}",
        rationale=guard.describe(),
    )


class CostGuardOperator(BaseOperator):
    """Estimate the run's cost from the sample and compare it with the spec's ``budget``.

    Input tokens come from the API's ``count_tokens`` on the sampled requests (free, and exact for
    the prompt as sent), output tokens from the sample's answers; both are scaled to the input volume
    and priced for the route chosen. Prompt caching is left out, so the estimate errs high. Over
    budget with ``action: fail`` fails this task before any batch exists; ``warn`` logs and goes on.
    The estimate is this task's return value, for publish to set against the actual cost.

    :param run: the route stage's run context.
    :param sample: the sample stage's return value (its result files).
    :param budget: the spec's ``budget`` as the DAG was built with it (``{usd, action}``), or None.
    :param conn_id: Airflow connection of type ``anthropic``.
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
        if not self.sample["sample_size"]:
            self.log.info("Cost estimate: $0, the input %s has no record that can be sent", run.input_uri)
            return CostEstimate(
                estimated_usd=0.0,
                volume=0,
                sampled=0,
                input_tokens_per_request=0.0,
                output_tokens_per_request=0.0,
                route=run.route,
                budget_usd=budget.usd if budget else None,
                action=budget.action if budget else None,
            ).model_dump(mode="json")
        # An estimate: a count that still fails after the retries is left out rather than stopping the run.
        client = ClaudeBatchHook(conn_id=self.conn_id).get_conn().with_options(max_retries=COUNT_RETRIES)
        counted, sampled = 0, 0
        for line in read_lines([run.path("sample", "requests.jsonl")]):
            params = json.loads(line)["params"]
            params.pop("max_tokens", None)  # count_tokens takes the prompt, not the answer's limit
            try:
                counted += client.messages.count_tokens(**params).input_tokens
            except (anthropic.APIConnectionError, anthropic.APIStatusError) as error:
                self.log.warning("count_tokens failed for one sample request, left out: %s", error)
                continue
            sampled += 1
        if not sampled:
            raise AirflowException("count_tokens failed for every sample request; retry this task")
        answered, output_tokens = 0, 0
        for line in read_lines([ObjectStoragePath(part) for part in self.sample["results"]]):
            result = json.loads(line)["result"]
            if result["type"] == "succeeded":
                answered += 1
                output_tokens += (result["message"].get("usage") or {}).get("output_tokens") or 0
        per_output = output_tokens / answered if answered else float(spec.max_tokens)
        sample_usage = Usage(input_tokens=counted, output_tokens=round(per_output * sampled))
        estimate = CostEstimate(
            estimated_usd=projected_cost_usd(
                sample_usage,
                sampled,
                run.input_count,
                spec.model,
                run.route is Route.BATCH,
                spec.price_table(),
            ),
            volume=run.input_count,
            sampled=sampled,
            input_tokens_per_request=counted / sampled,
            output_tokens_per_request=per_output,
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
