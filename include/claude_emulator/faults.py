"""Fault injection: the fault file format and the seeded, deterministic decisions.

A fault file (``claude-emulator --faults FILE``) is YAML or JSON with two optional sections::

    requests:                  # outcome of each request of a batch
      errored:                 # rate per error kind (the kind lands in result.error.error.type)
        api_error: 0.02
        overloaded_error: 0.01
        invalid_request_error: 0.01
      expired: 0.01            # the request comes back "expired"
      canceled: 0.01           # the request comes back "canceled"
      invalid_output: 0.02     # "succeeded", but the free-text answer is malformed JSON (cut in half);
                               # a request with output_config.format gets an answer in its schema instead
      cut_off: 0.005           # "succeeded", but the answer stops at max_tokens (stop_reason max_tokens,
                               # the JSON cut in half), with or without output_config.format
    endpoints:                 # HTTP faults, per endpoint
      create_batch:
        rate_limited: 0.1      # 429 rate_limit_error
        overloaded: 0.05       # 529 overloaded_error
        retry_after_seconds: 1 # the retry-after header of those 429s and 529s
        api_error: 0.05        # 500 api_error
        connection_reset: 0.02 # the request is handled, then the socket is reset instead of answering
        slow: 0.1              # the response is delayed ...
        slow_seconds: 2.0      # ... by this many seconds
      retrieve_batch:
        not_found_after_create: 0.5    # 404 not_found_error for a batch created less than ...
        not_found_window_seconds: 2.0  # ... this many real seconds ago
      results:
        truncated: 0.3         # the JSONL stream stops mid-line and the connection closes

Endpoints: ``create_batch``, ``retrieve_batch``, ``list_batches``, ``cancel_batch``, ``delete_batch``,
``results``, ``messages``, ``count_tokens``. ``truncated`` applies to ``results`` only and
``not_found_after_create`` to ``retrieve_batch`` only. Within a section the failure rates must add up
to at most 1; unknown keys are refused, so a typo never silently disables a fault.

Every decision is a hash, never a random draw, so a run is reproducible for a ``--seed``:

- a request's outcome hashes (seed, custom_id, submission number of that custom_id). The emulator
  counts how many times each custom_id was submitted across batches, so a resubmission draws again
  and can succeed where the first submission failed. ``/v1/messages`` draws the same way from
  (seed, hash of the parameters, how many times those parameters were sent): an errored kind becomes
  the matching HTTP error, ``invalid_output`` a malformed text and ``cut_off`` an answer stopped at
  ``max_tokens``; ``expired`` and ``canceled`` have
  no synchronous meaning and answer normally.
- an HTTP fault hashes (seed, endpoint, call number of that endpoint since the emulator started).
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from claude_emulator.errors import ErrorKind

Rate = Annotated[float, Field(ge=0.0, le=1.0)]

Endpoint = Literal[
    "create_batch",
    "retrieve_batch",
    "list_batches",
    "cancel_batch",
    "delete_batch",
    "results",
    "messages",
    "count_tokens",
]


def draw(*parts: object) -> float:
    """A number in [0, 1) that depends only on `parts`: the emulator's only source of chance."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class RequestOutcome(StrEnum):
    """What a fault imposes on one request instead of a normal answer."""

    ERRORED = "errored"
    EXPIRED = "expired"
    CANCELED = "canceled"
    INVALID_OUTPUT = "invalid_output"
    CUT_OFF = "cut_off"


class RequestFault(BaseModel):
    outcome: RequestOutcome
    error_kind: ErrorKind | None = None


