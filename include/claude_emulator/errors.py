"""The API's error kinds and the exception that carries one to an error response or an errored result."""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal[
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "timeout_error",
    "overloaded_error",
]

# The HTTP status of each kind on the synchronous API (claude-batch-api.md, "Result lines").
ERROR_STATUS: dict[ErrorKind, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

# The messages the API uses for failures that have nothing request-specific to say.
GENERIC_MESSAGES: dict[ErrorKind, str] = {
    "api_error": "Internal server error",
    "overloaded_error": "Overloaded",
    "rate_limit_error": "Number of requests has exceeded your rate limit. Please try again later.",
    "timeout_error": "Request timed out",
    "billing_error": "Your credit balance is too low to access the Anthropic API.",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "authentication_error": "invalid x-api-key",
    "not_found_error": "Not found",
    "invalid_request_error": "Invalid request",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
}


class ApiError(Exception):
    """A failure the API reports as ``{"type": "error", "error": {"type": kind, "message": ...}}``.

    :param kind: the error kind, which also fixes the HTTP status.
    :param message: what was wrong, in words the caller can act on.
    :param headers: extra response headers (``retry-after`` for a 429).
    """

    def __init__(self, kind: ErrorKind, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.headers = headers or {}

    @property
    def status(self) -> int:
        return ERROR_STATUS[self.kind]


def invalid_request(message: str) -> ApiError:
    return ApiError("invalid_request_error", message)
