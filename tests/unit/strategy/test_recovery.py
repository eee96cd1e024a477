from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_batch.strategy.manifest import read_manifest
from claude_batch.strategy.partition import FailureRecord, ResultClass, partition_results, read_failures
from claude_batch.strategy.quarantine import QuarantineClass, QuarantineEntry
from claude_batch.strategy.records import read_jsonl
from claude_batch.strategy.recovery import (
    REPAIR_INSTRUCTION,
    RecoveryAction,
    RecoveryPlan,
    SplitSource,
    plan_recovery,
    remedy_for,
    repair_request,
)
from claude_batch.strategy.sharding import ShardPlan, write_shards
from claude_batch.strategy.spec import ChunkingSpec, RecoverySpec, WorkloadSpec
from claude_workloads.loan_disclosure_review import LoanFile, LoanReview
from tests.unit.strategy.helpers import (
    ended_line,
    errored_line,
    loan,
    make_spec,
    review_json,
    succeeded_line,
    write_jsonl,
)

POLICY = RecoverySpec()


def _failure(result_class: ResultClass, kind: str | None = None, message: str = "") -> FailureRecord:
    return FailureRecord(
        custom_id="loan-1", business_key="1", result_class=result_class, error_kind=kind, message=message
    )


@pytest.mark.parametrize(
    ("failure", "action", "quarantine_class"),
    [
        (_failure(ResultClass.ERRORED, "api_error"), RecoveryAction.RETRY, None),
        (_failure(ResultClass.ERRORED, "overloaded_error"), RecoveryAction.RETRY, None),
        (_failure(ResultClass.ERRORED, "rate_limit_error"), RecoveryAction.RETRY, None),
        (_failure(ResultClass.ERRORED, "timeout_error"), RecoveryAction.RETRY, None),
        (_failure(ResultClass.EXPIRED), RecoveryAction.REQUEUE, None),
        (_failure(ResultClass.CANCELED), RecoveryAction.REQUEUE, None),
        (_failure(ResultClass.MISSING), RecoveryAction.REQUEUE, None),
        (_failure(ResultClass.INVALID_OUTPUT), RecoveryAction.REPAIR, None),
        (
            _failure(
                ResultClass.ERRORED, "invalid_request_error", "prompt is too long: 210000 tokens > 200000"
            ),
            RecoveryAction.QUARANTINE,
            QuarantineClass.CONTEXT_WINDOW,
        ),
        (
            _failure(
                ResultClass.ERRORED,
                "invalid_request_error",
                "messages: text content blocks must be non-empty",
            ),
            RecoveryAction.QUARANTINE,
            QuarantineClass.INVALID_REQUEST,
        ),
        (
            _failure(ResultClass.ERRORED, "billing_error"),
            RecoveryAction.QUARANTINE,
            QuarantineClass.RUN_LEVEL,
        ),
        (
            _failure(ResultClass.ERRORED, "authentication_error"),
            RecoveryAction.QUARANTINE,
            QuarantineClass.RUN_LEVEL,
        ),
        (
            _failure(ResultClass.ERRORED, "brand_new_error"),
            RecoveryAction.QUARANTINE,
            QuarantineClass.NOT_RETRIED,
        ),
    ],
)
def test_each_failure_gets_the_remedy_of_its_cause(
    failure: FailureRecord, action: RecoveryAction, quarantine_class: QuarantineClass | None
) -> None:
    remedy = remedy_for(failure, POLICY, round_number=0)
    assert (remedy.action, remedy.quarantine_class) == (action, quarantine_class)


CHUNKING = ChunkingSpec(merge="claude_workloads.loan_disclosure_review:merge_reviews")


def test_too_long_prompt_is_split_when_the_spec_chunks_and_never_trimmed() -> None:
    failure = _failure(ResultClass.ERRORED, "request_too_large", "too large")
    assert remedy_for(failure, POLICY, 0, CHUNKING).action is RecoveryAction.SPLIT
    remedy = remedy_for(failure, POLICY, 0)
    assert remedy.quarantine_class is QuarantineClass.CONTEXT_WINDOW
    assert "declare a chunking section" in remedy.reason
    with pytest.raises(ValueError, match="trim_oversized is retired"):
        RecoverySpec.model_validate({"trim_oversized": True})


