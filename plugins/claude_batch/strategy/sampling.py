"""Sampling: a small representative sample answered synchronously, and the gate it must pass.

The sample is stratified over one declared field (the loan product, the document's department), so
a prompt that fails for one kind of record is caught before the bulk spend even when that kind is
rare. Its size moves with what is already known: a prompt fingerprint that passed before needs less
proof than a new one.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from claude_batch.strategy.outputs import parse_output
from claude_batch.strategy.sharding import ValidRecord
from claude_batch.strategy.spec import Expectation, WorkloadSpec

MIN_SAMPLE = 30
MAX_SAMPLE = 100


def sample_size(
    spec: WorkloadSpec, already_validated: bool, input_count: int | None = None, forced: int = 0
) -> int:
    """Half the spec's size for a fingerprint that passed before, double for a new one, within 30..100.

    ``forced`` (the run's ``sample_size``; 0: not forced) replaces that choice and is held within
    30..100 too: a smaller sample says little about a pass rate. Never more than ``input_count`` (a
    run of 12 records samples 12).
    """
    size = forced or (spec.sample.size // 2 if already_validated else spec.sample.size * 2)
    size = max(MIN_SAMPLE, min(MAX_SAMPLE, size))
    return size if input_count is None else min(size, input_count)


def _allocate(counts: Mapping[str, int], size: int) -> dict[str, int]:
    """Records per stratum: one for each (largest strata first, while the size lasts), the rest in
    proportion to the strata's sizes."""
    total = sum(counts.values())
    size = min(size, total)
    order = sorted(counts, key=lambda s: (-counts[s], s))
    allocation = {s: 0 for s in order}
    for stratum in order[:size]:
        allocation[stratum] = 1
    rank = {s: i for i, s in enumerate(order)}
    for _ in range(size - sum(allocation.values())):
        open_strata = [s for s in order if allocation[s] < counts[s]]
        neediest = max(open_strata, key=lambda s: (counts[s] * size / total - allocation[s], -rank[s]))
        allocation[neediest] += 1
    return allocation


def select_sample(
    records: Iterable[ValidRecord], size: int, stratify_by: str | None, seed: int
) -> list[ValidRecord]:
    """A deterministic stratified sample in one streaming pass, returned in input order.

    ``records`` are typically ``sharding.valid_records(spec, reads, run_date)``: only records the
    bulk run would send are worth validating the prompt on.

    Each record draws a priority from ``random.Random(seed)`` in input order; each stratum keeps its
    ``size`` lowest-priority records in a heap (memory O(size x strata), and strata are a
    low-cardinality field by design); at the end every stratum gets its share of ``size`` and
    contributes its lowest-priority records. Same input, same seed: same sample.
    """
    if size <= 0:
        return []
    rng = random.Random(seed)
    kept: dict[str, list[tuple[float, int, ValidRecord]]] = {}
    counts: Counter[str] = Counter()
    for arrival, item in enumerate(records):
        stratum = "" if stratify_by is None else str(getattr(item.record, stratify_by))
        counts[stratum] += 1
        priority = rng.random()
        heap = kept.setdefault(stratum, [])
        # A max-heap by priority (negated) holding the lowest priorities seen so far.
        if len(heap) < size:
            heapq.heappush(heap, (-priority, arrival, item))
        elif -heap[0][0] > priority:
            heapq.heapreplace(heap, (-priority, arrival, item))
    chosen: list[tuple[int, ValidRecord]] = []
    for stratum, share in _allocate(counts, size).items():
        lowest = sorted(kept[stratum], key=lambda entry: -entry[0])[:share]
        chosen.extend((arrival, item) for _, arrival, item in lowest)
    return [item for _, item in sorted(chosen, key=lambda pair: pair[0])]


class SampleOutcome(BaseModel):
    """One sampled request and what came back.

    :param record: the input record's fields (for ``equals_input_field`` expectations).
    :param text: the answer's text, when the call succeeded.
    :param error: why there is no answer, when the call failed.
    """

    model_config = ConfigDict(extra="forbid")

    custom_id: str
    record: dict[str, Any]
    text: str | None = None
    error: str | None = None


class SampleFailure(BaseModel):
    model_config = ConfigDict(extra="forbid")

    custom_id: str
    reason: str


class GateResult(BaseModel):
    """Whether the sample passed the gate, and the failing examples for the log."""

    model_config = ConfigDict(extra="forbid")

    passed: bool
    pass_rate: float = Field(ge=0, le=1)
    n: int
    valid: int
    pass_gate: float
    failures: list[SampleFailure]

    def summary_lines(self) -> list[str]:
        verdict = "pass" if self.passed else "FAIL: the bulk run is stopped before it spends"
        rate = f"{self.valid}/{self.n} valid ({self.pass_rate:.1%})"
        lines = [f"sample gate: {rate}, gate {self.pass_gate:.0%}: {verdict}"]
        lines += [f"  {failure.custom_id}: {failure.reason}" for failure in self.failures]
        return lines


def _unmet_expectation(
    output: BaseModel, record: Mapping[str, Any], expectations: Sequence[Expectation]
) -> str | None:
    for expectation in expectations:
        value = getattr(output, expectation.field)
        if expectation.equals_input_field is not None:
            wanted = record.get(expectation.equals_input_field)
            if value != wanted:
                source = expectation.equals_input_field
                return f"{expectation.field} is {value!r} but the input's {source} is {wanted!r}"
        if expectation.one_of is not None and value not in expectation.one_of:
            return f"{expectation.field} is {value!r}, not one of {expectation.one_of}"
    return None


def evaluate_sample(
    outcomes: Iterable[SampleOutcome],
    output_model: type[BaseModel],
    pass_gate: float,
    expectations: Sequence[Expectation] = (),
) -> GateResult:
    """Validate each answer against ``output_model`` and the expectations; pass when the valid share
    reaches ``pass_gate``. An empty sample does not pass: there is no evidence."""
    n = 0
    failures: list[SampleFailure] = []
    for outcome in outcomes:
        n += 1
        if outcome.text is None:
            reason = f"no answer: {outcome.error or 'the call failed'}"
        else:
            parsed = parse_output(outcome.text, output_model)
            if parsed.value is None:
                reason = parsed.problem
            else:
                reason = _unmet_expectation(parsed.value, outcome.record, expectations)
        if reason is not None:
            failures.append(SampleFailure(custom_id=outcome.custom_id, reason=reason))
    valid = n - len(failures)
    pass_rate = valid / n if n else 0.0
    return GateResult(
        passed=n > 0 and pass_rate >= pass_gate,
        pass_rate=pass_rate,
        n=n,
        valid=valid,
        pass_gate=pass_gate,
        failures=failures,
    )
