"""A gate a person decides: the sample gate or the cost guard waits for an on-call approval.

The standard provider's ``ApprovalOperator`` does the Human-in-the-loop part: it writes the request
(subject, evidence, Approve/Reject) that the Airflow UI shows under *Required actions*, and parks the
task. On Airflow 3.3 a parked task is ``awaiting_input``: no worker slot, no pool slot, no trigger;
the person's answer (the UI's call to the public API's ``hitlDetails`` endpoint) resumes it, and the
scheduler fails it when the timeout passes unanswered. The gate composes it rather than adding a
task to the DAG, so only a gate that fails its check waits, and the evidence is at hand.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from airflow.providers.standard.exceptions import HITLRejectException, HITLTimeoutError
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.exceptions import AirflowFailException, TaskAwaitingInput


def _approval(
    task_id: str, subject: str, body: str = "", timeout: timedelta | None = None
) -> ApprovalOperator:
    # fail_on_reject: a rejected gate fails the run, as a failed check does; skipping the rest would
    # show a night nobody ran as a success.
    return ApprovalOperator(
        task_id=task_id, subject=subject, body=body, response_timeout=timeout, fail_on_reject=True
    )


class ApprovalGate:
    """Mixin of a gate operator whose spec ``action`` is ``approve``.

    The gate calls :meth:`wait_for_approval` instead of failing; the task resumes in
    :meth:`resume_after_approval`, which returns the gate's result on Approve and fails the task,
    before any batch exists, on Reject or when nobody answered in time.
    """

    task_id: str
    log: Any

    def wait_for_approval(
        self,
        context: Any,
        *,
        subject: str,
        body: str,
        decide_by: datetime,
        outcome: dict[str, Any],
    ) -> NoReturn:
        """Ask for an approval until ``decide_by`` and park the task; ``outcome`` is returned on Approve.

        :param decide_by: the last moment an approval still lets the bulk meet the deadline
            (``gates.decision_deadline``).
        """
        left = decide_by - datetime.now(UTC)
        if left <= timedelta(0):
            raise AirflowFailException(
                f"{subject}. It needs an approval, but the bulk could no longer meet the deadline after "
                f"one: the last moment to approve was {_at(decide_by)}. No batch was created. Move the "
                "deadline (Param deadline) or fix the cause, then clear this task."
            )
        self.log.info(
            "%s. Waiting for an on-call approval (Airflow UI, Required actions) until %s",
            subject,
            _at(decide_by),
        )
        try:
            _approval(self.task_id, subject, body, left).execute(context)
        except TaskAwaitingInput as parked:
            # The provider parks into its own execute_complete; this gate resumes here, with its result.
            raise TaskAwaitingInput(
                method_name="resume_after_approval",
                kwargs={"subject": subject, "decide_by": decide_by.isoformat(), "outcome": outcome},
                timeout=parked.timeout,
            ) from None
        raise AssertionError("ApprovalOperator.execute returned without parking the task")

    def resume_after_approval(
        self,
        context: Any,
        subject: str,
        decide_by: str,
        outcome: dict[str, Any],
        event: dict[str, Any],
    ) -> dict[str, Any]:
        """Go on with the gate's result on Approve; fail on Reject or on the timeout."""
        try:
            answer = _approval(self.task_id, subject).execute_complete(context, event)
        except HITLTimeoutError:
            raise AirflowFailException(
                f"{subject}. Nobody approved or rejected it by {_at(datetime.fromisoformat(decide_by))}, "
                "the last moment that still lets the bulk meet the deadline, so the run stops here. "
                "No batch was created. Fix the cause or move the deadline, then clear this task."
            ) from None
        except HITLRejectException:
            raise AirflowFailException(
                f"{subject}. Rejected by {_who(event)} at {_at(event['responded_at'])}. No batch was "
                "created. Fix the cause, then clear this task."
            ) from None
        self.log.info("Approved by %s at %s: going on", _who(event), _at(answer["responded_at"]))
        return outcome


def _at(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _who(event: dict[str, Any]) -> str:
    user = event.get("responded_by_user") or {}
    return user.get("name") or user.get("id") or "an unknown user"
