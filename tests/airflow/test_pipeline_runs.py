"""The nightly DAG end to end under dag.test() against the emulator: outcomes, not calls."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

import anthropic
import pytest
import sqlalchemy as sa
from sqlalchemy import select

from claude_batch.strategy.batch_api import batch_request_total
from claude_batch.strategy.report import RunReport
from claude_demo.loans import loan_files
from tests.airflow.approval_support import on_call
from tests.airflow.conftest import API_KEY
from tests.airflow.submit_support import shard_file


def _report(
    pipeline, workload: str = "loan_disclosure_review", run_date: date = date(2026, 6, 7)
) -> RunReport:
    store = pipeline.store()
    run = next(r for r in store.recent_runs(workload) if r.logical_date == run_date)
    return RunReport.model_validate({k: v for k, v in run.report.items() if k in RunReport.model_fields})


def _tonight(store) -> int | None:
    runs = store.recent_runs("loan_disclosure_review")
    return next((run.id for run in runs if run.logical_date == date(2026, 6, 7)), None)


def test_clean_run_publishes_every_record_once_through_one_batch(pipeline_for) -> None:
    pipeline = pipeline_for(processing_seconds=1.0)
    loans = pipeline.loan_input(150)

    dag_run = pipeline.run("loan_disclosure_review", loans)

    assert dag_run.state == "success"
    report = _report(pipeline)
    assert (report.inputs, report.published, report.quarantined_total) == (150, 150, 0)
    assert report.batches_created == 1
    stats = pipeline.emulator.stats()
    assert stats["batches_created"] == 1
    # The sample's 100 valid answers are published as they are; only the other 50 go in the batch.
    assert report.from_sample == 100
    assert (stats["messages_created"], stats["batch_requests_submitted"]) == (100, 50)
    assert report.cost_usd < report.all_sync_cost_usd
    assert pipeline.store().outputs_count("loan_disclosure_review", date(2026, 6, 7)) == 150


EVERY_FAILURE_KIND = {
    "requests": {
        "errored": {
            "api_error": 0.04,
            "overloaded_error": 0.03,
            "rate_limit_error": 0.02,
            "invalid_request_error": 0.03,
        },
        "expired": 0.03,
        "canceled": 0.03,
        "invalid_output": 0.04,
    },
    "endpoints": {
        "create_batch": {"rate_limited": 0.3, "retry_after_seconds": 0},
        "retrieve_batch": {"not_found_after_create": 0.5, "not_found_window_seconds": 1.0, "api_error": 0.1},
        "results": {"truncated": 0.4},
    },
}


def test_every_failure_kind_ends_published_or_quarantined_with_a_reason(pipeline_for) -> None:
    pipeline = pipeline_for(processing_seconds=1.0, faults=EVERY_FAILURE_KIND, seed=3)
    loans = pipeline.loan_input(300)

    dag_run = pipeline.run("loan_disclosure_review", loans)

    assert dag_run.state == "success"
    report = _report(pipeline)
    assert report.inputs == 300
    assert report.published + report.quarantined_total == 300
    assert report.rounds >= 1
    assert report.recovered > 0
    # Only what no resubmission fixes is quarantined: requests the API rejects, and answers still
    # invalid after their one repair. Every transient failure was recovered.
    assert report.quarantined.get("invalid_request", 0) > 0
    assert set(report.quarantined) <= {"invalid_request", "invalid_output"}
    store = pipeline.store()
    run = next(r for r in store.recent_runs("loan_disclosure_review") if r.logical_date == date(2026, 6, 7))
    rows = store.quarantine_rows(run.id)
    assert all(row.custom_id and row.custom_id in row.reason for row in rows)
    assert all("after one repair" in row.reason for row in rows if row.quarantine_class == "invalid_output")
    assert store.outputs_count("loan_disclosure_review", date(2026, 6, 7)) == report.published
    stats = pipeline.emulator.stats()
    assert stats["batches_created"] == report.batches_created
    assert stats["custom_id_max_submissions"] <= 1 + 3  # first try + recovery.max_rounds
    # Every round's request files are in the shards table, each with the requests its attempt sent.
    shards = {(s.round, s.shard_index): s.request_count for s in store.shards(run.id)}
    attempts = {(a.round, a.shard_index): a.request_count for a in store.attempts_of_run(run.id)}
    assert {r for r, _ in shards} == set(range(report.rounds + 1))
    assert all(attempts[key] == count for key, count in shards.items())


def test_failing_sample_gate_stops_before_any_batch_is_created(pipeline_for) -> None:
    # Structured outputs keep answers in the schema; an answer cut off at max_tokens still breaks it.
    pipeline = pipeline_for(faults={"requests": {"cut_off": 0.5}}, seed=1)
    loans = pipeline.loan_input(120)

    dag_run = pipeline.run("loan_disclosure_review", loans)

    assert dag_run.state == "failed"
    stats = pipeline.emulator.stats()
    assert stats["batches_created"] == 0
    assert stats["messages_created"] > 0
    store = pipeline.store()
    run = next(r for r in store.recent_runs("loan_disclosure_review") if r.logical_date == date(2026, 6, 7))
    assert store.batches_created(run.id) == 0
    assert store.outputs_count("loan_disclosure_review", date(2026, 6, 7)) == 0


def test_a_sample_gate_under_warn_goes_on_without_paying_its_valid_answers_again(pipeline_for) -> None:
    pipeline = pipeline_for(faults={"requests": {"cut_off": 0.05}}, seed=1)
    loans = pipeline.loan_input(120)

    def warn_on_any_invalid_answer(spec):
        return spec.model_copy(
            update={"sample": spec.sample.model_copy(update={"action": "warn", "pass_gate": 1.0})}
        )

    dag_run = pipeline.run("loan_disclosure_review", loans, spec_changes=warn_on_any_invalid_answer)

    assert dag_run.state == "success"
    report = _report(pipeline)
    store = pipeline.store()
    round_zero = sum(
        a.request_count for a in store.attempts_of_run(_tonight(store)) if a.round == 0 and a.kind == "batch"
    )
    # The gate failed (some sample answers were cut off), yet its valid answers are published as
    # they are and only the other records go in the night's batch.
    assert 0 < report.from_sample < 100
    assert round_zero == report.inputs - report.from_sample
    assert report.inputs == report.published + report.quarantined_total == 120
    # The sample's invalid answers are not results "never sent": health raises no false alarm.
    assert report.health.shares.get("unknown", 0) == 0
    assert not [s for s in report.health.signals if "never sent" in s.message]


def _approve_on_any_invalid_answer(spec):
    return spec.model_copy(
        update={"sample": spec.sample.model_copy(update={"action": "approve", "pass_gate": 1.0})}
    )


def _sampled(pipeline) -> list[str]:
    """The custom_ids of the night's validation sample, as sent."""
    requests = (
        pipeline.tmp_path / "data" / "loan_disclosure_review" / "2026-06-07" / "sample" / "requests.jsonl"
    )
    return [json.loads(line)["custom_id"] for line in requests.read_text().splitlines()]


