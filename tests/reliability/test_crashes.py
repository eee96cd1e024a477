"""Crashes: SIGKILL the task process at each stage boundary (``claude_batch.faultpoints``), and the
emulator mid-results; then re-run the date as an on-call person would. Batches created must equal
shards + batch recovery rounds (never more), and every valid input must be published exactly once.

The DAG runs in a child process (``tests/reliability/driver.py``, ``dag.test()``) with its own
metadata DB, so a crash point really kills the process that runs the task; the next run of the same
logical date (``dag.test`` replaces the dead run, as clearing it would) re-attaches through the ledger.

Fast variant: one night with a crash at every boundary in turn (each re-run dies at the next one),
then a clean re-run. ``CLAUDE_BATCH_LONG=1`` adds each boundary alone: crash there, re-run.
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from claude_batch.store import Store
from claude_batch.strategy.spec import load_workload
from tests.reliability import driver
from tests.reliability.conftest import long_variant

WORKLOAD = "loan_disclosure_review"
RUN_DATE = date(2026, 6, 7)
LOGICAL_DATE = datetime(2026, 6, 7, 5, tzinfo=UTC)
# A night of the fast variant: recovery rounds are small enough to go through the Messages API.
RECORDS = 120
REQUEST_FAULTS = {"requests": {"expired": 0.1, "errored": {"api_error": 0.05}}}
# The long variant's: a quarter of the requests fail, so recovery round 1 is a batch of its own
# (over the spec's min_batch_volume of 100); expired stays under the spec's health threshold (20 %).
LONG_RECORDS = 500
LONG_REQUEST_FAULTS = {
    "requests": {"expired": 0.12, "errored": {"api_error": 0.08, "overloaded_error": 0.06}}
}
BOUNDARIES = [
    "submit.after_intent",
    "submit.after_create",
    "wait.started",
    "partition.after_classify",
    "publish.after_first_upsert",
]


@pytest.fixture(scope="module")
def metadata_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated Airflow metadata DB; each test's Airflow home starts from a copy."""
    return driver.migrate(tmp_path_factory.mktemp("airflow-template"))


class Night:
    """One date of the workload, run in child processes against one emulator and one store."""

    def __init__(self, tmp_path: Path, template: Path, emulator, records: int) -> None:
        from claude_demo.loans import write_loan_files

        self.emulator = emulator
        self.records = records
        self.store_url = f"sqlite:///{tmp_path / 'store.db'}"
        home = driver.migrated_home(template, tmp_path / "airflow_home")
        self.env = driver.environment(
            home, emulator_url=emulator.base_url, api_key="sk-ant-crash-suite", store_url=self.store_url,
            data_uri=f"file://{tmp_path / 'data'}",
        )  # fmt: skip
        self.loans = write_loan_files(tmp_path / "inputs" / "loans.jsonl", records)

    def run(self, crash_at: str | None = None) -> tuple[int, str]:
        env = dict(self.env)
        if crash_at:
            env["CLAUDE_BATCH_CRASH_AT"] = crash_at
        return driver.run(env, self.loans, logical_date=LOGICAL_DATE)

    def crash(self, at: str) -> None:
        code, output = self.run(at)
        assert code == -9, f"the run was to be killed at {at}, it exited {code}:\n{output[-3000:]}"
        assert f"crash point {at} reached" in output

    def check_exactly_once_and_no_double_spend(self, recovery_batches_at_least: int = 0) -> None:
        store = Store.connect(self.store_url)
        run = next(r for r in store.recent_runs(WORKLOAD) if r.logical_date == RUN_DATE)
        batch_attempts = [a for a in store.attempts_of_run(run.id) if a.kind == "batch" and a.batch_id]
        shards = [s for s in store.shards(run.id) if s.round == 0]
        recovery_batches = [a for a in batch_attempts if a.round > 0]
        stats = self.emulator.stats()
        # Batches paid for = shards + recovery rounds that went through a batch, never more.
        assert (
            stats["batches_created"] == len(shards) + len(recovery_batches) == store.batches_created(run.id)
        )
        assert len(recovery_batches) >= recovery_batches_at_least
        assert len({a.batch_id for a in batch_attempts}) == len(batch_attempts)
        assert run.report["rounds"] >= 1
        assert stats["custom_id_max_submissions"] <= 1 + load_workload(WORKLOAD).recovery.max_rounds
        # Every valid input published exactly once (or quarantined with a reason), nothing twice.
        accounting = store.accounting(run.id)
        assert accounting.balanced, accounting
        assert accounting.inputs == self.records
        assert accounting.published + accounting.quarantined == self.records
        assert store.outputs_count(WORKLOAD, RUN_DATE) == accounting.published > self.records * 0.9
        assert run.report["published"] + run.report["quarantined_total"] == self.records
        assert run.report["batches_created"] == stats["batches_created"]