def test_causes_the_policy_does_not_list_are_not_retried() -> None:
    remedy = remedy_for(_failure(ResultClass.EXPIRED), RecoverySpec(retry={"api_error"}), 0)
    assert remedy.quarantine_class is QuarantineClass.NOT_RETRIED
    assert "recovery.retry does not list it" in remedy.reason


def test_attempts_are_exhausted_after_max_rounds() -> None:
    failure = _failure(ResultClass.ERRORED, "api_error", "Internal error")
    assert remedy_for(failure, RecoverySpec(max_rounds=2), round_number=1).action is RecoveryAction.RETRY
    remedy = remedy_for(failure, RecoverySpec(max_rounds=2), round_number=2)
    assert remedy.quarantine_class is QuarantineClass.ATTEMPTS_EXHAUSTED
    assert remedy.reason.startswith("attempts exhausted: sent 3 times (recovery.max_rounds 2)")


def test_run_level_problems_say_they_are_not_the_records_fault() -> None:
    remedy = remedy_for(_failure(ResultClass.ERRORED, "permission_error", "no access"), POLICY, 0)
    assert "run-level problem, not this record's" in remedy.reason


def _params(content: str) -> dict:
    return {"model": "m", "max_tokens": 10, "system": [], "messages": [{"role": "user", "content": content}]}


def test_repair_appends_the_schema_instruction_once() -> None:
    schema = LoanReview.model_json_schema()
    repaired = repair_request(_params("<loan_file>...</loan_file>"), schema)
    assert repaired is not None
    content = repaired["messages"][0]["content"]
    assert content.startswith("<loan_file>...</loan_file>\n\n" + REPAIR_INSTRUCTION)
    assert '"risk_level"' in content
    assert repair_request(repaired, schema) is None


def _sections(count: int) -> str:
    return "\n\n".join(f"PART {n}\n" + "Payments are applied first. " * 20 for n in range(count))


@pytest.fixture
def recover_refused_loan(tmp_path: Path) -> Callable[..., RecoveryPlan]:
    """Shard loan "1" holding `text` (and `others`), have its request refused by the `refused`
    result line, and plan the next round with the record as the request's split source."""

    def recover(
        spec: WorkloadSpec, text: str, refused: str, others: Sequence[dict] = (), **split: Any
    ) -> RecoveryPlan:
        source = write_jsonl(tmp_path / "input.jsonl", [loan("1", text), *others])
        shards = write_shards(spec, read_jsonl(source), tmp_path / "shards", date(2026, 6, 7))
        partition_results(
            [refused], read_manifest(Path(shards.manifest_path)), LoanReview, tmp_path / "partition"
        )
        record = LoanFile.model_validate(loan("1", text))
        return plan_recovery(
            spec,
            read_failures(tmp_path / "partition"),
            [Path(s.path) for s in shards.shards],
            0,
            tmp_path / "recovery",
            {"loan-2026-06-07-1": SplitSource(record, position=1, **split)},
        )

    return recover


def test_a_record_refused_as_too_long_is_split_into_chunk_requests_of_the_next_round(
    recover_refused_loan: Callable[..., RecoveryPlan],
) -> None:
    text = _sections(8)
    refused = errored_line(
        "loan-2026-06-07-1", "invalid_request_error", "prompt is too long: 300 tokens > 200 maximum"
    )

    plan = recover_refused_loan(make_spec(), text, refused, others=[loan("2")])

    entries = [e for e in read_manifest(Path(plan.manifest_path)) if e.business_key == "1"]
    assert plan.actions[RecoveryAction.SPLIT] == 1 and plan.accounted()
    assert len(entries) >= 2 and plan.chunks_added == len(entries) - 1
    assert [e.custom_id for e in entries] == [
        f"loan-2026-06-07-1-c{n:02d}of{len(entries):02d}" for n in range(1, len(entries) + 1)
    ]
    assert {(e.chunk_of, e.chunk_depth, e.position, e.round, e.action) for e in entries} == {
        ("loan-2026-06-07-1", 1, 1, 1, "split")
    }
    # Together the chunks hold the whole text, in order, each under the refused size's share.
    assert "".join(text[e.text_start : e.text_end] for e in entries) == text
    assert all(len(text[e.text_start : e.text_end]) <= len(text) * 0.6 for e in entries)
    lines = [json.loads(x) for s in plan.shards for x in Path(s.path).read_text().splitlines()]
    users = {line["custom_id"]: line["params"]["messages"][0]["content"] for line in lines}
    for entry in entries:
        assert text[entry.text_start : entry.text_end].split("\n")[0] in users[entry.custom_id]