def _batched(pipeline) -> Counter[str]:
    """How many times each custom_id was sent in a batch, as the API saw it."""
    client = anthropic.Anthropic(base_url=pipeline.emulator.base_url, api_key=API_KEY)
    return Counter(
        line.custom_id
        for batch in client.messages.batches.list()
        for line in client.messages.batches.results(batch.id)
    )


def test_an_approved_sample_gate_publishes_its_valid_answers_and_pays_each_sampled_record_once(
    pipeline_for,
) -> None:
    pipeline = pipeline_for(faults={"requests": {"cut_off": 0.05}}, seed=1)
    loans = pipeline.loan_input(120)
    keys = {
        f"loan-2026-06-07-{json.loads(line)['loan_file_id']}": json.loads(line)["loan_file_id"]
        for line in loans.read_text().splitlines()
    }

    with on_call("Approve") as answered:
        dag_run = pipeline.run("loan_disclosure_review", loans, spec_changes=_approve_on_any_invalid_answer)

    assert (dag_run.state, len(answered)) == ("success", 1)
    store = pipeline.store()
    sampled = _sampled(pipeline)
    source = {
        cid: store.get_output("loan_disclosure_review", keys[cid], date(2026, 6, 7)).source for cid in sampled
    }
    from_sample = [cid for cid in sampled if source[cid] == "sample"]
    # The gate failed (some sample answers were cut off) and was approved: the valid answers are
    # published as they are, and none of those records was sent again in a batch.
    assert 0 < len(from_sample) < len(sampled)
    batched = _batched(pipeline)
    assert [cid for cid in from_sample if batched[cid]] == []
    report = _report(pipeline)
    assert report.from_sample == len(from_sample)
    round_zero = sum(
        a.request_count for a in store.attempts_of_run(_tonight(store)) if a.round == 0 and a.kind == "batch"
    )
    assert round_zero == report.inputs - report.from_sample
    assert report.inputs == report.published + report.quarantined_total == 120
    lever = next(lever for lever in report.levers if lever.lever == "sample size")
    assert f"approved: {len(from_sample)} valid answers published as they are" in lever.rationale

    # Approved again (a retried gate asks again; here the date is run again): the answers are
    # re-read, not paid, and kept once.
    paid = pipeline.emulator.stats()
    with on_call("Approve") as answered:
        again = pipeline.run("loan_disclosure_review", loans, spec_changes=_approve_on_any_invalid_answer)

    assert (again.state, len(answered)) == ("success", 1)
    stats = pipeline.emulator.stats()
    assert (stats["messages_created"], stats["batch_requests_submitted"]) == (
        paid["messages_created"],
        paid["batch_requests_submitted"],
    )
    assert _batched(pipeline) == batched
    assert _report(pipeline).from_sample == len(from_sample)
    assert store.outputs_count("loan_disclosure_review", date(2026, 6, 7)) == report.published