def test_a_night_killed_at_every_stage_boundary_in_turn_ends_with_every_record_once(
    emulator_factory, metadata_template: Path, tmp_path: Path
) -> None:
    emulator = emulator_factory(processing_seconds=1.0, faults=REQUEST_FAULTS)
    night = Night(tmp_path, metadata_template, emulator, RECORDS)

    for boundary in BOUNDARIES:
        night.crash(boundary)
        store = Store.connect(night.store_url)
        run = next(r for r in store.recent_runs(WORKLOAD) if r.logical_date == RUN_DATE)
        if boundary == "submit.after_create":  # a batch the ledger has not heard of: an orphan
            assert (emulator.stats()["batches_created"], store.batches_created(run.id)) == (1, 0)
        if boundary == "publish.after_first_upsert":  # outputs half published, no report yet
            assert store.outputs_count(WORKLOAD, RUN_DATE) > 0
            assert run.status != "succeeded"
    code, output = night.run()

    assert output.splitlines()[-1] == f"{driver.STATE_PREFIX}success", output[-3000:]
    assert code == 0
    assert "re-attaching to batch" in output
    night.check_exactly_once_and_no_double_spend()


# The fast variant crashes alone where a wrong move costs most: a batch the ledger does not know.
@pytest.mark.parametrize("boundary", BOUNDARIES if long_variant() else ["submit.after_create"])
def test_a_run_killed_at_one_boundary_and_run_again_ends_with_every_record_once(
    boundary: str, emulator_factory, metadata_template: Path, tmp_path: Path
) -> None:
    records, faults = (LONG_RECORDS, LONG_REQUEST_FAULTS) if long_variant() else (RECORDS, REQUEST_FAULTS)
    night = Night(
        tmp_path, metadata_template, emulator_factory(processing_seconds=1.0, faults=faults), records
    )

    night.crash(boundary)
    code, output = night.run()

    assert output.splitlines()[-1] == f"{driver.STATE_PREFIX}success", output[-3000:]
    assert code == 0
    night.check_exactly_once_and_no_double_spend(recovery_batches_at_least=1 if long_variant() else 0)


def test_the_emulator_killed_while_results_download_is_survived_without_a_new_batch(pipeline_for) -> None:
    # Every results call is held for 3 s: the emulator is SIGKILLed while one is held (its stats count
    # the held call when the hold starts) and restarted on the same state file; the download's
    # retries bring the results home.
    pipeline = pipeline_for(
        processing_seconds=0.5, faults={"endpoints": {"results": {"slow": 1.0, "slow_seconds": 3}}}
    )
    loans = pipeline.loan_input(RECORDS)
    killed = threading.Event()
    run_over = threading.Event()

    def kill_mid_results() -> None:
        while not run_over.is_set():
            held = pipeline.emulator.stats()["http_faults_injected"].get("results", {}).get("slow", 0)
            if held:
                pipeline.emulator.kill()
                killed.set()
                pipeline.emulator.restart()
                return
            run_over.wait(0.05)

    killer = threading.Thread(target=kill_mid_results, daemon=True)
    killer.start()
    dag_run = pipeline.run(WORKLOAD, loans)
    run_over.set()
    killer.join(timeout=30)

    assert killed.is_set()
    assert dag_run.state == "success"
    store = pipeline.store()
    run = next(r for r in store.recent_runs(WORKLOAD) if r.logical_date == RUN_DATE)
    stats = pipeline.emulator.stats()
    assert stats["batches_created"] == store.batches_created(run.id) == 1
    assert stats["custom_id_max_submissions"] == 1
    # Counted since the restart: the results were asked for again after the kill.
    assert stats["http_faults_injected"]["results"]["slow"] >= 1
    assert store.accounting(run.id).balanced
    assert store.outputs_count(WORKLOAD, RUN_DATE) == RECORDS
