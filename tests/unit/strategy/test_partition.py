from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_batch.strategy.failures import RESULT_TOO_LARGE
from claude_batch.strategy.lines import split_lines
from claude_batch.strategy.manifest import ManifestEntry
from claude_batch.strategy.partition import (
    FAILURE_CLASSES,
    FailureRecord,
    ResultClass,
    partition_results,
    read_failures,
    sync_result_line,
)
from claude_batch.strategy.usage import Usage
from claude_workloads.loan_disclosure_review import LoanReview
from tests.unit.strategy.helpers import ended_line, errored_line, review_json, succeeded_line


def _manifest(*keys: str) -> list[ManifestEntry]:
    return [ManifestEntry(custom_id=f"loan-{key}", business_key=key, shard=0) for key in keys]


def _read(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_each_result_line_lands_in_the_file_of_its_class(tmp_path: Path) -> None:
    results = [
        succeeded_line("loan-1", review_json("1")),
        succeeded_line("loan-2", "I could not find a loan file."),
        errored_line("loan-3", "overloaded_error", "Overloaded"),
        ended_line("loan-4", "canceled"),
        ended_line("loan-5", "expired"),
    ]
    summary = partition_results(results, _manifest("1", "2", "3", "4", "5", "6"), LoanReview, tmp_path)
    assert summary.accounted()
    assert summary.counts == {
        ResultClass.SUCCEEDED: 1,
        ResultClass.INVALID_OUTPUT: 1,
        ResultClass.ERRORED: 1,
        ResultClass.CANCELED: 1,
        ResultClass.EXPIRED: 1,
        ResultClass.MISSING: 1,
        ResultClass.UNKNOWN: 0,
    }
    (succeeded,) = _read(summary.files[ResultClass.SUCCEEDED])
    assert succeeded["custom_id"] == "loan-1" and succeeded["business_key"] == "1"
    assert succeeded["output"] == json.loads(review_json("1"))
    assert succeeded["usage"]["input_tokens"] == 1000
    (missing,) = _read(summary.files[ResultClass.MISSING])
    assert (missing["custom_id"], missing["business_key"]) == ("loan-6", "6")


def test_an_invalid_answer_is_kept_with_its_validation_reason(tmp_path: Path) -> None:
    results = [succeeded_line("loan-1", '{"loan_file_id": "1"', stop_reason="max_tokens")]
    summary = partition_results(results, _manifest("1"), LoanReview, tmp_path)
    (failure,) = read_failures(tmp_path)
    assert failure.result_class is ResultClass.INVALID_OUTPUT
    assert failure.stop_reason == "max_tokens"
    assert failure.message.startswith("the answer was cut off at max_tokens; the answer is not JSON")
    assert summary.usage.input_tokens == 1000  # an invalid answer is billed too


def test_errored_results_are_counted_by_error_kind(tmp_path: Path) -> None:
    results = [
        errored_line("loan-1", "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
        errored_line("loan-2", "invalid_request_error"),
        errored_line("loan-3", "api_error"),
    ]
    summary = partition_results(results, _manifest("1", "2", "3"), LoanReview, tmp_path)
    assert summary.errored_by_kind == {"invalid_request_error": 2, "api_error": 1}
    assert summary.cause_counts()["invalid_request_error"] == 2
    assert "errored" not in summary.cause_counts()
    first = next(read_failures(tmp_path))
    assert (first.error_kind, first.message) == (
        "invalid_request_error",
        "prompt is too long: 210000 tokens > 200000 maximum",
    )


def test_lines_matching_no_request_are_unknown_and_never_counted_twice(tmp_path: Path) -> None:
    results = [
        succeeded_line("loan-1", review_json("1")),
        succeeded_line("loan-1", review_json("1")),
        succeeded_line("loan-999", review_json("999")),
        "not json at all",
        json.dumps({"result": {"type": "expired"}}),
    ]
    summary = partition_results(results, _manifest("1"), LoanReview, tmp_path)
    assert summary.counts[ResultClass.SUCCEEDED] == 1
    assert summary.counts[ResultClass.UNKNOWN] == 4
    assert summary.accounted()
    messages = [f["message"] for f in _read(summary.files[ResultClass.UNKNOWN])]
    assert messages[0] == "a second result line for loan-1; the first one counts"
    assert messages[1] == "loan-999 is not in this batch's manifest"
    assert messages[3] == "line 5 is not a result line (no custom_id)"


def test_bytes_lines_and_blank_lines_are_handled_as_the_api_sends_them(tmp_path: Path) -> None:
    results = [succeeded_line("loan-1", review_json("1")).encode() + b"\n", b"\n"]
    summary = partition_results(results, _manifest("1"), LoanReview, tmp_path)
    assert (summary.result_lines, summary.counts[ResultClass.SUCCEEDED]) == (1, 1)


def test_usage_is_summed_over_answered_requests(tmp_path: Path) -> None:
    results = [succeeded_line(f"loan-{n}", review_json(str(n)), input_tokens=10 * n) for n in range(1, 4)]
    summary = partition_results(results, _manifest("1", "2", "3"), LoanReview, tmp_path)
    assert summary.usage == Usage(input_tokens=60, output_tokens=300, cache_read_input_tokens=750)


def test_synchronous_answers_partition_like_batch_results(tmp_path: Path) -> None:
    message = json.loads(succeeded_line("x", review_json("1")))["result"]["message"]
    results = [
        sync_result_line("loan-1", message=message),
        sync_result_line("loan-2", error_kind="rate_limit_error", error_message="slow down"),
    ]
    summary = partition_results(results, _manifest("1", "2"), LoanReview, tmp_path)
    assert summary.counts[ResultClass.SUCCEEDED] == 1
    assert summary.errored_by_kind == {"rate_limit_error": 1}


def test_a_manifest_listing_an_id_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lists a custom_id twice"):
        partition_results([], _manifest("1", "1"), LoanReview, tmp_path)


OUTCOMES = ("valid", "invalid", "errored", "canceled", "expired", "missing", "duplicated")


@settings(max_examples=40, deadline=None)
@given(outcomes=st.lists(st.sampled_from(OUTCOMES), max_size=30), strangers=st.integers(0, 3))
def test_every_expected_custom_id_ends_in_exactly_one_class(
    tmp_path_factory: pytest.TempPathFactory, outcomes: list[str], strangers: int
) -> None:
    out = tmp_path_factory.mktemp("partition")
    keys = [str(n) for n in range(len(outcomes))]
    lines: list[str] = []
    for key, outcome in zip(keys, outcomes, strict=True):
        custom_id = f"loan-{key}"
        line = {
            "valid": succeeded_line(custom_id, review_json(key)),
            "duplicated": succeeded_line(custom_id, review_json(key)),
            "invalid": succeeded_line(custom_id, "no"),
            "errored": errored_line(custom_id, "api_error"),
            "canceled": ended_line(custom_id, "canceled"),
            "expired": ended_line(custom_id, "expired"),
        }.get(outcome)
        if line is not None:
            lines.append(line)
        if outcome == "duplicated":
            lines.append(line)
    lines += [ended_line(f"stranger-{n}", "expired") for n in range(strangers)]
    lines.reverse()  # results come back in any order
    summary = partition_results(lines, _manifest(*keys), LoanReview, out)

    ended_in: dict[str, list[ResultClass]] = {f"loan-{key}": [] for key in keys}
    for line in _read(summary.files[ResultClass.SUCCEEDED]):
        ended_in[line["custom_id"]].append(ResultClass.SUCCEEDED)
    for result_class in FAILURE_CLASSES:
        for line in _read(summary.files[result_class]):
            failure = FailureRecord.model_validate(line)
            if failure.result_class is not ResultClass.UNKNOWN:
                ended_in[failure.custom_id or ""].append(failure.result_class)
    assert all(len(classes) == 1 for classes in ended_in.values())
    assert summary.accounted()
    assert summary.counts[ResultClass.UNKNOWN] == strangers + outcomes.count("duplicated")


def test_a_result_line_over_the_cap_is_classified_by_its_custom_id_without_being_read(tmp_path: Path) -> None:
    big = succeeded_line("loan-2", review_json("2") + " " * 5_000)
    raw = "\n".join([succeeded_line("loan-1", review_json("1")), big, '{"result": "' + "x" * 5_000 + '"}'])
    lines = split_lines([raw.encode() + b"\n"], 4_000)

    summary = partition_results(lines, _manifest("1", "2"), LoanReview, tmp_path)

    assert summary.accounted()
    assert (summary.counts[ResultClass.SUCCEEDED], summary.counts[ResultClass.ERRORED]) == (1, 1)
    assert summary.counts[ResultClass.UNKNOWN] == 1 and summary.counts[ResultClass.MISSING] == 0
    failures = {f.custom_id: f for f in read_failures(tmp_path)}
    assert failures["loan-2"].error_kind == RESULT_TOO_LARGE.name
    assert "is not read or resent" in failures["loan-2"].message
    assert "line 3" in failures[None].message


def test_an_answer_the_store_cannot_hold_is_an_invalid_output(tmp_path: Path) -> None:
    answer = json.loads(review_json("1"))
    answer["rationale"] = "a NUL \u0000 in it"
    summary = partition_results(
        [succeeded_line("loan-1", json.dumps(answer))], _manifest("1"), LoanReview, tmp_path
    )
    assert summary.counts[ResultClass.INVALID_OUTPUT] == 1
    (failure,) = read_failures(tmp_path)
    assert "NUL character (U+0000), which the output store cannot hold" in failure.message
