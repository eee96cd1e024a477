"""The failure taxonomy: every cause a request or an API call fails for, declared once.

A cause is what result files, health and the spec's ``recovery.retry`` call a failure: the API's
error type for an errored result (``overloaded_error``), else the result class (``expired``). Each
declaration says how the API reports it (HTTP status), whether the same call can get past it later,
what recovery does with it, why a record that ends with it is quarantined, and what a rising share
of it means. Partition, recovery, the spec's validation, health, the hook, the trigger and submit
read from here, so a new cause is one declaration here (and its line in the taxonomy's test).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from claude_batch.strategy.quarantine import QuarantineClass


class ResultClass(StrEnum):
    """The class each custom_id of a batch ends in (see ``partition``)."""

    SUCCEEDED = "succeeded"
    INVALID_OUTPUT = "invalid_output"
    ERRORED = "errored"
    CANCELED = "canceled"
    EXPIRED = "expired"
    MISSING = "missing"
    UNKNOWN = "unknown"


class RecoveryAction(StrEnum):
    """What recovery does with a failed request (see ``recovery``)."""

    RETRY = "retry"
    REQUEUE = "requeue"
    SPLIT = "split"
    REPAIR = "repair"
    QUARANTINE = "quarantine"


@dataclass(frozen=True, slots=True)
class FailureCause:
    """One way a request or an API call fails.

    Reasons are templates of ``{cause}`` (the failure's own kind, or its class) and ``{message}``.

    :param name: the API's error type for an errored result, else the result class; unique.
    :param result_class: the partition class of its result lines; None for a call that failed before
        the API answered (it is in no result file: see ``written_as``).
    :param statuses: the HTTP statuses the API answers it with.
    :param transient: the API was busy or the network blinked: the same call later can succeed, so a
        poll survives it, a create is retried, and recovery retries the request as it is.
    :param ambiguous_on_create: a batch create that fails this way may still have made the batch (the
        answer was lost, or the server failed mid-way): the create is retried only after looking for it.
    :param run_level: the account or connection is at fault, not the record: every request fails
        alike, so recovery reports it apart and the run fails loudly instead of resubmitting.
    :param action: what recovery does with it; ``retry`` and ``requeue`` only for a cause the spec's
        ``recovery.retry`` lists, ``repair`` only with ``recovery.repair_invalid_output``, ``split``
        only when the spec declares ``chunking``; otherwise the record is quarantined.
    :param resent: the plan's reason when ``action`` resends the request.
    :param quarantine: the quarantine class when the record is not resent.
    :param quarantined: the quarantine reason then.
    :param meaning: what a rising share of it usually means, said to whoever reads the health report.
    :param health_threshold: the default (warn, fail) shares of ``health.thresholds``; None: none.
    :param too_long: a message matching this means the prompt was too long for the model: the
        failure is handled as ``request_too_large``.
    :param written_as: for a call that failed before the API answered, the cause a synchronous call's
        result line records (the batch result format knows only the API's error types).
    """

    name: str
    result_class: ResultClass | None
    statuses: tuple[int, ...] = ()
    transient: bool = False
    ambiguous_on_create: bool = False
    run_level: bool = False
    action: RecoveryAction = RecoveryAction.QUARANTINE
    resent: str = ""
    quarantine: QuarantineClass = QuarantineClass.NOT_RETRIED
    quarantined: str = "unrecognized failure {cause} ({message}); not resent"
    meaning: str | None = None
    health_threshold: tuple[float | None, float | None] | None = None
    too_long: re.Pattern[str] | None = None
    written_as: str | None = None

    def resent_reason(self, cause: str, message: str) -> str:
        return self.resent.format(cause=cause, message=message)

    def quarantined_reason(self, cause: str, message: str) -> str:
        return self.quarantined.format(cause=cause, message=message)


_NOT_LISTED = "{cause}, and recovery.retry does not list it"
_RETRIED = "transient {cause}, retried as is"
_REQUEUED = "{cause}: never processed, queued again"
_TOO_LONG = (
    "the prompt is too long for the model ({message}); shorten the record's text, or "
    "declare a chunking section in the spec to split such records"
)
_CONTEXT = (
    "inputs may be outgrowing the context window or the request size: check record sizes and quarantines"
)
_UNDER_LOAD = (
    "the API was under load or failing; recovery retries these, but a lasting rise asks for a later schedule"
)
_ACCOUNT = "the account or credentials are refusing requests: check the connection and the organisation"


INVALID_REQUEST = FailureCause(
    "invalid_request_error",
    ResultClass.ERRORED,
    statuses=(400,),
    quarantine=QuarantineClass.INVALID_REQUEST,
    quarantined="the API rejected the request ({message}); no retry helps: fix the record or the prompt",
    meaning=_CONTEXT,
    health_threshold=(0.01, 0.05),
    # The API refuses a prompt over the context window as a plain invalid request; only its words
    # tell it from a malformed one.
    too_long=re.compile(r"prompt is too long|context window", re.IGNORECASE),
)


def _run_level(name: str, status: int, why: str, meaning: str = _ACCOUNT) -> FailureCause:
    """A cause of the account or connection, not the record: every request fails alike."""
    return FailureCause(
        name,
        ResultClass.ERRORED,
        statuses=(status,),
        run_level=True,
        quarantine=QuarantineClass.RUN_LEVEL,
        quarantined=(
            f"run-level problem, not this record's: {why} ({{cause}}: {{message}}); "
            "fix the connection or account, then clear the run"
        ),
        meaning=meaning,
    )


AUTHENTICATION = _run_level("authentication_error", 401, "the API key was refused")
BILLING = _run_level("billing_error", 402, "the organisation's billing refused the request")
PERMISSION = _run_level("permission_error", 403, "the API key may not use this model or feature")
NOT_FOUND = _run_level(
    "not_found_error",
    404,
    "the model or endpoint was not found (check the spec's model)",
    meaning="the model or endpoint is not found: check the spec's model",
)
REQUEST_TOO_LARGE = FailureCause(
    "request_too_large",
    ResultClass.ERRORED,
    statuses=(413,),
    action=RecoveryAction.SPLIT,
    resent="too long, split into chunks: {message}",
    quarantine=QuarantineClass.CONTEXT_WINDOW,
    quarantined=_TOO_LONG,
    meaning=_CONTEXT,
)


def _under_load(name: str, status: int, *, ambiguous_on_create: bool = True) -> FailureCause:
    """A cause of the API being busy or failing: the same request later can succeed, so it is retried."""
    return FailureCause(
        name,
        ResultClass.ERRORED,
        statuses=(status,),
        transient=True,
        ambiguous_on_create=ambiguous_on_create,
        action=RecoveryAction.RETRY,
        resent=_RETRIED,
        quarantined=_NOT_LISTED,
        meaning=_UNDER_LOAD,
    )


# Refused before anything was made: a create may be retried at once.
RATE_LIMIT = _under_load("rate_limit_error", 429, ambiguous_on_create=False)
API_ERROR = _under_load("api_error", 500)
TIMEOUT = _under_load("timeout_error", 504)
OVERLOADED = _under_load("overloaded_error", 529)
CONNECTION = FailureCause(
    "connection_error",
    None,
    transient=True,
    ambiguous_on_create=True,
    written_as=API_ERROR.name,
)
CLIENT_TIMEOUT = FailureCause(
    "client_timeout",
    None,
    transient=True,
    ambiguous_on_create=True,
    # The client gave up waiting: to the request, the same as the API's own timeout.
    written_as=TIMEOUT.name,
)
RESULT_TOO_LARGE = FailureCause(
    "result_too_large",
    ResultClass.ERRORED,
    # Answered and billed, but not read (see partition.MAX_RESULT_LINE_BYTES): resending pays again.
    # The message partition writes says why and what to do.
    quarantined="{cause}: {message}",
)
UNRECOGNIZED_ERROR = FailureCause("unrecognized_error", ResultClass.ERRORED)
UNRECOGNIZED_RESULT = FailureCause("unrecognized_result", ResultClass.ERRORED)
INVALID_OUTPUT = FailureCause(
    "invalid_output",
    ResultClass.INVALID_OUTPUT,
    action=RecoveryAction.REPAIR,
    resent="invalid output, resent once with a strict JSON instruction: {message}",
    quarantine=QuarantineClass.INVALID_OUTPUT,
    quarantined="invalid output and recovery.repair_invalid_output is off: {message}",
    meaning="answers no longer match the output schema: re-validate the prompt and model",
    health_threshold=(0.02, 0.10),
)


def _never_processed(
    name: str, result_class: ResultClass, meaning: str, health_threshold: tuple[float, float] | None = None
) -> FailureCause:
    """A request the API never answered (the batch expired, was canceled, or left it out): queued again."""
    return FailureCause(
        name,
        result_class,
        action=RecoveryAction.REQUEUE,
        resent=_REQUEUED,
        quarantined=_NOT_LISTED,
        meaning=meaning,
        health_threshold=health_threshold,
    )


EXPIRED = _never_processed(
    "expired",
    ResultClass.EXPIRED,
    "batches do not finish within 24 h: run earlier or cut smaller shards (sharding.target_*)",
    health_threshold=(0.01, 0.20),
)
CANCELED = _never_processed(
    "canceled",
    ResultClass.CANCELED,
    "batches were canceled before they ended: check who or what canceled them",
)
MISSING = _never_processed(
    "missing",
    ResultClass.MISSING,
    "result files lack requests that were sent: check the batches' request counts",
)
UNKNOWN = FailureCause(
    "unknown",
    ResultClass.UNKNOWN,
    meaning="results carry ids that were never sent: check the results are joined to the right manifest",
)

CAUSES: tuple[FailureCause, ...] = (
    INVALID_REQUEST,
    AUTHENTICATION,
    BILLING,
    PERMISSION,
    NOT_FOUND,
    REQUEST_TOO_LARGE,
    RATE_LIMIT,
    API_ERROR,
    TIMEOUT,
    OVERLOADED,
    CONNECTION,
    CLIENT_TIMEOUT,
    RESULT_TOO_LARGE,
    UNRECOGNIZED_ERROR,
    UNRECOGNIZED_RESULT,
    INVALID_OUTPUT,
    EXPIRED,
    CANCELED,
    MISSING,
    UNKNOWN,
)
_BY_NAME = {cause.name: cause for cause in CAUSES}
_BY_STATUS = {status: cause for cause in CAUSES for status in cause.statuses}
_BY_RESULT_CLASS = {
    cause.result_class: cause for cause in CAUSES if cause.result_class not in (None, ResultClass.ERRORED)
}

RESULT_CAUSES: tuple[str, ...] = tuple(c.name for c in CAUSES if c.result_class is not None)
"""The causes a run's results are counted by (``PartitionSummary.cause_counts``): what health judges."""
RETRYABLE_CAUSES: tuple[str, ...] = tuple(
    c.name
    for c in CAUSES
    if c.result_class is not None and c.action in (RecoveryAction.RETRY, RecoveryAction.REQUEUE)
)
"""The causes the spec's ``recovery.retry`` may list (all of them by default)."""


def cause_named(name: str) -> FailureCause | None:
    """The declared cause called ``name``, or None for a name the taxonomy does not know."""
    return _BY_NAME.get(name)


def cause_of_api_error(error_type: str | None, status: int | None) -> FailureCause:
    """The cause of an error the API answered with: by its error type when declared, else by status.

    A 5xx status no cause declares is a failure on the API's side, which the API itself calls
    ``api_error``; any other undeclared answer is unrecognized, and not retried.
    """
    cause = _BY_NAME.get(error_type or "")
    if cause is not None and cause.result_class is ResultClass.ERRORED:
        return cause
    if status is not None and status in _BY_STATUS:
        return _BY_STATUS[status]
    return API_ERROR if status is not None and status >= 500 else UNRECOGNIZED_ERROR


def cause_of_failure(result_class: ResultClass, error_kind: str | None, message: str) -> FailureCause:
    """The cause of one failed result: its class, or for an errored one its error kind (an invalid
    request whose message says the prompt is too long is ``request_too_large``)."""
    if result_class is not ResultClass.ERRORED:
        return _BY_RESULT_CLASS[result_class]
    cause = _BY_NAME.get(error_kind or "")
    if cause is None or cause.result_class is not ResultClass.ERRORED:
        return UNRECOGNIZED_ERROR
    if cause.too_long is not None and cause.too_long.search(message):
        return REQUEST_TOO_LARGE
    return cause


def default_health_thresholds() -> dict[str, tuple[float | None, float | None]]:
    """The (warn, fail) shares a spec's ``health.thresholds`` starts from, by cause."""
    return {c.name: c.health_threshold for c in CAUSES if c.health_threshold is not None}
