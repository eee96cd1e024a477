"""What survives a crash (the --state file) and what the emulator's clock does (expiry, archive)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import anthropic
import pytest

from claude_emulator.testing import running_emulator
from tests.unit.emulator.support import batch_request, sdk_client

DAY = 24 * 3600


def test_a_killed_emulator_restarted_on_its_state_still_serves_batches_and_results(tmp_path: Path) -> None:
    state = tmp_path / "emulator.db"
    with running_emulator(state=state, processing_seconds=0.5) as emulator:
        client = sdk_client(emulator)
        ended = client.messages.batches.create(requests=[batch_request(f"a-{i}") for i in range(5)])
        time.sleep(0.5)
        before_crash = [line.model_dump() for line in client.messages.batches.results(ended.id)]
        in_flight = client.messages.batches.create(requests=[batch_request(f"b-{i}") for i in range(5)])
        port = emulator.base_url

        emulator.kill()
        emulator.restart()

        assert emulator.base_url == port
        after_restart = [line.model_dump() for line in client.messages.batches.results(ended.id)]
        time.sleep(0.5)
        finished = client.messages.batches.retrieve(in_flight.id)
        resubmitted = client.messages.batches.create(requests=[batch_request("a-0")])
        listed = [batch.id for batch in client.messages.batches.list()]
        stats = emulator.stats()

    assert after_restart == before_crash and len(before_crash) == 5
    assert finished.processing_status == "ended" and finished.request_counts.succeeded == 5
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
        in_progress = client.messages.batches.retrieve(batch.id)
        time.sleep(1.1)
        ended = client.messages.batches.retrieve(batch.id)
        kinds = [line.result.type for line in client.messages.batches.results(batch.id)]

    assert in_progress.processing_status == "in_progress"
    assert ended.processing_status == "ended" and ended.ended_at == ended.expires_at
    counts = ended.request_counts
    assert counts.expired > 0 and counts.succeeded > 0 and counts.expired + counts.succeeded == 40
    assert kinds.count("expired") == counts.expired


def test_results_are_archived_29_days_after_creation() -> None:
    # 29 days pass in half a real second.
    with running_emulator(time_scale=2 * 29 * DAY) as emulator:
        client = sdk_client(emulator)
        batch = client.messages.batches.create(requests=[batch_request("r-1")])
        fresh = client.messages.batches.retrieve(batch.id)
        time.sleep(0.6)
        archived = client.messages.batches.retrieve(batch.id)

        with pytest.raises(anthropic.NotFoundError, match="were archived"):
            client.messages.batches.results(batch.id)

    assert fresh.archived_at is None
    assert archived.archived_at == batch.created_at + timedelta(days=29)
