"""Between the sample and the shards: foresee the run's cost and stop it before the bulk spend."""

from __future__ import annotations

import heapq
import json
import math
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from airflow.sdk import BaseOperator, Context, ObjectStoragePath
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from pydantic import BaseModel

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
from claude_batch.strategy.sharding import requests_to_send
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


@dataclass(frozen=True, slots=True)
class _Request:
    """A request the bulk will send: a record whole, or the text ``span`` of its chunked field (one
    chunk, its text cut out only when counted, so a kept chunk holds no copy of it)."""

    record: BaseModel
    span: tuple[int, int] | None = None

    def sent_record(self, spec: WorkloadSpec) -> BaseModel:
        if self.span is None:
            return self.record
        assert spec.chunking is not None and spec.chunking.field is not None
        text = getattr(self.record, spec.chunking.field)
        return self.record.model_copy(update={spec.chunking.field: text[self.span[0] : self.span[1]]})


@dataclass(frozen=True, slots=True)
class BulkInput:
    """The uncached input of the requests still to send, foreseen from the sample's shape.

    :param requests: requests to send: a record sent whole is one, a chunked record one per chunk.
    :param counted: requests outside the sample's sizes counted with count_tokens.
    :param extrapolated: requests outside them extrapolated (over ``MAX_COUNTED``, or no count_tokens).
    :param records_chunked: records too large for one request, sent as chunks (shard's split).
    :param chunks: their chunk requests (in ``requests``).
    :param chunk_bytes: bytes of the chunks' request lines, for the shards they take.
    """

    tokens: int
    requests: int
    counted: int
    extrapolated: int
    records_chunked: int = 0
    chunks: int = 0
    chunk_bytes: int = 0


class _Extremes:
    """The ``keep`` smallest and the ``keep`` largest requests seen: those that may lie outside the
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
        """(size, request) of each kept request the shape does not cover."""
        found = {seen: (abs(key), record) for heap in self._heaps for key, seen, record in heap}
        return [(size, record) for size, record in found.values() if not shape.covers(size)]


def bulk_input_tokens(
    spec: WorkloadSpec,
    run: RunContext,
    sampled_tokens: dict[str, int],
    published: set[str],
    prefix_tokens: float,
    count: Callable[[dict[str, Any]], int | None] | None,
) -> BulkInput:
    """Uncached input tokens of the requests still to send, from their sizes against the sample's shape.

    A record too large for one request is sent as the chunks shard cuts: each chunk is a request of
    its own size (the record's text fields with its part of the chunked one), foreseen like any
    request, and counted with ``count`` when it lies outside the sample's sizes, as a chunk mostly does.
    Requests outside the shape are counted with ``count`` up to ``MAX_COUNTED``, the rest extrapolated
    (all of them when ``count`` is None on this connection; and each one too long for the model to
    count, which recovery will split into parts holding the same text).
    """
    sampled: list[tuple[int, int]] = []
    sizes = array("q")  # eight bytes a request: 80 MB for ten million
    extremes = _Extremes(MAX_COUNTED // 2)
    records_chunked = chunk_count = chunk_bytes = 0
    for item, chunks in requests_to_send(spec, read_input(spec, run.input_uri), run.run_date):
        size = sum(len(str(getattr(item.record, field))) for field in spec.text_fields)
        if chunks is not None:
            assert spec.chunking is not None and spec.chunking.field is not None
            # The record's text fields with the chunked one holding only the chunk's part.
            frame = size - len(getattr(item.record, spec.chunking.field))
            for chunk in chunks:
                chunk_size = frame + chunk.text_end - chunk.text_start
                sizes.append(chunk_size)
                extremes.add(chunk_size, _Request(item.record, (chunk.text_start, chunk.text_end)))
                chunk_bytes += len(chunk.line)
            records_chunked += 1
            chunk_count += len(chunks)
            continue
        if item.custom_id in sampled_tokens:
            sampled.append((size, sampled_tokens[item.custom_id]))
        if item.custom_id not in published:
            sizes.append(size)
            extremes.add(size, _Request(item.record))
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
        for size, request in extremes.outside(shape):
            sent = builder.params(request.sent_record(spec))
            params = {k: v for k, v in sent.items() if k in COUNT_TOKENS_PARAMS}
            exact = count(params)
            if exact is None:
                continue
            tokens += max(exact - prefix_tokens, 0) - shape.tokens(size)
            counted += 1
    return BulkInput(
        tokens=round(tokens),
        requests=len(sizes),
        counted=counted,
        extrapolated=outside - counted,
        records_chunked=records_chunked,
        chunks=chunk_count,
        chunk_bytes=chunk_bytes,
    )


def _shards_foreseen(run: RunContext, spec: WorkloadSpec, bulk: BulkInput) -> int:
    """Shards the bulk will be cut into, from the sample's mean request size (the chunks' own
    sizes for chunks) and the spec's targets."""
    sizes = [len(line) for line in jsonl_lines([run.layout.sample_requests])]
    mean_bytes = sum(sizes) / len(sizes) if sizes else 0
    by_count = math.ceil(bulk.requests / spec.sharding.target_requests)
    request_bytes = (bulk.requests - bulk.chunks) * mean_bytes + bulk.chunk_bytes
    by_bytes = math.ceil(request_bytes / int(spec.sharding.target_bytes))
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

    def _counter(self) -> Callable[[dict[str, Any]], int | None] | None:
        """count_tokens on this connection, or None where it is not served (Bedrock, Vertex, Foundry).
        The counter answers None for a prompt the API finds too long for the model."""
        hook = claude_hook(self.conn_id)
        if not hook.first_party:
            return None
        import anthropic  # imported with the hook above

        from claude_batch.hooks.claude import refused_as_too_long

        client = hook.get_conn().with_options(max_retries=COUNT_RETRIES)

        def count(params: dict[str, Any]) -> int | None:
            try:
                return client.messages.count_tokens(**params).input_tokens
            except (anthropic.APIConnectionError, anthropic.APIStatusError) as error:
                if refused_as_too_long(error):
                    return None
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
        bulk_input = bulk_input_tokens(
            spec, run, sampled_tokens, sample_answers(run), prefix, self._counter()
        )
        bulk = estimate_run_cost(
            facts,
            bulk_input.requests + facts.published,
            bulk_input.tokens,
            _shards_foreseen(run, spec, bulk_input),
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
            counted=bulk_input.counted,
            extrapolated=bulk_input.extrapolated,
            records_chunked=bulk_input.records_chunked,
            chunks=bulk_input.chunks,
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