def test_a_rejected_sample_gate_keeps_none_of_its_answers_and_creates_no_batch(pipeline_for) -> None:
    pipeline = pipeline_for(faults={"requests": {"cut_off": 0.05}}, seed=1)
    loans = pipeline.loan_input(120)

    with on_call("Reject") as answered:
        dag_run = pipeline.run("loan_disclosure_review", loans, spec_changes=_approve_on_any_invalid_answer)

    assert (dag_run.state, len(answered)) == ("failed", 1)
    assert pipeline.emulator.stats()["batches_created"] == 0
    assert pipeline.emulator.stats()["messages_created"] == len(_sampled(pipeline))
    assert pipeline.store().outputs_count("loan_disclosure_review", date(2026, 6, 7)) == 0
    # Nothing kept for a later night of the date to publish or leave out of its shards.
    assert not (pipeline.tmp_path / "data" / "loan_disclosure_review" / "2026-06-07" / "partitions").exists()


def test_rerunning_a_date_reattaches_instead_of_paying_twice(pipeline_for) -> None:
    pipeline = pipeline_for(processing_seconds=0.5)
    loans = pipeline.loan_input(130)

    first = pipeline.run("loan_disclosure_review", loans)
    second = pipeline.run("loan_disclosure_review", loans)

    assert (first.state, second.state) == ("success", "success")
    stats = pipeline.emulator.stats()
    assert stats["batches_created"] == 1
    assert stats["custom_id_max_submissions"] == 1
    assert pipeline.store().outputs_count("loan_disclosure_review", date(2026, 6, 7)) == 130
    assert _report(pipeline).batches_created == 1


def test_a_close_deadline_routes_the_bulk_to_the_messages_api(pipeline_for) -> None:
    pipeline = pipeline_for()
    loans = pipeline.loan_input(110)

    dag_run = pipeline.run(
        "loan_disclosure_review", loans, deadline=datetime.now(UTC) + timedelta(minutes=90)
    )

    assert dag_run.state == "success"
    report = _report(pipeline)
    assert (report.published, report.batches_created) == (110, 0)
    assert pipeline.emulator.stats()["batches_created"] == 0
    route = next(lever for lever in report.levers if lever.lever == "route")
    assert route.value == "sync"
    assert "deadline" in route.rationale
    assert report.cost_usd == pytest.approx(report.all_sync_cost_usd)


def test_backfill_of_three_dates_keeps_each_date_apart(pipeline_for) -> None:
    pipeline = pipeline_for(processing_seconds=0.5)
    loans = pipeline.loan_input(100)
    dates = [datetime(2026, 6, day, 5, 0, tzinfo=UTC) for day in (7, 8, 9)]

    states = [pipeline.run("loan_disclosure_review", loans, logical_date=d).state for d in dates]

    assert states == ["success"] * 3
    store = pipeline.store()
    for day in (7, 8, 9):
        assert store.outputs_count("loan_disclosure_review", date(2026, 6, day)) == 100
    # The first date's sample (100, the prompt is new) answered all its 100 files: no batch; the next
    # dates sample 30 (the prompt passed) and send the other 70 in one batch each.
    assert pipeline.emulator.stats()["batches_created"] == 2
    # The same loan id gets a different custom_id per date: no result can land on the wrong date.
    output = store.get_output("loan_disclosure_review", "100000", date(2026, 6, 8))
    assert output is not None and output.custom_id == "loan-2026-06-08-100000"