def test_a_chunk_refused_at_the_depth_limit_is_quarantined_naming_the_chunk(
    recover_refused_loan: Callable[..., RecoveryPlan],
) -> None:
    spec = make_spec(
        chunking={"merge": "claude_workloads.loan_disclosure_review:merge_reviews", "max_depth": 1}
    )
    text = _sections(4)
    refused = errored_line("loan-2026-06-07-1", "request_too_large", "request too large")

    plan = recover_refused_loan(spec, text, refused, depth=1, span=(0, len(text)))

    [entry] = [
        QuarantineEntry.model_validate_json(x) for x in Path(plan.quarantine_path).read_text().splitlines()
    ]
    assert entry.quarantine_class is QuarantineClass.CONTEXT_WINDOW
    assert entry.reason.startswith(
        "loan-2026-06-07-1 (1): still too long as a chunk 1 deep (chunking.max_depth 1)"
    )


def _run(
    spec: WorkloadSpec,
    tmp_path: Path,
    keys: list[str],
    results: list[str],
    sources: dict[str, SplitSource] | None = None,
) -> tuple[ShardPlan, RecoveryPlan]:
    source = write_jsonl(tmp_path / "input.jsonl", [loan(key) for key in keys])
    shards = write_shards(spec, read_jsonl(source), tmp_path / "shards", date(2026, 6, 7))
    partition_results(results, read_manifest(Path(shards.manifest_path)), LoanReview, tmp_path / "partition")
    plan = plan_recovery(
        spec,
        read_failures(tmp_path / "partition"),
        [Path(s.path) for s in shards.shards],
        0,
        tmp_path / "recovery",
        sources,
    )
    return shards, plan


def test_next_round_holds_only_the_failures_with_their_original_params(
    loan_spec: WorkloadSpec, tmp_path: Path
) -> None:
    results = [
        succeeded_line("loan-2026-06-07-1", review_json("1")),
        errored_line("loan-2026-06-07-2", "overloaded_error"),
        ended_line("loan-2026-06-07-3", "expired"),
        succeeded_line("loan-2026-06-07-4", "not json"),
        errored_line("loan-2026-06-07-5", "invalid_request_error", "bad"),
        errored_line("loan-2026-06-07-9", "api_error"),
    ]
    shards, plan = _run(loan_spec, tmp_path, ["1", "2", "3", "4", "5"], results)
    assert plan.accounted()
    assert (plan.next_round, plan.failures, plan.requests, plan.ignored_unknown) == (1, 4, 3, 1)
    assert plan.actions == {
        RecoveryAction.RETRY: 1,
        RecoveryAction.REQUEUE: 1,
        RecoveryAction.REPAIR: 1,
        RecoveryAction.QUARANTINE: 1,
    }
    original = {
        line["custom_id"]: line
        for line in map(json.loads, Path(shards.shards[0].path).read_text().splitlines())
    }
    resent = [json.loads(line) for line in Path(plan.shards[0].path).read_text().splitlines()]
    assert Path(plan.shards[0].path).name == "round-01-shard-00000.jsonl"
    assert [line["custom_id"] for line in resent] == [
        "loan-2026-06-07-2",
        "loan-2026-06-07-3",
        "loan-2026-06-07-4",
    ]
    assert resent[0] == original["loan-2026-06-07-2"]
    assert REPAIR_INSTRUCTION in resent[2]["params"]["messages"][0]["content"]
    entries = list(read_manifest(Path(plan.manifest_path)))
    assert [(e.business_key, e.round, e.action) for e in entries] == [
        ("2", 1, "retry"),
        ("3", 1, "requeue"),
        ("4", 1, "repair"),
    ]
    (quarantined,) = [
        QuarantineEntry.model_validate_json(x) for x in Path(plan.quarantine_path).read_text().splitlines()
    ]
    assert (quarantined.business_key, quarantined.quarantine_class, quarantined.attempts) == (
        "5",
        QuarantineClass.INVALID_REQUEST,
        1,
    )


