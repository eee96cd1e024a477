"""Between the sample and the shards: foresee the run's cost and stop it before the bulk spend."""

from __future__ import annotations

import heapq
import json
import math
from array import array
from collections.abc import Callable, Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context, ObjectStoragePath
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from claude_batch.hooks import claude_hook
from claude_batch.stages.approval import ApprovalGate
from claude_batch.stages.cost_guard import CostEstimate
from claude_batch.stages.run import RunContext, read_input
from claude_batch.stages.shard import sample_answers
from claude_batch.strategy.cost import InputShape, SampleCostFacts, estimate_run_cost
from claude_batch.strategy.gates import RunMode, budget_evidence, decision_deadline
from claude_batch.strategy.lines import jsonl_lines
from claude_batch.strategy.outputs import message_text, parse_output
from claude_batch.strategy.requests import request_builder
from claude_batch.strategy.routing import Route
from claude_batch.strategy.sharding import valid_records
from claude_batch.strategy.spec import BudgetSpec, WorkloadSpec
from claude_batch.strategy.usage import Usage

# Records outside the sample's shape counted exactly (count_tokens is free; this bounds the time it
# takes); the rest are extrapolated from the sample, and the estimate says how many.
MAX_COUNTED = 400
# The SDK's retries per count_tokens call (it honours retry-after).
COUNT_RETRIES = 6
# What count_tokens takes of a request's params (no max_tokens, no sampling parameters).
COUNT_TOKENS_PARAMS = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "output_config", "cache_control"}
)


def sample_cost_facts(spec: WorkloadSpec, sample: dict) -> tuple[SampleCostFacts, dict[str, int]] | None:
    """The sample's billed usage and answers, from its result files, with each answered request's
    uncached input tokens by custom_id (None when nothing was answered)."""
    usage, invalid = Usage(), 0
    input_tokens: dict[str, int] = {}
    output_model = spec.output_model()
    for line in jsonl_lines([ObjectStoragePath(part) for part in sample["results"]]):
        data = json.loads(line)
        result = data["result"]
        if result["type"] != "succeeded" or data["custom_id"] in input_tokens:
            continue
        billed = Usage.from_message(result["message"])
        input_tokens[data["custom_id"]] = billed.input_tokens
        usage = usage + billed
        if parse_output(message_text(result["message"]), output_model).value is None:
            invalid += 1
    if not input_tokens:
        return None
    facts = SampleCostFacts(
        usage=usage, answered=len(input_tokens), invalid=invalid, published=sample.get("answered", 0)
    )
    return facts, input_tokens


