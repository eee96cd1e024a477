"""Hooks: the Claude API (``claude``), the store (``store``), Airflow's REST API (``airflow_api``).

``claude`` imports the anthropic SDK, which takes about as long to import as Airflow's own SDK. The
DAG files import the operators and the dag-processor parses them every few seconds, so what they
import reaches the Claude hook only through the two functions below, which import it when a task
first calls them: a parse never pays for the SDK (``tests/unit/test_layering.py`` holds this).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from claude_batch.hooks.claude import ClaudeBatchHook
    from claude_batch.strategy.failures import FailureCause


class ResultsIncompleteError(RuntimeError):
    """The results download ended before every request's line arrived."""


def claude_hook(conn_id: str) -> ClaudeBatchHook:
    """The Claude hook of the Airflow connection ``conn_id``."""
    from claude_batch.hooks.claude import ClaudeBatchHook

    return ClaudeBatchHook(conn_id=conn_id)


def failure_cause(error: BaseException) -> FailureCause | None:
    """The taxonomy's cause of an SDK or network error (see ``claude.failure_cause``)."""
    from claude_batch.hooks.claude import failure_cause as cause_of

    return cause_of(error)