def test_run_level_problems_are_reported_for_the_run(loan_spec: WorkloadSpec, tmp_path: Path) -> None:
    results = [errored_line(f"loan-2026-06-07-{k}", "billing_error", "credit exhausted") for k in ("1", "2")]
    _, plan = _run(loan_spec, tmp_path, ["1", "2"], results)
    assert plan.run_level_problems == {"billing_error": 2}
    assert plan.requests == 0
    assert any("RUN-LEVEL PROBLEM (billing_error x2)" in line for line in plan.summary_lines())


def test_a_failure_whose_request_line_is_missing_is_an_error(loan_spec: WorkloadSpec, tmp_path: Path) -> None:
    failure = FailureRecord(custom_id="loan-x", business_key="x", result_class=ResultClass.EXPIRED)
    with pytest.raises(ValueError, match="request lines of loan-x"):
        plan_recovery(loan_spec, [failure], [], 0, tmp_path)


def test_a_repaired_request_that_fails_again_is_quarantined(loan_spec: WorkloadSpec, tmp_path: Path) -> None:
    _, round_1 = _run(loan_spec, tmp_path, ["1"], [succeeded_line("loan-2026-06-07-1", "no")])
    assert round_1.actions == {RecoveryAction.REPAIR: 1}
    failure = FailureRecord(
        custom_id="loan-2026-06-07-1",
        business_key="1",
        result_class=ResultClass.INVALID_OUTPUT,
        message="still no",
    )
    plan = plan_recovery(loan_spec, [failure], [Path(round_1.shards[0].path)], 1, tmp_path / "round-2")
    assert plan.quarantined == {QuarantineClass.INVALID_OUTPUT: 1}
    assert "still not a valid output after one repair" in Path(plan.quarantine_path).read_text()


OUTCOMES = ("valid", "invalid", "transient", "rejected", "billing", "expired", "missing", "too_long")


@settings(max_examples=30, deadline=None)
@given(outcomes=st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=25), chunk=st.booleans())
def test_partition_and_recovery_account_for_every_custom_id_exactly_once(
    tmp_path_factory: pytest.TempPathFactory, outcomes: list[str], chunk: bool
) -> None:
    tmp_path = tmp_path_factory.mktemp("recovery")
    chunking = {"merge": "claude_workloads.loan_disclosure_review:merge_reviews"} if chunk else None
    spec = make_spec(chunking=chunking, sharding={"target_requests": 4})
    keys = [str(n) for n in range(len(outcomes))]
    lines = []
    for key, outcome in zip(keys, outcomes, strict=True):
        custom_id = f"loan-2026-06-07-{key}"
        line = {
            "valid": succeeded_line(custom_id, review_json(key)),
            "invalid": succeeded_line(custom_id, "{"),
            "transient": errored_line(custom_id, "overloaded_error"),
            "rejected": errored_line(custom_id, "invalid_request_error", "bad block"),
            "billing": errored_line(custom_id, "billing_error"),
            "expired": ended_line(custom_id, "expired"),
            "too_long": errored_line(
                custom_id, "invalid_request_error", "prompt is too long: 9 tokens > 5 maximum"
            ),
        }.get(outcome)
        if line is not None:
            lines.append(line)
    sources = {
        f"loan-2026-06-07-{key}": SplitSource(LoanFile.model_validate(loan(key)), int(key) + 1)
        for key in keys
    }
    _, plan = _run(spec, tmp_path, keys, lines, sources)

    published = {
        json.loads(x)["custom_id"]
        for x in (tmp_path / "partition" / "succeeded.jsonl").read_text().splitlines()
    }
    # A split request is resent as its chunks: one record, counted once.
    resent = list(dict.fromkeys(e.chunk_of or e.custom_id for e in read_manifest(Path(plan.manifest_path))))
    quarantined = [
        QuarantineEntry.model_validate_json(x).custom_id
        for x in Path(plan.quarantine_path).read_text().splitlines()
    ]
    every = [*published, *resent, *quarantined]
    assert sorted(every) == sorted(f"loan-2026-06-07-{key}" for key in keys)
    assert plan.accounted()
