"""Oversized documents end to end: chunked at shard time or split in recovery, answered, merged.

The emulator runs with a small context window (``--context-window``) so that files of 1x, 3x and 10x
the window stay small and the runs fast; the spec declares the same window.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from claude_batch.strategy.health import HealthLevel
from claude_batch.strategy.report import RunReport
from claude_batch.strategy.spec import HealthThreshold
from claude_demo.loans import write_loan_files
from claude_workloads.loan_disclosure_review import DISCLOSURE_HEADINGS, Disclosure, risk_for

RUN_DATE = date(2026, 6, 7)
WINDOW = 6_000
WORKLOAD = "loan_disclosure_review"
BOILERPLATE = (
    "Payments are applied first to interest, then to principal, then to fees. The lender may report "
    "the account to consumer reporting agencies. Escrow amounts may change with taxes and insurance."
)


def loan_text(loan_file_id: str, size_bytes: int, present: dict[Disclosure, float]) -> str:
    """A loan file of about ``size_bytes``: boilerplate sections, with each disclosure of ``present``
    as a section of its own at its relative place in the file (0.5: the exact middle)."""
    sections = []
    filled = 0
    number = 0
    while filled < size_bytes:
        number += 1
        section = f"GENERAL TERMS PART {number}\n" + "\n\n".join([BOILERPLATE] * 6)
        sections.append(section)
        filled += len(section) + 2
    for disclosure, where in sorted(present.items(), key=lambda item: item[1]):
        heading = DISCLOSURE_HEADINGS[disclosure]
        section = f"{heading}\nThe {heading.lower()} for this loan is stated as 12,345 in the schedule."
        sections.insert(min(len(sections), round(where * len(sections))), section)
    return f"LOAN FILE {loan_file_id} - MORTGAGE LOAN AGREEMENT\n\n" + "\n\n".join(sections)


def oversized_input(
    path: Path, files: dict[str, tuple[int, dict[Disclosure, float]]], ordinary: int = 3
) -> Path:
    """``ordinary`` small files followed by ``files``: id -> (size in bytes, disclosures present)."""
    write_loan_files(path, ordinary, missing_rate=0.0)
    with path.open("a") as out:
        for loan_file_id, (size, present) in files.items():
            record = {"loan_file_id": loan_file_id, "product": "mortgage", "borrower_state": "NY"}
            out.write(json.dumps(record | {"text": loan_text(loan_file_id, size, present)}) + "\n")
    return path


def small_window(spec):
    """The spec with the emulator's window, its chunk target half of it, and every volume batched."""
    assert spec.chunking is not None
    return spec.model_copy(
        update={
            "routing": spec.routing.model_copy(update={"min_batch_volume": 0}),
            "context_window_tokens": WINDOW,
            "chunking": spec.chunking.model_copy(update={"target_tokens": WINDOW // 2}),
        }
    )


def _report(pipeline) -> RunReport:
    run = next(r for r in pipeline.store().recent_runs(WORKLOAD) if r.logical_date == RUN_DATE)
    return RunReport.model_validate({k: v for k, v in run.report.items() if k in RunReport.model_fields})


WINDOW_BYTES = WINDOW * 4
EVERYTHING = dict.fromkeys(Disclosure, 0.1)


def test_files_of_1x_3x_10x_the_window_publish_one_merged_review_each_with_faults(pipeline_for) -> None:
    middle_only = {**{d: 0.05 for d in Disclosure}, Disclosure.RIGHT_TO_CANCEL: 0.5}
    del middle_only[Disclosure.LATE_PAYMENT], middle_only[Disclosure.PREPAYMENT]
    files = {
        "900001": (WINDOW_BYTES, EVERYTHING),
        "900003": (3 * WINDOW_BYTES, {d: 0.9 for d in Disclosure if d is not Disclosure.FINANCE_CHARGE}),
        "900010": (10 * WINDOW_BYTES, middle_only),
    }
    truth = {
        "900001": [],
        "900003": [Disclosure.FINANCE_CHARGE],
        "900010": [Disclosure.LATE_PAYMENT, Disclosure.PREPAYMENT],
    }
    faults = {"requests": {"errored": {"api_error": 0.08, "overloaded_error": 0.04}, "expired": 0.04}}
    pipeline = pipeline_for(context_window=WINDOW, faults=faults, seed=5)
    loans = oversized_input(pipeline.tmp_path / "inputs" / "oversized.jsonl", files)

    dag_run = pipeline.run(WORKLOAD, loans, spec_changes=small_window)

    assert dag_run.state == "success"
    report = _report(pipeline)
    assert (report.inputs, report.published, report.quarantined_total) == (6, 6, 0)
    store = pipeline.store()
    for loan_file_id, missing in truth.items():
        output = store.get_output(WORKLOAD, loan_file_id, RUN_DATE)
        assert output is not None, loan_file_id
        assert output.custom_id == f"loan-2026-06-07-{loan_file_id}"
        assert output.output["missing_disclosures"] == [d.value for d in missing], loan_file_id
        assert output.output["risk_level"] == risk_for(len(missing)).value
    chunking = report.chunking
    assert chunking is not None
    assert (chunking.records_chunked, chunking.records_merged) == (3, 3)
    # 1x the window with the prompt around it takes 2 chunks at least, 10x takes 10 at least.
    assert chunking.chunks_sent >= 2 + 6 + 20
    assert 0 < chunking.cost_share < 1
    assert report.recovered > 0 and report.rounds > 0
    assert any(lever.lever == "chunk size" for lever in report.levers)


def test_chunks_refused_as_too_long_in_a_batch_are_split_again_in_recovery_and_end_once(pipeline_for) -> None:
    # The spec believes in a window twice the model's: its chunks are sized for that, and the API (the
    # emulator) refuses them as too long. Recovery splits them again, a level deeper each time.
    pipeline = pipeline_for(context_window=WINDOW)
    files = {
        "910005": (5 * WINDOW_BYTES, {**dict.fromkeys(Disclosure, 0.95), Disclosure.FINANCE_CHARGE: 0.5})
    }
    loans = oversized_input(pipeline.tmp_path / "inputs" / "refused.jsonl", files)

    def believes_in_a_larger_window(spec):
        spec = small_window(spec)
        chunking = spec.chunking.model_copy(update={"target_tokens": 2 * WINDOW})
        # Every first request refused: health says so (a warning here, so the run goes to the end).
        health = spec.health.model_copy(
            update={"thresholds": {"invalid_request_error": HealthThreshold(warn=0.01, fail=1.0)}}
        )
        return spec.model_copy(
            update={"context_window_tokens": 2 * WINDOW, "chunking": chunking, "health": health}
        )

    dag_run = pipeline.run(WORKLOAD, loans, spec_changes=believes_in_a_larger_window)

    assert dag_run.state == "success"
    report = _report(pipeline)
    assert (report.inputs, report.published, report.quarantined_total) == (4, 4, 0)
    store = pipeline.store()
    chunked = store.get_output(WORKLOAD, "910005", RUN_DATE)
    assert chunked is not None and chunked.output["missing_disclosures"] == []
    run_id = next(r.id for r in store.recent_runs(WORKLOAD) if r.logical_date == RUN_DATE)
    entries = list(store.iter_chunks(run_id))
    first_level = {entry.custom_id for entry in entries if entry.round == 0}
    split = [entry for entry in entries if entry.round > 0]
    assert split and all(entry.chunk_of in first_level or entry.chunk_depth > 2 for entry in split)
    assert min(entry.chunk_depth for entry in split) == 2
    assert report.chunking is not None and report.chunking.records_chunked == 1
    assert report.health is not None and report.health.level is HealthLevel.WARN
    assert any("outgrowing the context window" in signal.message for signal in report.health.signals)


def test_a_record_whose_chunk_cannot_be_answered_is_quarantined_once_naming_the_chunk(pipeline_for) -> None:
    # No recovery rounds and a fifth of requests failing: some chunk of the 10x file fails for good.
    pipeline = pipeline_for(
        context_window=WINDOW, faults={"requests": {"errored": {"api_error": 0.2}}}, seed=2
    )
    loans = oversized_input(
        pipeline.tmp_path / "inputs" / "unanswered.jsonl", {"920010": (10 * WINDOW_BYTES, EVERYTHING)}
    )

    def no_recovery(spec):
        return small_window(spec).model_copy(
            update={"recovery": spec.recovery.model_copy(update={"max_rounds": 0})}
        )

    pipeline.run(WORKLOAD, loans, spec_changes=no_recovery)

    store = pipeline.store()
    run = next(r for r in store.recent_runs(WORKLOAD) if r.logical_date == RUN_DATE)
    [row] = [row for row in store.quarantine_rows(run.id) if row.business_key == "920010"]
    assert row.custom_id is not None and row.custom_id.startswith("loan-2026-06-07-920010-c")
    assert row.reason.startswith(f"{row.custom_id} (920010): attempts exhausted")
    assert store.get_output(WORKLOAD, "920010", RUN_DATE) is None
    accounting = store.accounting(run.id)
    assert accounting.balanced and (accounting.inputs, accounting.quarantined) == (4, 1)
    report = _report(pipeline)
    assert report.chunking is not None
    assert (report.chunking.records_chunked, report.chunking.records_merged) == (1, 0)
