"""The ledger: an intent before every paid call, one batch per intent, never one batch for two."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from enum import StrEnum

import pytest

from claude_batch.store import (
    AttemptRecord,
    LedgerConflictError,
    RequestCounts,
    RunRecord,
    Store,
    UnknownAttemptError,
)
from tests.unit.store.conftest import LOGICAL_DATE


def _intent(store: Store, run: RunRecord, shard: int = 0, round: int = 0, count: int = 100) -> AttemptRecord:
    return store.record_intent(run.id, shard, round, "batch", count, f"sha256:{shard}-{round}")


def test_retried_submit_gets_back_the_first_attempt_and_its_batch(store: Store, run: RunRecord) -> None:
    first = _intent(store, run)
    store.attach_batch(first.id, "msgbatch_01")

    retried = _intent(store, run)

    assert retried.id == first.id
    assert retried.batch_id == "msgbatch_01"
    assert retried.status == "submitted"
    assert len(store.attempts_of_run(run.id)) == 1


def test_new_intent_has_no_batch_and_is_not_in_flight(store: Store, run: RunRecord) -> None:
    attempt = _intent(store, run, count=250)

    assert (attempt.status, attempt.batch_id, attempt.request_count) == ("intent", None, 250)
    assert attempt.request_counts == RequestCounts()
    assert store.requests_in_flight() == 0
    assert store.attempt(run.id, 0, 0) == attempt
    assert store.attempt(run.id, 0, 1) is None


def test_concurrent_intents_for_one_key_make_one_attempt(store_url: str, run: RunRecord) -> None:
    barrier = threading.Barrier(4)
    results: list[AttemptRecord] = []

    def submit() -> None:
        with Store.connect(store_url) as own_store:
            barrier.wait()
            results.append(_intent(own_store, run))

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 4
    assert {attempt.id for attempt in results} == {results[0].id}


def test_attaching_the_same_batch_again_is_a_no_op(store: Store, run: RunRecord) -> None:
    attempt = _intent(store, run)
    attached = store.attach_batch(attempt.id, "msgbatch_01")

    assert store.attach_batch(attempt.id, "msgbatch_01") == attached


def test_a_second_batch_for_one_attempt_is_refused(store: Store, run: RunRecord) -> None:
    attempt = _intent(store, run)
    store.attach_batch(attempt.id, "msgbatch_01")

    with pytest.raises(LedgerConflictError, match="already has batch msgbatch_01"):
        store.attach_batch(attempt.id, "msgbatch_02")
    assert store.batches_created(run.id) == 1


def test_a_batch_of_another_attempt_cannot_be_adopted(store: Store, run: RunRecord) -> None:
    owner = _intent(store, run, shard=0)
    orphan_seeker = _intent(store, run, shard=1)
    store.attach_batch(owner.id, "msgbatch_01")

    assert store.is_batch_known("msgbatch_01")
    assert not store.is_batch_known("msgbatch_99")
    with pytest.raises(LedgerConflictError, match=f"belongs to attempt {owner.id}"):
        store.attach_batch(orphan_seeker.id, "msgbatch_01", adopted=True)


def test_an_adopted_orphan_is_marked_adopted(store: Store, run: RunRecord) -> None:
    attempt = _intent(store, run)

    adopted = store.attach_batch(attempt.id, "msgbatch_orphan", adopted=True)

    assert adopted.adopted
    assert adopted.submitted_at is not None
    assert store.batches_created(run.id) == 1


def test_batches_are_only_attached_to_known_batch_attempts(store: Store, run: RunRecord) -> None:
    sync = store.record_intent(run.id, 0, 0, "sync", 10, "sha256:x")

    with pytest.raises(UnknownAttemptError):
        store.attach_batch(9999, "msgbatch_01")
    with pytest.raises(LedgerConflictError, match="synchronous"):
        store.attach_batch(sync.id, "msgbatch_01")


def test_requests_in_flight_sum_submitted_batches_of_every_run(store: Store, run: RunRecord) -> None:
    other_run = store.open_run("document_tagging", LOGICAL_DATE, "other")
    store.attach_batch(_intent(store, run, shard=0, count=100).id, "msgbatch_a")
    store.attach_batch(_intent(store, run, shard=1, count=40).id, "msgbatch_b")
    store.attach_batch(_intent(store, other_run, shard=0, count=7).id, "msgbatch_c")
    _intent(store, run, shard=2, count=1000)
    store.record_intent(run.id, 3, 0, "sync", 5, "sha256:sync")

    assert store.requests_in_flight() == 147

    store.update_attempt("msgbatch_b", "ended", {"succeeded": 40})

    assert store.requests_in_flight() == 107
    assert [attempt.batch_id for attempt in store.unfinished_batches()] == ["msgbatch_a", "msgbatch_c"]

    store.update_attempt("msgbatch_c", "canceled")

    assert store.requests_in_flight() == 100


def test_update_attempt_records_counts_and_end(store: Store, run: RunRecord) -> None:
    store.attach_batch(_intent(store, run).id, "msgbatch_01")
    ended_at = datetime(2026, 6, 7, 3, 12, tzinfo=UTC)

    polled = store.update_attempt("msgbatch_01", "submitted", {"processing": 60, "succeeded": 40})
    ended = store.update_attempt(
        "msgbatch_01", "ended", RequestCounts(succeeded=97, errored=2, expired=1), ended_at=ended_at
    )

    assert polled.request_counts == RequestCounts(processing=60, succeeded=40)
    assert ended.status == "ended"
    assert ended.request_counts == RequestCounts(succeeded=97, errored=2, expired=1)
    assert ended.ended_at == ended_at
    assert store.unfinished_batches() == []


def test_an_ended_attempt_never_goes_back_to_submitted(store: Store, run: RunRecord) -> None:
    store.attach_batch(_intent(store, run).id, "msgbatch_01")
    store.update_attempt("msgbatch_01", "canceled")

    with pytest.raises(LedgerConflictError, match="already canceled"):
        store.update_attempt("msgbatch_01", "submitted")
    assert store.update_attempt("msgbatch_01", "ended").status == "ended"


def test_a_cancel_arriving_after_the_end_keeps_the_end(store: Store, run: RunRecord) -> None:
    store.attach_batch(_intent(store, run).id, "msgbatch_01")
    store.update_attempt("msgbatch_01", "ended", {"succeeded": 100})

    assert store.update_attempt("msgbatch_01", "canceled").status == "ended"


def test_a_batch_attempt_is_submitted_only_by_attaching_its_batch(store: Store, run: RunRecord) -> None:
    attempt = _intent(store, run)

    with pytest.raises(LedgerConflictError, match="attach_batch"):
        store.update_attempt_by_id(attempt.id, "submitted")
    assert store.update_attempt_by_id(attempt.id, "failed").status == "failed"


def test_sync_attempts_move_through_the_ledger_by_id(store: Store, run: RunRecord) -> None:
    attempt = store.record_intent(run.id, 0, 1, "sync", 12, "sha256:recover")

    started = store.update_attempt_by_id(attempt.id, "submitted")
    ended = store.update_attempt_by_id(attempt.id, "ended", {"succeeded": 11, "errored": 1})

    assert started.submitted_at is not None
    assert (ended.status, ended.request_counts.succeeded, ended.request_counts.errored) == ("ended", 11, 1)
    assert ended.ended_at is not None
    assert store.batches_created(run.id) == 0
    assert store.requests_in_flight() == 0


def test_unknown_batches_kinds_and_statuses_are_refused(store: Store, run: RunRecord) -> None:
    with pytest.raises(UnknownAttemptError, match="msgbatch_nope"):
        store.update_attempt("msgbatch_nope", "ended")
    with pytest.raises(ValueError, match="kind"):
        store.record_intent(run.id, 0, 0, "stream", 1, "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="status"):
        store.update_attempt_by_id(_intent(store, run).id, "intent")


def test_attempts_of_run_are_ordered_by_round_then_shard(store: Store, run: RunRecord) -> None:
    for shard, round in [(1, 1), (0, 0), (1, 0), (0, 1)]:
        _intent(store, run, shard=shard, round=round)

    keys = [(attempt.round, attempt.shard_index) for attempt in store.attempts_of_run(run.id)]

    assert keys == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_strategy_string_enums_pass_straight_in(store: Store, run: RunRecord) -> None:
    class Route(StrEnum):
        BATCH = "batch"

    attempt = store.record_intent(run.id, 0, 0, Route.BATCH, 1, "sha256:x")  # type: ignore[arg-type]

    assert attempt.kind == "batch"


def test_creates_are_numbered_in_order_with_their_marks(store: Store, run: RunRecord) -> None:
    first, second = _intent(store, run, shard=0), _intent(store, run, shard=1)
    assert store.last_create() is None

    with store.batch_create_lock():
        begun = store.begin_create(first.id, None)
    with store.batch_create_lock():
        store.begin_create(second.id, "msgbatch_01")

    assert (begun.create_seq, begun.create_mark) == (1, None)
    last = store.last_create()
    assert last is not None
    assert (last.id, last.create_seq, last.create_mark) == (second.id, 2, "msgbatch_01")
    store.attach_batch(second.id, "msgbatch_02")
    with pytest.raises(LedgerConflictError, match="already has batch"):
        store.begin_create(second.id, "msgbatch_02")


def test_the_create_lock_lets_one_holder_in_at_a_time(store_url: str, run: RunRecord) -> None:
    # Two stores (two engines, as two worker processes have): the second waits for the first.
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def first_holder() -> None:
        with Store.connect(store_url) as own_store, own_store.batch_create_lock():
            order.append("first in")
            inside.set()
            release.wait(timeout=60)
            order.append("first out")

    def second_holder() -> None:
        inside.wait(timeout=60)
        with Store.connect(store_url) as own_store, own_store.batch_create_lock():
            order.append("second in")

    threads = [threading.Thread(target=first_holder), threading.Thread(target=second_holder)]
    for thread in threads:
        thread.start()
    inside.wait(timeout=60)
    # The second holder is blocked until the first lets go: nothing it does can be observed but its
    # absence, so the first lets go only after the second has had the chance to get in wrongly.
    threads[1].join(timeout=0.5)
    assert order == ["first in"]
    release.set()
    for thread in threads:
        thread.join(timeout=60)

    assert order == ["first in", "first out", "second in"]


def test_a_round_route_is_kept_as_first_decided(store: Store, run: RunRecord) -> None:
    first = store.decide_round_route(run.id, 1, "batch", "1,200 requests, 20 h left: batch")

    again = store.decide_round_route(run.id, 1, "sync", "1,200 requests, 2 h left: sync")

    assert (again.route, again.rationale, again.decided_at) == ("batch", first.rationale, first.decided_at)
    assert store.decide_round_route(run.id, 2, "sync", "small").route == "sync"
    with pytest.raises(ValueError, match="route"):
        store.decide_round_route(run.id, 3, "stream", "no such route")