def test_a_crash_between_create_and_ledger_write_adopts_the_orphan_batch(pipeline_for) -> None:
    from airflow.sdk import ObjectStoragePath

    from claude_batch.hooks.claude import ClaudeBatchHook
    from claude_batch.stages.run import file_digest, run_dir_for
    from claude_batch.strategy.records import read_jsonl
    from claude_batch.strategy.sampling import sample_size, select_sample
    from claude_batch.strategy.sharding import valid_records, write_shards
    from claude_batch.strategy.spec import load_workload

    pipeline = pipeline_for(processing_seconds=0.5)
    loans = pipeline.loan_input(120)
    spec = load_workload("loan_disclosure_review")
    run_date = date(2026, 6, 7)
    # What the crashed try left behind: its shard file, its intent row with the start of its create
    # (written under the create lock, before the paid call), and a batch at the API that no ledger
    # row holds.
    shards_dir = ObjectStoragePath(run_dir_for(spec.name, run_date)) / "shards"
    # It sharded after its sample had answered (every answer valid here): those records are in no shard.
    records = valid_records(spec, read_jsonl(ObjectStoragePath(f"file://{loans}")), run_date)
    sampled = select_sample(records, sample_size(spec, False, 120), spec.stratify_by, spec.sample.seed)
    answered = {item.custom_id for item in sampled}
    plan = write_shards(
        spec, read_jsonl(ObjectStoragePath(f"file://{loans}")), shards_dir, run_date, answered
    )
    shard_file = ObjectStoragePath(plan.shards[0].path)
    store = pipeline.store()
    run = store.open_run(spec.name, run_date, "crashed-try")
    intent = store.record_intent(run.id, 0, 0, "batch", plan.shards[0].request_count, file_digest(shard_file))
    with store.batch_create_lock():
        store.begin_create(intent.id, mark=None)
        orphan = ClaudeBatchHook().create_batch_from_file(shard_file)

    dag_run = pipeline.run("loan_disclosure_review", loans)

    assert dag_run.state == "success"
    attempt = store.attempt(run.id, 0, 0)
    assert (attempt.batch_id, attempt.adopted) == (orphan.id, True)
    assert pipeline.emulator.stats()["batches_created"] == 1
    assert store.outputs_count(spec.name, run_date) == 120


def test_store_on_postgresql_holds_the_same_run(pipeline_for, postgres_url) -> None:
    pipeline = pipeline_for(store_url=postgres_url, processing_seconds=0.5)
    loans = pipeline.loan_input(110)

    dag_run = pipeline.run("loan_disclosure_review", loans)

    assert dag_run.state == "success"
    report = _report(pipeline)
    assert (report.inputs, report.published) == (110, 110)
    engine = sa.create_engine(postgres_url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT count(*) FROM outputs WHERE workload = 'loan_disclosure_review'")
        )
        assert rows.scalar_one() == 110
    engine.dispose()


def test_without_a_triggerer_the_wait_pokes_in_reschedule_mode(pipeline_for) -> None:
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session

    # The batch takes 5 s: the first poke finds it in progress however slowly the wait task starts.
    pipeline = pipeline_for(processing_seconds=5.0)
    loans = pipeline.loan_input(130)

    # A sample of 30 is answered synchronously; the other 100 records go through the batch.
    dag_run = pipeline.run("loan_disclosure_review", loans, sample_size=30, deferrable=False)

    assert dag_run.state == "success"
    assert _report(pipeline).published == 130
    waits = [ti for ti in dag_run.get_task_instances() if ti.task_id == "shards.wait"]
    assert len(waits) == 1 and waits[0].state == "success"
    assert waits[0].next_method is None  # it never deferred: no trigger was involved
    with create_session() as session:
        reschedules = session.scalars(select(TaskReschedule).where(TaskReschedule.ti_id == waits[0].id)).all()
    # Each poke that found the batch still running gave the worker slot back until the next poke.
    assert len(reschedules) >= 1
    # Each next poke came after the date the last one asked for. (Not against the row's start_date:
    # the execution API stamps that when the call arrives, which under load is after the poke's
    # `now + poke_interval`.)
    dates = [r.reschedule_date for r in sorted(reschedules, key=lambda r: r.id)]
    assert all(earlier < later for earlier, later in pairwise(dates))


def test_document_tagging_runs_from_its_own_spec(pipeline_for) -> None:
    from claude_demo.documents import documents

    pipeline = pipeline_for(processing_seconds=0.5)
    docs = pipeline.tmp_path / "inputs" / "docs.jsonl"
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text("".join(json.dumps(d) + "\n" for d in documents(120)))

    dag_run = pipeline.run("document_tagging", docs)

    assert dag_run.state == "success"
    report = _report(pipeline, workload="document_tagging")
    assert (report.inputs, report.published + report.quarantined_total) == (120, 120)
    output = pipeline.store().get_output("document_tagging", "kb-00007", date(2026, 6, 7))
    assert output is not None and 1 <= len(output.output["tags"]) <= 3