class RequestFaults(BaseModel):
    """Per-request outcome rates (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    errored: dict[ErrorKind, Rate] = Field(default_factory=dict)
    expired: Rate = 0.0
    canceled: Rate = 0.0
    invalid_output: Rate = 0.0
    cut_off: Rate = 0.0

    @model_validator(mode="after")
    def _rates_fit(self) -> RequestFaults:
        total = sum(self.errored.values()) + self.expired + self.canceled + self.invalid_output + self.cut_off
        if total > 1.0:
            raise ValueError(f"request fault rates add up to {total:g}; they must add up to at most 1")
        return self

    def fault_for(self, seed: int, key: str, submission: int) -> RequestFault | None:
        """The fault imposed on submission number `submission` of `key`, or None for a normal answer."""
        point = draw(seed, "request", key, submission)
        bands: list[tuple[float, RequestFault]] = [
            (rate, RequestFault(outcome=RequestOutcome.ERRORED, error_kind=kind))
            for kind, rate in self.errored.items()
        ]
        bands += [
            (self.expired, RequestFault(outcome=RequestOutcome.EXPIRED)),
            (self.canceled, RequestFault(outcome=RequestOutcome.CANCELED)),
            (self.invalid_output, RequestFault(outcome=RequestOutcome.INVALID_OUTPUT)),
            (self.cut_off, RequestFault(outcome=RequestOutcome.CUT_OFF)),
        ]
        upper = 0.0
        for rate, fault in bands:
            upper += rate
            if point < upper:
                return fault
        return None


class HttpFault(StrEnum):
    """A failure of one HTTP call (the stats count them under these names)."""

    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    API_ERROR = "api_error"
    CONNECTION_RESET = "connection_reset"
    TRUNCATED = "truncated"
    NOT_FOUND_AFTER_CREATE = "not_found_after_create"
    SLOW = "slow"


class EndpointFaults(BaseModel):
    """HTTP fault rates of one endpoint (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    rate_limited: Rate = 0.0
    retry_after_seconds: float = Field(default=1.0, ge=0.0)
    overloaded: Rate = 0.0
    api_error: Rate = 0.0
    connection_reset: Rate = 0.0
    truncated: Rate = 0.0
    not_found_after_create: Rate = 0.0
    not_found_window_seconds: float = Field(default=2.0, ge=0.0)
    slow: Rate = 0.0
    slow_seconds: float = Field(default=1.0, ge=0.0)

    @model_validator(mode="after")
    def _rates_fit(self) -> EndpointFaults:
        total = sum(rate for _, rate in self._failure_bands())
        if total > 1.0:
            raise ValueError(f"endpoint failure rates add up to {total:g}; they must add up to at most 1")
        return self

    def _failure_bands(self) -> list[tuple[HttpFault, float]]:
        return [
            (HttpFault.RATE_LIMITED, self.rate_limited),
            (HttpFault.OVERLOADED, self.overloaded),
            (HttpFault.API_ERROR, self.api_error),
            (HttpFault.CONNECTION_RESET, self.connection_reset),
            (HttpFault.TRUNCATED, self.truncated),
            (HttpFault.NOT_FOUND_AFTER_CREATE, self.not_found_after_create),
        ]

    def failure_for(self, seed: int, endpoint: Endpoint, call: int) -> HttpFault | None:
        """The failure of call number `call` of `endpoint`, if any (slowness is decided apart)."""
        point = draw(seed, "http", endpoint, call)
        upper = 0.0
        for fault, rate in self._failure_bands():
            upper += rate
            if point < upper:
                return fault
        return None

    def is_slow(self, seed: int, endpoint: Endpoint, call: int) -> bool:
        return draw(seed, "slow", endpoint, call) < self.slow


class FaultPlan(BaseModel):
    """The whole fault file; the empty plan injects nothing."""

    model_config = ConfigDict(extra="forbid")

    requests: RequestFaults = Field(default_factory=RequestFaults)
    endpoints: dict[Endpoint, EndpointFaults] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _faults_fit_their_endpoint(self) -> FaultPlan:
        for endpoint, faults in self.endpoints.items():
            if faults.truncated and endpoint != "results":
                raise ValueError(f"endpoints.{endpoint}.truncated: only the results stream can be truncated")
            if faults.not_found_after_create and endpoint != "retrieve_batch":
                raise ValueError(
                    f"endpoints.{endpoint}.not_found_after_create: only retrieve_batch has transient 404s"
                )
        return self

    def endpoint(self, endpoint: Endpoint) -> EndpointFaults:
        return self.endpoints.get(endpoint) or EndpointFaults()


def load_fault_plan(path: Path) -> FaultPlan:
    """Read a fault file; JSON when it ends in .json, YAML otherwise (YAML also reads JSON)."""
    text = path.read_text(encoding="utf-8")
    document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return FaultPlan.model_validate(document or {})
