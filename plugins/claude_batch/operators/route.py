"""Stage 1: settle the run (input, deadline, store row) and route the bulk to batch or sync."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from claude_batch.hooks.store import get_store
from claude_batch.stages.route import batch_unavailable
from claude_batch.stages.run import (
    InputUnreadableError,
    RunContext,
    count_input,
    input_digest,
    input_location,
    logical_date_of,
    run_dir_for,
)
from claude_batch.store import Store
from claude_batch.strategy.routing import decide_route, step_facts
from claude_batch.strategy.spec import WorkloadSpec, load_workload
from claude_batch.triggers.input import InputLandedTrigger


class RouteOperator(BaseOperator):
    """Open the run in the store and decide, with the numbers, whether the bulk goes to Message
    Batches (50 % cheaper, up to 24 h) or to the Messages API (a deadline the batch window cannot
    meet, or too few requests to be worth a batch). Returns the run context for every later stage.

    :param workload: name of a spec in ``include/workloads/`` or ``$CLAUDE_BATCH_SPECS_DIR`` (never a path).
    :param input_uri: the input file; empty uses the spec's ``input.uri`` (``{ds}`` = run date in both).
    :param deadline: ISO 8601 override of the spec's deadline; empty uses the spec.
    :param conn_id: Airflow connection of type ``anthropic`` (a platform without batches routes sync).
    :param input_poll_interval: seconds between looks for a night's input that has not landed yet
        (the spec's ``input.wait_for`` says how long to wait; the waiting is deferred to the triggerer).
    """

    template_fields: Sequence[str] = ("input_uri", "deadline")

    def __init__(
        self,
        *,
        workload: str,
        input_uri: str = "",
        deadline: str = "",
        conn_id: str = "anthropic_default",
        input_poll_interval: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.workload = workload
        self.input_uri = input_uri
        self.deadline = deadline
        self.input_poll_interval = input_poll_interval

    def execute(self, context: Context) -> dict:
        spec = load_workload(self.workload)
        logical_date = logical_date_of(context)
        run_date = spec.run_date(logical_date)
        deadline = datetime.fromisoformat(self.deadline) if self.deadline else spec.deadline_for(logical_date)
        if deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=spec.deadline.zone)
        input_uri = spec.input.uri_for(run_date, self.input_uri) if spec.input.uri or self.input_uri else ""

        # The run is in the store before anything can fail on the input: every night shows on the
        # plugin's page, a failed one with its error (``callbacks.mark_run_failed``).
        store = get_store()
        digest = input_digest(spec, input_uri)
        self._keep_the_dates_input(store, spec, run_date, input_uri, digest)
        params = {"input_uri": input_uri, "deadline": deadline.isoformat()}
        if digest:
            params["input_digest"] = digest
        run = store.open_run(spec.name, run_date, context["dag_run"].run_id, deadline=deadline, params=params)
        self._wait_for_the_input(spec, input_uri, run_date)
        try:
            volume = count_input(spec, input_uri)
        except InputUnreadableError as error:
            raise AirflowFailException(str(error)) from error  # retrying reads the same bytes
        no_batch = batch_unavailable(self.conn_id, spec)
        decision = decide_route(
            step_facts(spec.routing, "bulk", volume, datetime.now(UTC), deadline, batch_unavailable=no_batch)
        )
        self.log.info("Run %s of %s for %s: %d input records", run.id, spec.name, run_date, volume)
        self.log.info("Routing decision: %s", decision.rationale)
        if no_batch and decision.deadline_at_risk:
            raise AirflowFailException(
                f"Refusing the run of {spec.name} for {run_date}: {decision.rationale}. Nothing was sent. "
                "Use a first-party connection (platform anthropic) for the batch discount and window, "
                "move the deadline (the deadline param), or raise routing.sync_requests_per_minute if the "
                "rate limit allows."
            )
        if decision.deadline_at_risk:
            self.log.warning("The deadline %s is at risk whichever route is taken", deadline.isoformat())
        return RunContext(
            workload=spec.name,
            spec_source=self.workload,
            store_run_id=run.id,
            run_date=run_date,
            logical_date=logical_date,
            deadline=deadline,
            input_uri=input_uri,
            run_dir=run_dir_for(spec.name, run_date),
            input_count=volume,
            route=decision.route,
            route_rationale=decision.rationale,
        ).model_dump(mode="json")

    @staticmethod
    def _keep_the_dates_input(
        store: Store, spec: WorkloadSpec, run_date: date, input_uri: str, digest: str | None
    ) -> None:
        """Refuse, before the date's run is touched, a DAG run whose input is not the one the date's
        run has already paid for, published or quarantined records of (another file, or the same file
        with other contents): its outputs, quarantine and ledger belong to that input, and taking the
        run over would fail it, point it at a file its re-runs cannot read, and pay for a sample only
        for the shards' "input changed" guard to stop later. A date with nothing of its input yet may
        start over with another.
        """
        earlier = store.run_of_date(spec.name, run_date)
        if earlier is None:
            return
        earlier_input = (earlier.params or {}).get("input_uri")
        earlier_digest = (earlier.params or {}).get("input_digest")
        if earlier_input is None:
            return
        if earlier_input != input_uri:
            what = f"read {earlier_input}; this DAG run names {input_uri}"
        elif earlier_digest and digest and earlier_digest != digest:
            what = (
                f"read {input_uri}, which has changed since (SHA-256 {earlier_digest[:12]} then, "
                f"{digest[:12]} now)"
            )
        else:
            return
        holds_records = (
            store.attempts_of_run(earlier.id)
            or store.manifest_count(earlier.id)
            or store.outputs_count(spec.name, run_date)
            or store.quarantine_counts(earlier.id)
        )
        if not holds_records:
            return
        raise AirflowFailException(
            f"The run of {spec.name} for {run_date} {what}. A date keeps the input it paid for, so "
            "nothing was sent and that run is left as it was. To re-run its failures use the Re-run "
            f"button on its page (or POST /claude-batch/api/workloads/{spec.name}/rerun, or the "
            f"rerun_record DAG), or clear recover and publish of its DAG run {earlier.dag_run_id}; to "
            "run another file, or the changed one, trigger it with another logical date."
        )

    def _wait_for_the_input(self, spec: WorkloadSpec, input_uri: str, run_date: date) -> None:
        """A night's file that has not landed yet is waited for, deferred (no worker slot), for the
        spec's ``input.wait_for``. Only the spec's own input waits: a file named in the run's Params is
        expected to be there (a typo should fail now, not in two hours)."""
        if spec.input.wait_for is None or self.input_uri or not input_uri:
            return
        location = input_location(input_uri)
        if location.exists():
            return
        give_up_at = datetime.now(UTC) + spec.input.wait_for
        self.log.info(
            "The input of %s for %s has not landed: waiting for %s until %s (input.wait_for %s)",
            spec.name,
            run_date,
            location,
            give_up_at.isoformat(timespec="seconds"),
            spec.input.wait_for,
        )
        self.defer(
            trigger=InputLandedTrigger(
                uri=str(location), give_up_at=give_up_at.timestamp(), poll_interval=self.input_poll_interval
            ),
            method_name="execute_when_landed",
        )

    def execute_when_landed(self, context: Context, event: dict[str, Any]) -> dict:
        """Back from the triggerer: route the night whose input landed, or fail naming the file and date."""
        if event["status"] != "landed":
            spec = load_workload(self.workload)
            run_date = spec.run_date(logical_date_of(context))
            raise AirflowFailException(
                f"The input of {spec.name} for {run_date} never landed: {event['uri']} did not exist "
                f"after waiting {spec.input.wait_for} (input.wait_for). Put the file there and clear "
                "route, or trigger the date with input_uri set to where the file is."
            )
        return self.execute(context)
