"""The hook's reading of SDK errors: every cause comes from the taxonomy's statuses and error types."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from claude_batch.hooks.claude import error_kind, failure_cause
from claude_batch.strategy import failures
from claude_batch.strategy.failures import CAUSES, FailureCause

_REQUEST = httpx.Request("POST", "http://127.0.0.1/v1/messages/batches")
_CLIENT = anthropic.Anthropic(base_url="http://127.0.0.1", api_key="sk-test")


def _status_error(status: int, error_type: str | None) -> anthropic.APIStatusError:
    """The exception the SDK raises for this answer (its own status-to-class choice)."""
    body = {"type": "error", "error": {"type": error_type, "message": "m"}} if error_type else None
    response = httpx.Response(status, json=body, request=_REQUEST)
    return _CLIENT._make_status_error(f"Error code: {status}", body=body, response=response)


@pytest.mark.parametrize("cause", [c for c in CAUSES if c.statuses], ids=lambda c: c.name)
def test_each_declared_status_reads_as_its_cause_with_or_without_a_body(cause: FailureCause) -> None:
    for status in cause.statuses:
        for body_type in (cause.name, None):
            error = _status_error(status, body_type)
            assert failure_cause(error) is cause
            assert error_kind(error) == cause.name


def test_an_error_type_the_taxonomy_does_not_know_is_recorded_as_sent() -> None:
    error = _status_error(502, "a_future_error")
    assert failure_cause(error) is failures.API_ERROR and failure_cause(error).transient
    assert error_kind(error) == "a_future_error"


def test_network_failures_are_declared_causes_written_as_the_apis_types() -> None:
    lost = anthropic.APIConnectionError(request=_REQUEST)
    slow = anthropic.APITimeoutError(request=_REQUEST)
    assert failure_cause(lost) is failures.CONNECTION and failure_cause(slow) is failures.CLIENT_TIMEOUT
    assert (error_kind(lost), error_kind(slow)) == ("api_error", "timeout_error")
    assert failure_cause(ValueError("not the API's")) is None