def test_the_report_names_the_recovery_route_the_ledger_ran_even_when_rerun_near_the_deadline(
    pipeline_for,
) -> None:
    # Round 1 is cut and sent as a batch while the deadline is far. The date is run again when the
    # deadline is 40 minutes away: deciding afresh would say "sync" for round 1, but round 1 already
    # ran as a batch, so the re-run re-attaches to it and the report must say "batch".
    pipeline = pipeline_for(processing_seconds=0.5, faults={"requests": {"expired": 0.1}})
    loans = pipeline.loan_input(130)  # a sample of 30, 100 in the batch

    def small_batches(spec):
        return spec.model_copy(update={"routing": spec.routing.model_copy(update={"min_batch_volume": 1})})

    runs = [
        pipeline.run("loan_disclosure_review", loans, sample_size=30, spec_changes=small_batches),
        pipeline.run(
            "loan_disclosure_review",
            loans,
            sample_size=30,
            spec_changes=small_batches,
            deadline=datetime.now(UTC) + timedelta(minutes=40),
        ),
    ]

    assert [dag_run.state for dag_run in runs] == ["success", "success"]
    store = pipeline.store()
    run = next(r for r in store.recent_runs("loan_disclosure_review") if r.logical_date == date(2026, 6, 7))
    ran = {attempt.round: attempt.kind for attempt in store.attempts_of_run(run.id) if attempt.round > 0}
    reported = {
        int(lever.lever.split()[2]): lever.value
        for lever in _report(pipeline).levers
        if lever.lever.startswith("recovery round")
    }
    assert ran.get(1) == "batch"
    assert reported == ran
    assert pipeline.emulator.stats()["batches_created"] == _report(pipeline).batches_created


def test_a_recovery_round_passes_the_processing_queue_check_like_a_shard(pipeline_for, monkeypatch) -> None:
    # Another night's batch of 55 requests starts while tonight's round 0 runs; the queue holds 55,
    # so any recovery round overflows it while that batch counts.
    # Nobody waits on that batch, so only a queue check that polls what the ledger holds open can
    # record its end: recovery round 1 must make that check before it creates its batch.
    monkeypatch.setenv("CLAUDE_BATCH_MAX_REQUESTS_IN_FLIGHT", "55")
    pipeline = pipeline_for(processing_seconds=2.0, faults={"requests": {"expired": 0.1}})
    loans = pipeline.loan_input(130)  # a sample of 30, 100 in the batch
    store = pipeline.store()
    other_night = store.open_run("loan_disclosure_review", date(2026, 6, 6), "other-night")
    other_file = shard_file(pipeline.tmp_path, 0, list(loan_files(55)))
    client = anthropic.Anthropic(base_url=pipeline.emulator.base_url, api_key=API_KEY)
    started = threading.Event()

    def start_the_other_night_once_round_0_is_submitted() -> None:
        while not started.is_set():
            run_id = _tonight(store)
            attempt = None if run_id is None else store.attempt(run_id, 0, 0)
            if attempt is not None and attempt.status == "submitted":
                intent = store.record_intent(other_night.id, 0, 0, "batch", 55, "digest-of-other-night")
                requests = [json.loads(line) for line in other_file.read_text().splitlines()]
                store.attach_batch(intent.id, client.messages.batches.create(requests=requests).id)
                started.set()
            else:
                started.wait(0.02)

    other = threading.Thread(target=start_the_other_night_once_round_0_is_submitted, daemon=True)
    other.start()
    dag_run = pipeline.run(
        "loan_disclosure_review",
        loans,
        sample_size=30,
        spec_changes=lambda s: s.model_copy(
            update={"routing": s.routing.model_copy(update={"min_batch_volume": 1})}
        ),
    )
    started.set()
    other.join(timeout=30)

    assert dag_run.state == "success"
    recorded = store.attempt(other_night.id, 0, 0)
    assert recorded is not None and recorded.status == "ended"
    assert batch_request_total(recorded.request_counts) == 55 and recorded.request_counts.processing == 0
    tonight = store.attempts_of_run(_tonight(store))
    assert any(attempt.round == 1 and attempt.kind == "batch" for attempt in tonight)
