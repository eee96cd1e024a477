"""The cost guard stops an over-budget run before any batch exists; a health breach fails the run by name."""

from __future__ import annotations

import json
from datetime import date

from claude_batch.strategy.spec import BudgetSpec

RUN_DATE = date(2026, 6, 7)


def _run_of(pipeline):
    store = pipeline.store()
    return next(r for r in store.recent_runs("loan_disclosure_review") if r.logical_date == RUN_DATE)


def test_over_budget_run_stops_before_any_batch_exists(pipeline_for, capfd) -> None:
    pipeline = pipeline_for()
    loans = pipeline.loan_input(120)

    dag_run = pipeline.run(
        "loan_disclosure_review",
        loans,
        spec_changes=lambda s: s.model_copy(update={"budget": BudgetSpec(usd=0.0001)}),
    )

    assert dag_run.state == "failed"
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert (states["sample_validate"], states["cost_guard"]) == ("success", "failed")
    stats = pipeline.emulator.stats()
    assert stats["batches_created"] == 0
    # The estimate comes from the sample's billed usage: no call is needed for it.
    assert stats["count_tokens_calls"] == 0
    assert pipeline.store().batches_created(_run_of(pipeline).id) == 0
    log = capfd.readouterr()
    assert "Over budget for loan_disclosure_review" in log.out + log.err
    assert "over the budget of $0.00. No batch was created" in log.out + log.err


def test_warn_budget_goes_on_and_the_report_sets_the_estimate_against_the_actual(pipeline_for) -> None:
    pipeline = pipeline_for()
    loans = pipeline.loan_input(120)

    dag_run = pipeline.run(
        "loan_disclosure_review",
        loans,
        spec_changes=lambda s: s.model_copy(update={"budget": BudgetSpec(usd=0.0001, action="warn")}),
    )

    assert dag_run.state == "success"
    report = _run_of(pipeline).report
    guard = next(lever for lever in report["levers"] if lever["lever"] == "cost guard")
    estimated, actual = (float(part.split("$")[1]) for part in guard["value"].split(", "))
    assert actual == round(report["cost_usd"], 4)
    # The sample's own billed tokens (cached prefix included) foresee the rest of the night.
    assert abs(estimated - actual) <= 0.15 * actual
    assert "of the actual" in guard["rationale"] and "budget $0.00 (warn)" in guard["rationale"]
    assert "100 published" in guard["rationale"]


def test_health_threshold_breach_fails_the_run_naming_the_class_and_share(pipeline_for, capfd) -> None:
    # 20 % invalid_request_error against the spec's fail threshold of 5 %. The faults reach the
    # synchronous sample too, so the gate is lowered to 40 %: with any seed the sample passes and the
    # share lands far above the threshold (a share under 5 % of 170 requests drawn at 20 % would
    # take a 5-sigma draw).
    pipeline = pipeline_for(faults={"requests": {"errored": {"invalid_request_error": 0.2}}})
    loans = pipeline.loan_input(200)

    dag_run = pipeline.run(
        "loan_disclosure_review",
        loans,
        sample_size=30,
        spec_changes=lambda s: s.model_copy(
            update={"sample": s.sample.model_copy(update={"pass_gate": 0.4})}
        ),
    )

    assert dag_run.state == "failed"
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["publish"] == "failed"
    run = _run_of(pipeline)
    assert run.status == "failed"
    signal = next(s for s in run.report["health"]["signals"] if s["cause"] == "invalid_request_error")
    assert signal["level"] == "fail" and 0.05 < signal["share"] < 0.4
    share = f"{signal['share']:.1%}"
    log = capfd.readouterr()
    assert f"Health threshold breached (outputs are published): invalid_request_error is {share}" in (
        log.out + log.err
    )
    assert "above the fail threshold 5.0%" in signal["message"]
    assert "outgrowing the context window" in signal["message"]


def test_count_tokens_only_for_records_outside_the_samples_sizes(pipeline_for) -> None:
    from claude_batch.strategy.cost import SHAPE_MARGIN

    pipeline = pipeline_for()
    loans = pipeline.loan_input(150)
    # Ten loan files 2 to 11 times the usual size: most fall outside the sizes a sample of 30 covers.
    lines = loans.read_text().splitlines()
    for index in range(10):
        record = json.loads(lines[index * 15])
        record["loan_file_id"], record["text"] = f"9{index:05d}", record["text"] * (index + 2)
        lines.append(json.dumps(record))
    loans.write_text("\n".join(lines) + "\n")

    dag_run = pipeline.run(
        "loan_disclosure_review",
        loans,
        sample_size=30,
        spec_changes=lambda s: s.model_copy(update={"budget": BudgetSpec(usd=1000)}),
    )

    assert dag_run.state == "success"
    sampled = {
        json.loads(line)["custom_id"]
        for line in (
            pipeline.tmp_path / "data" / "loan_disclosure_review" / "2026-06-07" / "sample" / "requests.jsonl"
        )
        .read_text()
        .splitlines()
    }
    sizes = {
        f"loan-2026-06-07-{json.loads(line)['loan_file_id']}": len(json.loads(line)["text"]) for line in lines
    }
    smallest, largest = min(sizes[c] for c in sampled), max(sizes[c] for c in sampled)
    outside = [
        c
        for c, size in sizes.items()
        if c not in sampled and not smallest * (1 - SHAPE_MARGIN) <= size <= largest * (1 + SHAPE_MARGIN)
    ]
    assert outside  # the seed leaves some of the long files out of the sample
    assert pipeline.emulator.stats()["count_tokens_calls"] == len(outside)
    report = _run_of(pipeline).report
    guard = next(lever for lever in report["levers"] if lever["lever"] == "cost guard")
    assert f"{len(outside)} requests outside its sizes counted, 0 extrapolated" in guard["rationale"]
    estimated, actual = (float(part.split("$")[1]) for part in guard["value"].split(", "))
    assert abs(estimated - actual) <= 0.15 * actual


def test_records_too_large_for_one_request_are_in_the_estimate_priced_as_their_chunks(pipeline_for) -> None:
    from claude_workloads.loan_disclosure_review import Disclosure
    from tests.airflow.test_chunking import WINDOW, WINDOW_BYTES, oversized_input, small_window

    pipeline = pipeline_for(context_window=WINDOW)
    # 60 ordinary loan files and 3 of ten times the window: their chunks are most of the night's input.
    files = {f"93000{n}": (10 * WINDOW_BYTES, dict.fromkeys(Disclosure, 0.5)) for n in range(3)}
    loans = oversized_input(pipeline.tmp_path / "inputs" / "big_files.jsonl", files, ordinary=60)

    dag_run = pipeline.run(
        "loan_disclosure_review",
        loans,
        sample_size=20,
        spec_changes=lambda s: small_window(s).model_copy(
            update={"budget": BudgetSpec(usd=1000, action="warn")}
        ),
    )

    assert dag_run.state == "success"
    report = _run_of(pipeline).report
    chunks = report["chunking"]["chunks_sent"]
    assert report["chunking"]["records_chunked"] == 3 and chunks >= 3 * 20
    guard = next(lever for lever in report["levers"] if lever["lever"] == "cost guard")
    estimated, actual = (float(part.split("$")[1]) for part in guard["value"].split(", "))
    # Left out, the chunks made the estimate well under half the actual (-61 % when measured).
    assert abs(estimated - actual) <= 0.15 * actual, guard
    assert f"3 records too large for one request as {chunks} chunk requests" in guard["rationale"]
