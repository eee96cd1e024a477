"""What survives a crash (the --state file) and what the emulator's clock does (expiry, archive)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import anthropic
import pytest
from anthropic.types.messages import MessageBatch

from claude_emulator.testing import running_emulator
from tests.unit.emulator.support import batch_request, sdk_client

DAY = 24 * 3600
# Far beyond any wait here, so a loaded machine slows these tests down and never fails them.
PATIENCE_SECONDS = 120.0


def _retrieve_when(
    client: anthropic.Anthropic, batch_id: str, done: Callable[[MessageBatch], bool]
) -> MessageBatch:
    """Poll the batch until ``done`` holds for it: the emulator's clock moves with real time."""
    give_up = time.monotonic() + PATIENCE_SECONDS
    while not done(batch := client.messages.batches.retrieve(batch_id)):
        assert time.monotonic() < give_up, f"batch {batch_id} never got there: {batch}"
        time.sleep(0.02)
    return batch


def _ended(batch: MessageBatch) -> bool:
    return batch.processing_status == "ended"


def test_a_killed_emulator_restarted_on_its_state_still_serves_batches_and_results(tmp_path: Path) -> None:
    state = tmp_path / "emulator.db"
    with running_emulator(state=state, processing_seconds=0.5) as emulator:
        client = sdk_client(emulator)
        ended = client.messages.batches.create(requests=[batch_request(f"a-{i}") for i in range(5)])
        _retrieve_when(client, ended.id, _ended)
        before_crash = [line.model_dump() for line in client.messages.batches.results(ended.id)]
        in_flight = client.messages.batches.create(requests=[batch_request(f"b-{i}") for i in range(5)])
        port = emulator.base_url

        emulator.kill()
        emulator.restart()

        assert emulator.base_url == port
        after_restart = [line.model_dump() for line in client.messages.batches.results(ended.id)]
        finished = _retrieve_when(client, in_flight.id, _ended)
        resubmitted = client.messages.batches.create(requests=[batch_request("a-0")])
        listed = [batch.id for batch in client.messages.batches.list()]
        stats = emulator.stats()

    assert after_restart == before_crash and len(before_crash) == 5
    assert finished.request_counts.succeeded == 5
    assert listed == [resubmitted.id, in_flight.id, ended.id]
    assert stats["batches_created"] == 3 and stats["custom_id_max_submissions"] == 2


def test_sigterm_stops_the_emulator_cleanly() -> None:
    with running_emulator() as emulator:
        exit_status = emulator.stop()

        assert exit_status == 0 and not emulator.running


def test_a_restart_removes_a_batch_body_a_crash_left_half_uploaded(tmp_path: Path) -> None:
    state = tmp_path / "emulator.db"
    with running_emulator(state=state) as emulator:
        leftover = tmp_path / ".emulator.db.upload-0123abcd"
        leftover.write_bytes(b'{"requests": [')
        emulator.kill()
        emulator.restart()

        assert not leftover.exists()
        assert sdk_client(emulator).messages.batches.list().data == []


def test_requests_unfinished_when_24_hours_pass_expire() -> None:
    # A day passes in a real second; the batch would need two days, so about half its requests expire.
    with running_emulator(time_scale=DAY, processing_seconds=2 * DAY) as emulator:
        client = sdk_client(emulator)
        batch = client.messages.batches.create(requests=[batch_request(f"r-{i}") for i in range(40)])
        ended = _retrieve_when(client, batch.id, _ended)
        kinds = [line.result.type for line in client.messages.batches.results(batch.id)]

    assert batch.processing_status == "in_progress"
    assert ended.ended_at == ended.expires_at == batch.expires_at
    counts = ended.request_counts
    assert counts.expired > 0 and counts.succeeded > 0 and counts.expired + counts.succeeded == 40
    assert kinds.count("expired") == counts.expired


def test_results_are_archived_29_days_after_creation() -> None:
    # 29 days pass in half a real second.
    with running_emulator(time_scale=2 * 29 * DAY) as emulator:
        client = sdk_client(emulator)
        batch = client.messages.batches.create(requests=[batch_request("r-1")])
        archived = _retrieve_when(client, batch.id, lambda seen: seen.archived_at is not None)

        with pytest.raises(anthropic.NotFoundError, match="were archived"):
            client.messages.batches.results(batch.id)

    assert batch.archived_at is None
    assert archived.archived_at == batch.created_at + timedelta(days=29)
