"""The failure taxonomy: against the API's published error types, and against the modules that read it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest

from claude_batch.strategy import failures
from claude_batch.strategy.failures import (
    CAUSES,
    RESULT_CAUSES,
    RETRYABLE_CAUSES,
    FailureCause,
    RecoveryAction,
    ResultClass,
    cause_named,
    cause_of_api_error,
    cause_of_failure,
)
from claude_batch.strategy.health import HealthLevel, assess_health
from claude_batch.strategy.manifest import ManifestEntry
from claude_batch.strategy.partition import FailureRecord, partition_results
from claude_batch.strategy.quarantine import QuarantineClass
from claude_batch.strategy.recovery import remedy_for
from claude_batch.strategy.spec import (
    HEALTH_CAUSES,
    ChunkingSpec,
    HealthSpec,
    HealthThreshold,
    RecoverySpec,
    RetryCause,
)
from claude_emulator.errors import ERROR_STATUS
from claude_workloads.loan_disclosure_review import LoanReview
from tests.conftest import REPO_ROOT
from tests.unit.strategy.helpers import ended_line, errored_line, review_json, succeeded_line

OPENAPI_SCHEMAS = REPO_ROOT / "tests" / "fixtures" / "anthropic_openapi_schemas.json"

# The API's documented error types (claude-batch-api.md, "Result lines") and what the pipeline makes
# of each: (type, HTTP status, transient, ambiguous on create, run-level, recovery's action).
# A new cause gets its row here.
DOCUMENTED = [
    ("invalid_request_error", 400, False, False, False, RecoveryAction.QUARANTINE),
    ("authentication_error", 401, False, False, True, RecoveryAction.QUARANTINE),
    ("billing_error", 402, False, False, True, RecoveryAction.QUARANTINE),
    ("permission_error", 403, False, False, True, RecoveryAction.QUARANTINE),
    ("not_found_error", 404, False, False, True, RecoveryAction.QUARANTINE),
    ("request_too_large", 413, False, False, False, RecoveryAction.SPLIT),
    ("rate_limit_error", 429, True, False, False, RecoveryAction.RETRY),
    ("api_error", 500, True, True, False, RecoveryAction.RETRY),
    ("timeout_error", 504, True, True, False, RecoveryAction.RETRY),
    ("overloaded_error", 529, True, True, False, RecoveryAction.RETRY),
]


def _openapi_error_types() -> set[str]:
    """``error.type`` of every error schema the spec's ErrorResponse may hold."""
    schemas = json.loads(OPENAPI_SCHEMAS.read_text())["$defs"]
    error = schemas["ErrorResponse"]["properties"]["error"]
    types = {
        schemas[choice["$ref"].removeprefix("#/$defs/")]["properties"]["type"]["const"]
        for choice in error["oneOf"]
    }
    assert types == set(error["discriminator"]["mapping"])
    return types


def test_every_api_error_type_in_the_openapi_spec_is_a_declared_cause() -> None:
    types = _openapi_error_types()
    assert "overloaded_error" in types
    undeclared = sorted(t for t in types if cause_named(t) is None)
    assert not undeclared, f"declare these error types in strategy/failures.py: {undeclared}"
    for error_type in types:
        cause = cause_of_api_error(error_type, None)
        assert (cause.name, cause.result_class) == (error_type, ResultClass.ERRORED)
        assert cause.statuses, f"{error_type} has no HTTP status"


@pytest.mark.parametrize(("name", "status", "transient", "ambiguous", "run_level", "action"), DOCUMENTED)
def test_each_documented_error_has_its_status_and_handling(
    name: str, status: int, transient: bool, ambiguous: bool, run_level: bool, action: RecoveryAction
) -> None:
    cause = cause_of_api_error(None, status)
    assert cause.name == name
    assert (cause.transient, cause.ambiguous_on_create, cause.run_level, cause.action) == (
        transient,
        ambiguous,
        run_level,
        action,
    )


def test_the_emulator_answers_each_error_type_with_the_declared_status() -> None:
    for kind, status in ERROR_STATUS.items():
        assert status in cause_of_api_error(kind, None).statuses, kind


def test_undeclared_statuses_are_the_apis_failure_when_5xx_else_unrecognized() -> None:
    assert cause_of_api_error(None, 502) is failures.API_ERROR
    assert cause_of_api_error("brand_new_error", 502) is failures.API_ERROR
    unrecognized = cause_of_api_error(None, 409)
    assert unrecognized is failures.UNRECOGNIZED_ERROR and not unrecognized.transient