class _Extremes:
    """The ``keep`` smallest and the ``keep`` largest records seen: those that may lie outside the
    sample's shape, kept to be counted (memory stays bounded whatever the input)."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._heaps: tuple[list[tuple[int, int, Any]], list[tuple[int, int, Any]]] = ([], [])
        self._seen = 0

    def add(self, size: int, record: Any) -> None:
        self._seen += 1
        for heap, key in zip(self._heaps, (size, -size), strict=True):
            if len(heap) < self._keep:
                heapq.heappush(heap, (key, self._seen, record))
            elif key > heap[0][0]:
                heapq.heapreplace(heap, (key, self._seen, record))

    def outside(self, shape: InputShape) -> list[tuple[int, Any]]:
        """(size, record) of each kept record the shape does not cover."""
        found = {seen: (abs(key), record) for heap in self._heaps for key, seen, record in heap}
        return [(size, record) for size, record in found.values() if not shape.covers(size)]


def bulk_input_tokens(
    spec: WorkloadSpec,
    run: RunContext,
    sampled_tokens: dict[str, int],
    published: set[str],
    prefix_tokens: float,
    count: Callable[[dict[str, Any]], int] | None,
) -> tuple[int, int, int, int]:
    """Uncached input tokens of the records still to send, from their sizes against the sample's shape.

    Returns (tokens, records to send, records outside the shape counted with ``count``, records
    outside it extrapolated: over ``MAX_COUNTED``, or ``count`` is None on this connection).
    """
    sampled: list[tuple[int, int]] = []
    sizes = array("q")  # eight bytes a record: 80 MB for ten million
    extremes = _Extremes(MAX_COUNTED // 2)
    for item in valid_records(spec, read_input(spec, run.input_uri), run.run_date):
        size = sum(len(str(getattr(item.record, field))) for field in spec.text_fields)
        if item.custom_id in sampled_tokens:
            sampled.append((size, sampled_tokens[item.custom_id]))
        if item.custom_id not in published:
            sizes.append(size)
            extremes.add(size, item.record)
    if not sampled:
        raise AirflowFailException(
            f"None of the sample's records of {spec.name} is in the input {run.input_uri} any more: it "
            "changed since the sample. Clear sample_validate to sample it again."
        )
    shape = InputShape(sampled)
    tokens = sum(shape.tokens(size) for size in sizes)
    outside = sum(1 for size in sizes if not shape.covers(size))
    counted = 0
    if count is not None:
        builder = request_builder(spec)
        for size, record in extremes.outside(shape):
            params = {k: v for k, v in builder.params(record).items() if k in COUNT_TOKENS_PARAMS}
            tokens += max(count(params) - prefix_tokens, 0) - shape.tokens(size)
            counted += 1
    return round(tokens), len(sizes), counted, outside - counted


def _shards_foreseen(run: RunContext, spec: WorkloadSpec, to_send: int) -> int:
    """Shards the bulk will be cut into, from the sample's mean request size and the spec's targets."""
    sizes = [len(line) for line in jsonl_lines([run.layout.sample_requests])]
    mean_bytes = sum(sizes) / len(sizes) if sizes else 0
    by_count = math.ceil(to_send / spec.sharding.target_requests)
    by_bytes = math.ceil(to_send * mean_bytes / int(spec.sharding.target_bytes))
    return max(by_count, by_bytes, 1)


class CostGuardOperator(ApprovalGate, BaseOperator):
    """Estimate the run's cost from the sample's own answers and compare it with the spec's ``budget``.

    The sample was paid for and answered with the run's real prompts: its billed tokens are what the
    other requests will cost, priced for the route chosen. Uncached input goes by each record's size
    (its text fields) along the line through the sample's records; a record outside the sizes the
    sample covered is counted with count_tokens instead. Output is the sample's mean, the shared
    prefix is read from the cache the sample warmed (one write per shard foreseen), and the sample's
    share of invalid answers is resent once. The sample's published answers
    are not sent again. Over budget with ``action: fail`` fails this task before any batch exists;
    ``warn`` logs and goes on; ``approve`` waits for an on-call person. In ``sample_only`` mode the
    budget is reported, never enforced. The estimate is this task's return value, for publish to set
    against the actual cost.

    :param run: the route stage's run context.
    :param sample: the sample stage's return value (its result files and published answers).
    :param budget: the spec's ``budget`` as the DAG was built with it (``{usd, action}``), or None.
    :param conn_id: Airflow connection of type ``anthropic`` (count_tokens for records outside the
        sample's sizes; none on a connection that does not serve it).
    :param mode: ``full`` or ``sample_only`` (the DAG Param).
    """

    template_fields: Sequence[str] = ("run", "sample", "mode")

    def __init__(
        self,
        *,
        run: Any,
        sample: Any,
        budget: dict[str, Any] | None,
        conn_id: str = "anthropic_default",
        mode: str = RunMode.FULL,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.run = run
        self.sample = sample
        self.budget = budget
        self.conn_id = conn_id
        self.mode = mode

    def _counter(self) -> Callable[[dict[str, Any]], int] | None:
        """count_tokens on this connection, or None where it is not served (Bedrock, Vertex, Foundry)."""
        hook = claude_hook(self.conn_id)
        if not hook.first_party:
            return None
        import anthropic  # imported with the hook above

        client = hook.get_conn().with_options(max_retries=COUNT_RETRIES)

        def count(params: dict[str, Any]) -> int:
            try:
                return client.messages.count_tokens(**params).input_tokens
            except (anthropic.APIConnectionError, anthropic.APIStatusError) as error:
                raise AirflowException(
                    f"count_tokens failed after its retries; retry this task: {error}"
                ) from error

        return count

    def execute(self, context: Context) -> dict:
        run = RunContext.of(self.run)
        spec = run.spec()
        budget = BudgetSpec.model_validate(self.budget) if self.budget else None
        if not self.sample["sample_size"]:
            self.log.info("Cost estimate: $0, the input %s has no record that can be sent", run.input_uri)
            return CostEstimate(
                estimated_usd=0.0,
                sample_usd=0.0,
                volume=run.input_count,
                sampled=0,
                from_sample=0,
                to_send=0,
                per_request=Usage(),
                repairs=0,
                cache_writes=0,
                route=run.route,
                budget_usd=budget.usd if budget else None,
                action=budget.action if budget else None,
            ).model_dump(mode="json")
        answers = sample_cost_facts(spec, self.sample)
        if answers is None:
            raise AirflowFailException(
                f"No sample request of {spec.name} was answered, so the run's cost cannot be foreseen; "
                "see sample_validate's log, then clear sample_validate."
            )
        facts, sampled_tokens = answers
        prefix = (
            facts.usage.cache_creation_input_tokens + facts.usage.cache_read_input_tokens
        ) / facts.answered
        input_tokens, to_send, counted, extrapolated = bulk_input_tokens(
            spec, run, sampled_tokens, sample_answers(run), prefix, self._counter()
        )
        bulk = estimate_run_cost(
            facts,
            to_send + facts.published,
            input_tokens,
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
            counted=counted,
            extrapolated=extrapolated,
            route=run.route,
            budget_usd=budget.usd if budget else None,
            action=budget.action if budget else None,
        )
        self.log.info("Cost estimate: %s", estimate.describe())
        if estimate.over_budget and RunMode(self.mode) is RunMode.SAMPLE_ONLY:
            self.log.warning("Over budget; reported, not enforced, in sample_only mode")
            return estimate.model_dump(mode="json")
        if estimate.over_budget and estimate.action == "approve":
            assert estimate.budget_usd is not None  # over_budget implies a budget
            self.wait_for_approval(
                context,
                subject=f"Over budget for {spec.name} on {run.run_date}: about "
                f"${estimate.estimated_usd:,.2f} against ${estimate.budget_usd:,.2f}",
                body=budget_evidence(
                    spec.name, run.run_date, estimate.estimated_usd, estimate.budget_usd, estimate.describe()
                ),
                decide_by=decision_deadline(run.deadline, run.route, run.input_count, spec.routing),
                outcome=estimate.model_dump(mode="json"),
            )
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
