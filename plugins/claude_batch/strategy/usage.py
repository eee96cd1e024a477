"""The tokens a request was billed for: the one model of token usage, parsed once where an answer
enters the pipeline (a result line, an SDK ``Message``) and passed on as such.

The API reports ``input_tokens`` without the cached tokens, so the counts add up: uncached input,
output, prefix written to the cache and prefix read from it. Cache writes are priced by how long
they live (1.25x the input price for 5 minutes, 2x for 1 hour), so the 1 h part of the writes is
kept apart (``cache_creation.ephemeral_1h_input_tokens`` in the API's breakdown).

The field names are the API's and the store's column names; files already written (partition
summaries, ``succeeded.jsonl``) hold them, so they do not change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Usage(BaseModel):
    """Tokens of one or many requests; ``+`` sums them.

    :param cache_creation_input_tokens: every cache write, 5 min and 1 h TTL together.
    :param cache_creation_1h_input_tokens: the part of ``cache_creation_input_tokens`` written with
        the 1 h TTL (billed at 2x instead of 1.25x).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cache_creation_input_tokens: int = Field(default=0, ge=0)
    cache_read_input_tokens: int = Field(default=0, ge=0)
    cache_creation_1h_input_tokens: int = Field(default=0, ge=0)

    @property
    def cache_creation_5m_input_tokens(self) -> int:
        """The cache writes with the 5 min TTL (a count without a breakdown is all 5 min)."""
        return max(self.cache_creation_input_tokens - self.cache_creation_1h_input_tokens, 0)

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{name: getattr(self, name) + getattr(other, name) for name in Usage.model_fields})

    @classmethod
    def from_api(cls, usage: Mapping[str, Any] | None) -> Usage:
        """From a Message's ``usage`` object (a missing object or missing or null counts are 0)."""
        usage = usage or {}
        breakdown = usage.get("cache_creation") or {}
        return cls(
            input_tokens=usage.get("input_tokens") or 0,
            output_tokens=usage.get("output_tokens") or 0,
            cache_creation_input_tokens=usage.get("cache_creation_input_tokens") or 0,
            cache_read_input_tokens=usage.get("cache_read_input_tokens") or 0,
            cache_creation_1h_input_tokens=breakdown.get("ephemeral_1h_input_tokens") or 0,
        )

    @classmethod
    def from_message(cls, message: Mapping[str, Any] | None) -> Usage:
        """The usage of a Message (a result line's ``result.message``, an SDK Message dumped to JSON)."""
        return cls.from_api((message or {}).get("usage"))

    @classmethod
    def total(cls, usages: Iterable[Usage]) -> Usage:
        tally = UsageTally()
        for usage in usages:
            tally.add(usage)
        return tally.total()


def usage_counts(usage: Mapping[str, Any] | None) -> dict[str, int]:
    """``Usage.from_api(usage).model_dump()``: the counts of a Message's ``usage`` object as a dict.

    Partition reads one per result line, and building the model was a tenth of its time: when every
    count is a plain non-negative int (as the API sends them) the dict is the model's dump already;
    anything else goes through the model, which coerces or refuses it as always.
    """
    usage = usage or {}
    breakdown = usage.get("cache_creation") or {}
    counts = {
        "input_tokens": usage.get("input_tokens") or 0,
        "output_tokens": usage.get("output_tokens") or 0,
        "cache_creation_input_tokens": usage.get("cache_creation_input_tokens") or 0,
        "cache_read_input_tokens": usage.get("cache_read_input_tokens") or 0,
        "cache_creation_1h_input_tokens": breakdown.get("ephemeral_1h_input_tokens") or 0,
    }
    for count in counts.values():
        if type(count) is not int or count < 0:
            return Usage.from_api(usage).model_dump()
    return counts


class UsageTally:
    """A running sum of many usages (partition adds one per result line) that builds no model per
    addition: ``+`` validates a new ``Usage`` each time, several times the cost of adding ints."""

    def __init__(self) -> None:
        self._counts = dict.fromkeys(Usage.model_fields, 0)

    def add(self, usage: Usage) -> None:
        counts = self._counts
        for name in counts:
            counts[name] += getattr(usage, name)

    def add_counts(self, usage: Mapping[str, int]) -> None:
        """Add the counts of ``usage_counts`` (every field of ``Usage``)."""
        counts = self._counts
        for name in counts:
            counts[name] += usage[name]

    def total(self) -> Usage:
        return Usage(**self._counts)
