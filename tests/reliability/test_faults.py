"""Faults: every endpoint failing in every way the emulator can inject, at rates up to 20 %, over
several seeds. Each run must publish or quarantine every record exactly once, never pay for a batch
the ledger does not know, and never send a request more often than its rounds allow.

Fast variant (``make test``): a few seeds of ~120 records. ``CLAUDE_BATCH_LONG=1``: many seeds of
300 records at the full rates.
"""

from __future__ import annotations

import random
from datetime import date

import pytest

from claude_batch.strategy.quarantine import QuarantineClass
from claude_batch.strategy.spec import load_workload
from tests.reliability.conftest import long_variant

WORKLOAD = "loan_disclosure_review"
RUN_DATE = date(2026, 6, 7)
MAX_RATE = 0.20
# Every way an endpoint can fail, per endpoint (truncated only on results, not_found_after_create
# only on retrieve_batch, as the emulator defines them).
COMMON_HTTP_FAULTS = ("rate_limited", "overloaded", "api_error", "connection_reset")
ENDPOINT_FAULTS = {
    "create_batch": COMMON_HTTP_FAULTS,
    "retrieve_batch": (*COMMON_HTTP_FAULTS, "not_found_after_create"),
    "list_batches": COMMON_HTTP_FAULTS,
    "cancel_batch": COMMON_HTTP_FAULTS,
    "delete_batch": COMMON_HTTP_FAULTS,
    "results": (*COMMON_HTTP_FAULTS, "truncated"),
    "messages": COMMON_HTTP_FAULTS,
    "count_tokens": COMMON_HTTP_FAULTS,
}
TRANSIENT_ERRORS = ("api_error", "overloaded_error", "rate_limit_error", "timeout_error")
# Classes a record may end in under these faults: what no resubmission fixes, or rounds ran out.
EXPECTED_QUARANTINE = {
    QuarantineClass.INVALID_REQUEST,
    QuarantineClass.INVALID_OUTPUT,
    QuarantineClass.ATTEMPTS_EXHAUSTED,
    QuarantineClass.NOT_RETRIED,
}

SEEDS = list(range(1, 25)) if long_variant() else [1, 2, 3, 4, 5]
RECORDS = 300 if long_variant() else 120


def _split(rng: random.Random, total: float, names: tuple[str, ...]) -> dict[str, float]:
    weights = [rng.random() + 0.05 for _ in names]
    return {name: round(total * w / sum(weights), 4) for name, w in zip(names, weights, strict=True)}


def fault_plan(seed: int) -> dict:
    """A fault file drawn from ``seed``: each endpoint fails 5-20 % of its calls, split over all its
    failure kinds, plus slow responses; 5-20 % of batch requests fail, split over every outcome.
    Answers the sample can never fix (invalid output, invalid request) stay under 6 % together, so the
    sample gate passes and the bulk path is what is tested."""
    rng = random.Random(seed)
    endpoints = {}
    for endpoint, kinds in ENDPOINT_FAULTS.items():
        plan = _split(rng, rng.uniform(0.05, MAX_RATE), kinds)
        if "not_found_after_create" in plan:
            plan["not_found_window_seconds"] = 1.0
        endpoints[endpoint] = {
            **plan,
            "retry_after_seconds": 0,
            "slow": round(rng.uniform(0, 0.1), 3),
            "slow_seconds": 0.2,
        }
    permanent = _split(rng, rng.uniform(0.01, 0.06), ("invalid_request_error", "invalid_output"))
    transient = _split(rng, rng.uniform(0.04, MAX_RATE - 0.06), (*TRANSIENT_ERRORS, "expired", "canceled"))
    return {
        "requests": {
            "errored": {
                **{kind: transient[kind] for kind in TRANSIENT_ERRORS},
                "invalid_request_error": permanent["invalid_request_error"],
            },
            "expired": transient["expired"],
            "canceled": transient["canceled"],
            "invalid_output": permanent["invalid_output"],
        },
        "endpoints": endpoints,
    }


@pytest.mark.parametrize("seed", SEEDS)
def test_every_record_ends_once_and_no_batch_is_paid_twice_under_faults_on_every_endpoint(
    pipeline_for, seed: int
) -> None:
    plan = fault_plan(seed)
    pipeline = pipeline_for(processing_seconds=0.5, faults=plan, seed=seed)
    loans = pipeline.loan_input(RECORDS, seed=seed)

    # A sample of 30: the sample's valid answers are published as they are, and the batch must keep
    # enough of the night for recovery rounds to have work.
    dag_run = pipeline.run(WORKLOAD, loans, sample_size=30)

    store = pipeline.store()
    run = next(r for r in store.recent_runs(WORKLOAD) if r.logical_date == RUN_DATE)
    stats = pipeline.emulator.stats()
    # Nothing paid for that the ledger does not know, whatever happened to the run.
    assert stats["batches_created"] == store.batches_created(run.id)
    max_rounds = load_workload(WORKLOAD).recovery.max_rounds
    assert stats["custom_id_max_submissions"] <= 1 + max_rounds
    report = run.report
    if dag_run.state != "success":
        # The one stop these faults may cause, and a clear one: the injected share of a cause passed
        # the spec's health threshold (e.g. invalid_request_error over 5 %); outputs are published.
        assert report["health"]["level"] == "fail", f"seed {seed}: the run failed under {plan}"
        assert run.status == "failed"
    accounting = store.accounting(run.id)
    assert accounting.balanced, accounting
    assert (accounting.unaccounted, accounting.double_counted) == (0, 0)
    assert accounting.inputs == RECORDS
    assert accounting.published + accounting.quarantined + accounting.rejected == RECORDS
    assert store.outputs_count(WORKLOAD, RUN_DATE) == accounting.published
    assert report["published"] + report["quarantined_total"] == report["inputs"] == RECORDS
    assert report["batches_created"] == stats["batches_created"]
    rows = store.quarantine_rows(run.id)
    assert {QuarantineClass(row.quarantine_class) for row in rows} <= EXPECTED_QUARANTINE
    assert all(row.custom_id and row.custom_id in row.reason for row in rows)
    # The faults really happened: HTTP calls failed, and failed requests were recovered in rounds.
    assert sum(n for kinds in stats["http_faults_injected"].values() for n in kinds.values()) > 0
    assert report["rounds"] >= 1 and report["recovered"] > 0
