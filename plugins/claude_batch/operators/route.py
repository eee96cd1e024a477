"""Stage 1: settle the run (input, deadline, store row) and route the bulk to batch or sync."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.providers.anthropic.hooks.anthropic import FIRST_PARTY_PLATFORMS
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from claude_batch.hooks.claude import ClaudeBatchHook
from claude_batch.hooks.store import get_store
from claude_batch.operators.run import (
    InputUnreadableError,
    RunContext,
    count_input,
    logical_date_of,
    run_dir_for,
)
from claude_batch.strategy.routing import decide_route, step_facts
from claude_batch.strategy.spec import WorkloadSpec, load_workload


def batch_unavailable(conn_id: str, spec: WorkloadSpec) -> str | None:
    """Why this connection and model cannot use Message Batches, or None when they can.

    Message Batches are a first-party API: the provider's Bedrock, Vertex AI and Foundry platforms
    do not serve them, so such a connection goes synchronous instead of failing at batch create.
    """
    platform = ClaudeBatchHook(conn_id=conn_id).platform
    if platform not in FIRST_PARTY_PLATFORMS:
        return (
            f"connection {conn_id} is a {platform} connection and Message Batches are served only by "
            "the first-party API (Bedrock, Vertex AI and Foundry do not serve them)"
        )
    if not spec.capabilities().batch:
        return f"{spec.model} is not served by Message Batches"
    return None


class RouteOperator(BaseOperator):
    """Open the run in the store and decide, with the numbers, whether the bulk goes to Message
    Batches (50 % cheaper, up to 24 h) or to the Messages API (a deadline the batch window cannot
    meet, or too few requests to be worth a batch). Returns the run context for every later stage.

    :param workload: name of a spec in ``include/workloads/`` or ``$CLAUDE_BATCH_SPECS_DIR`` (never a path).
    :param input_uri: the input file; empty uses the spec's ``input.uri`` (``{ds}`` = run date in both).
    :param deadline: ISO 8601 override of the spec's deadline; empty uses the spec.
    :param conn_id: Airflow connection of type ``anthropic`` (a platform without batches routes sync).
    """

    template_fields: Sequence[str] = ("input_uri", "deadline")

    def __init__(
        self,
        *,
        workload: str,
        input_uri: str = "",
        deadline: str = "",
        conn_id: str = "anthropic_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.workload = workload
        self.input_uri = input_uri
        self.deadline = deadline

    def execute(self, context: Any) -> dict:
        spec = load_workload(self.workload)
        logical_date = logical_date_of(context)
        run_date = spec.run_date(logical_date)
        deadline = datetime.fromisoformat(self.deadline) if self.deadline else spec.deadline_for(logical_date)
        if deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=spec.deadline.zone)
        input_uri = spec.input.uri_for(run_date, self.input_uri) if spec.input.uri or self.input_uri else ""
        try:
            volume = count_input(spec, input_uri)
        except InputUnreadableError as error:
            raise AirflowFailException(str(error)) from error  # retrying reads the same bytes

        store = get_store()
        run = store.open_run(
            spec.name,
            run_date,
            context["dag_run"].run_id,
            deadline=deadline,
            params={"input_uri": input_uri, "deadline": deadline.isoformat()},
        )
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