def test_the_taxonomy_is_consistent() -> None:
    names = [c.name for c in CAUSES]
    assert len(names) == len(set(names))
    statuses = [s for c in CAUSES for s in c.statuses]
    assert len(statuses) == len(set(statuses)), "a status means one cause"
    for cause in CAUSES:
        # A template that names anything but the cause and the message would fail mid-recovery.
        cause.quarantined_reason("x", "y")
        cause.resent_reason("x", "y")
        if cause.result_class is None:
            written = cause_named(cause.written_as or "")
            assert written is not None and written.result_class is ResultClass.ERRORED, cause.name
            assert written.transient == cause.transient, cause.name
        if cause.run_level:
            assert (cause.action, cause.quarantine) == (RecoveryAction.QUARANTINE, QuarantineClass.RUN_LEVEL)
        if cause.action is not RecoveryAction.QUARANTINE:
            assert cause.resent, f"{cause.name} is resent without saying why"
        if cause.transient and cause.result_class is not None:
            assert cause.action is RecoveryAction.RETRY, cause.name
    assert {c.result_class for c in CAUSES} >= set(ResultClass) - {ResultClass.SUCCEEDED}


def test_the_spec_takes_its_retry_causes_and_health_causes_from_the_taxonomy() -> None:
    assert set(get_args(RetryCause)) == set(RETRYABLE_CAUSES)
    assert RecoverySpec().retry == set(RETRYABLE_CAUSES)
    assert "overloaded_error" in RETRYABLE_CAUSES and "expired" in RETRYABLE_CAUSES
    assert "invalid_request_error" not in RETRYABLE_CAUSES
    assert set(RESULT_CAUSES) == HEALTH_CAUSES
    HealthSpec(thresholds={cause: HealthThreshold(warn=0.5) for cause in RESULT_CAUSES})
    defaults = {cause: (t.warn, t.fail) for cause, t in HealthSpec().thresholds.items()}
    assert defaults == {c.name: c.health_threshold for c in CAUSES if c.health_threshold}


def _failure_of(cause: FailureCause, message: str = "it failed") -> FailureRecord:
    errored = cause.result_class is ResultClass.ERRORED
    return FailureRecord(
        custom_id="loan-1",
        business_key="1",
        result_class=cause.result_class,
        error_kind=cause.name if errored else None,
        message=message,
    )


RESULT_FAILURES = [c for c in CAUSES if c.result_class is not None]


@pytest.mark.parametrize("cause", RESULT_FAILURES, ids=lambda c: c.name)
def test_recovery_does_what_each_cause_declares(cause: FailureCause) -> None:
    failure = _failure_of(cause)
    willing = RecoverySpec(repair_invalid_output=True)
    chunking = ChunkingSpec(merge="claude_workloads.loan_disclosure_review:merge_reviews")
    remedy = remedy_for(failure, willing, 0, chunking)
    assert remedy.action is cause.action
    unwilling = RecoverySpec(retry=set(), repair_invalid_output=False)
    remedy = remedy_for(failure, unwilling, 0)
    assert (remedy.action, remedy.quarantine_class) == (RecoveryAction.QUARANTINE, cause.quarantine)
    assert remedy.reason == cause.quarantined_reason(cause.name, "it failed")


def test_an_invalid_request_that_says_the_prompt_is_too_long_is_request_too_large() -> None:
    too_long = "prompt is too long: 210000 tokens > 200000 maximum"
    assert (
        cause_of_failure(ResultClass.ERRORED, "invalid_request_error", too_long) is failures.REQUEST_TOO_LARGE
    )
    assert cause_of_failure(ResultClass.ERRORED, "invalid_request_error", "bad") is failures.INVALID_REQUEST
    assert cause_of_failure(ResultClass.ERRORED, "brand_new_error", "") is failures.UNRECOGNIZED_ERROR


@pytest.mark.parametrize("cause", [c for c in CAUSES if c.meaning], ids=lambda c: c.name)
def test_health_says_what_each_cause_means(cause: FailureCause) -> None:
    spec = HealthSpec(thresholds={cause.name: HealthThreshold(fail=0.05)})
    report = assess_health({"succeeded": 90, cause.name: 10}, [], spec)
    (signal,) = report.signals
    assert signal.level is HealthLevel.FAIL and signal.message.endswith(cause.meaning or "")


def test_partition_counts_results_by_declared_causes(tmp_path: Path) -> None:
    api_types = [c.name for c in CAUSES if c.statuses]
    lines = [errored_line(f"loan-{i}", kind) for i, kind in enumerate(api_types)]
    lines += [
        succeeded_line("loan-a", review_json("a")),
        succeeded_line("loan-b", "not an answer"),
        ended_line("loan-c", "expired"),
        ended_line("loan-d", "canceled"),
        ended_line("loan-e", "a_new_result_type"),
        ended_line("loan-zz", "expired"),
    ]
    keys = [*(str(i) for i in range(len(api_types))), "a", "b", "c", "d", "e", "f"]
    manifest = [ManifestEntry(custom_id=f"loan-{key}", business_key=key, shard=0) for key in keys]
    summary = partition_results(lines, manifest, LoanReview, tmp_path)
    causes = summary.cause_counts()
    assert set(causes) - {"succeeded"} <= set(RESULT_CAUSES)
    assert {kind: causes[kind] for kind in api_types} == dict.fromkeys(api_types, 1)
    assert causes["unrecognized_result"] == causes["missing"] == causes["unknown"] == 1
