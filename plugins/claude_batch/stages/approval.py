"""A gate a person decides: the sample gate or the cost guard waits for an on-call approval.

It is the standard provider's ``ApprovalOperator`` folded into the gate, so that only a gate that
fails its check waits and the evidence is at hand. On Airflow 3.3 the gate does what
``HITLOperator.execute`` does there: it writes the request (subject, evidence, Approve/Reject) that the
Airflow UI shows under *Required actions*, then parks the task as ``awaiting_input``: no worker slot,
no pool slot, no trigger. The person's answer (the UI's call to the public API's ``hitlDetails``
endpoint) resumes it; the scheduler resumes it with a timeout error when nobody answered in time.
The answer is read by ``ApprovalOperator.execute_complete``, the provider's own contract.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from airflow.providers.standard.exceptions import HITLRejectException, HITLTimeoutError
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException, TaskAwaitingInput
from airflow.sdk.execution_time.hitl import upsert_hitl_detail


class ApprovalGate:
    """Mixin of a gate operator whose spec ``action`` is ``approve``.

    The gate calls :meth:`wait_for_approval` instead of failing; the task resumes in
    :meth:`resume_after_approval`, which returns the gate's result (through :meth:`approved`) on
    Approve and fails the task, before any batch exists, on Reject or when nobody answered in time.
    """

    task_id: str
    log: Any

    def wait_for_approval(
        self,
        context: Context,
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
        upsert_hitl_detail(
            ti_id=context["task_instance"].id,
            options=[ApprovalOperator.APPROVE, ApprovalOperator.REJECT],
            subject=subject,
            body=body,
            multiple=False,
            params={},  # the request needs a form, even an empty one
        )
        self.log.info(
            "%s. Waiting for an on-call approval (Airflow UI, Required actions) until %s",
            subject,
            _at(decide_by),
        )
        raise TaskAwaitingInput(
            method_name="resume_after_approval",
            kwargs={"subject": subject, "decide_by": decide_by.isoformat(), "outcome": outcome},
            timeout=left,
        )

    def resume_after_approval(
        self,
        context: Context,
        subject: str,
        decide_by: str,
        outcome: dict[str, Any],
        event: dict[str, Any],
    ) -> dict[str, Any]:
        """Go on with the gate's result on Approve; fail on Reject or on the timeout."""
        # fail_on_reject: a rejected gate fails the run, as a failed check does; skipping the rest
        # would show a night nobody ran as a success.
        approval = ApprovalOperator(task_id=self.task_id, subject=subject, fail_on_reject=True)
        try:
            answer = approval.execute_complete(context, event)
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
        return self.approved(context, outcome)

    def approved(self, context: Context, outcome: dict[str, Any]) -> dict[str, Any]:
        """What the gate does once approved, before the run goes on; returns the task's result.

        It runs in a new try, maybe on another worker, and the answer may come again (Airflow
        3.3.2 retries a gate answered before the scheduler saw its worker park, and the gate asks
        again): it reads only ``outcome`` and the run folder, and doing it twice does it once.
        """
        return outcome


def _at(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _who(event: dict[str, Any]) -> str:
    user = event.get("responded_by_user") or {}
    return user.get("name") or user.get("id") or "an unknown user"
