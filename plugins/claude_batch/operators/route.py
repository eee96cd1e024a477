"""Stage 1: settle the run (input, deadline, store row) and route the bulk to batch or sync."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseOperator

from claude_batch.hooks.store import get_store
from claude_batch.operators.run import RunContext, count_input, logical_date_of, run_dir_for
from claude_batch.strategy.routing import decide_route, step_facts
from claude_batch.strategy.spec import load_workload


class RouteOperator(BaseOperator):
    """Open the run in the store and decide, with the numbers, whether the bulk goes to Message
    Batches (50 % cheaper, up to 24 h) or to the Messages API (a deadline the batch window cannot
    meet, or too few requests to be worth a batch). Returns the run context for every later stage.

    :param workload: name of a spec in ``include/workloads/`` (or a path to one).
    :param input_uri: the input file; empty uses the spec's ``input.uri`` (``{ds}`` = run date in both).
    :param deadline: ISO 8601 override of the spec's deadline; empty uses the spec.
    """

    template_fields: Sequence[str] = ("input_uri", "deadline")

    def __init__(self, *, workload: str, input_uri: str = "", deadline: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
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
        volume = count_input(spec, input_uri)

        store = get_store()
        run = store.open_run(
            spec.name,
            run_date,
            context["dag_run"].run_id,
            deadline=deadline,
            params={"input_uri": input_uri, "deadline": deadline.isoformat()},
        )
        decision = decide_route(
            step_facts(spec.routing, "bulk", volume, datetime.now(UTC), deadline, interactive=False)
        )
        self.log.info("Run %s of %s for %s: %d input records", run.id, spec.name, run_date, volume)
        self.log.info("Routing decision: %s", decision.rationale)
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
