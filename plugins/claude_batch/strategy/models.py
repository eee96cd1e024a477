"""What each model accepts, as data, and the answer's JSON schema in the form structured outputs take.

Models differ in what they refuse: newer ones reject manual thinking budgets, a forced tool choice or
a non-default temperature with a 400, and only some take ``output_config.format``. The table lives in
``models.yaml`` beside this module (overridable per workload, like prices), matched to a model name
by the longest prefix; the workload spec is checked against it when it is loaded, and the request
builder reads it, so a setting the model refuses never reaches a batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

CAPABILITIES_FILE = Path(__file__).with_name("models.yaml")

SamplingParameter = Literal["temperature", "top_p", "top_k"]
SAMPLING_PARAMETERS: tuple[SamplingParameter, ...] = ("temperature", "top_p", "top_k")


class ThinkingMode(StrEnum):
    """``thinking.type`` of a Messages request."""

    DISABLED = "disabled"
    ENABLED = "enabled"  # a manual budget_tokens
    ADAPTIVE = "adaptive"  # the model decides, steered by output_config.effort


class UnknownModelError(LookupError):
    """No capability row matches the model; the spec's ``model_capabilities`` can add one."""


class UnfitSchemaError(ValueError):
    """An output model whose JSON schema structured outputs cannot take."""


class ModelCapabilities(BaseModel):
    """What a model family accepts; ``models.yaml`` describes each field.

    :param sampling: the sampling parameters it takes with a non-default value.
    :param tokenizer: its tokenizer generation (see ``CapabilityTable.tokenizer_token_factor``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = Field(min_length=1)
    structured_outputs: bool
    thinking: list[ThinkingMode]
    sampling: list[SamplingParameter]
    forced_tool_choice: bool
    tokenizer: int = Field(ge=1)
    batch: bool
    max_output_tokens: int = Field(ge=1)


class CapabilityTable(BaseModel):
    """Model capabilities, and how many more tokens each tokenizer generation makes of the same text.

    :param tokenizer_token_factor: tokens per generation-1 token, by generation (4.7 and later
        count about 30 % more tokens for the same text).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokenizer_token_factor: dict[int, float]
    models: list[ModelCapabilities]

    def for_model(self, model: str) -> ModelCapabilities:
        """The row with the longest prefix of ``model``."""
        matches = [row for row in self.models if model.startswith(row.prefix)]
        if not matches:
            raise UnknownModelError(
                f"no capabilities known for model {model!r}; add a row under 'model_capabilities:' in the "
                f"workload spec (known prefixes: {', '.join(row.prefix for row in self.models)})"
            )
        return max(matches, key=lambda row: len(row.prefix))

    def token_factor(self, model: str) -> float:
        """Tokens the model's tokenizer makes per generation-1 token (1.0 when the generation is unlisted)."""
        return self.tokenizer_token_factor.get(self.for_model(model).tokenizer, 1.0)

    def with_overrides(self, rows: Iterable[ModelCapabilities]) -> CapabilityTable:
        """This table with ``rows`` replacing rows of the same prefix and adding new ones."""
        by_prefix = {row.prefix: row for row in self.models}
        by_prefix.update({row.prefix: row for row in rows})
        return self.model_copy(update={"models": list(by_prefix.values())})


@cache
def default_capability_table() -> CapabilityTable:
    """The published capabilities from ``models.yaml``."""
    return CapabilityTable.model_validate(yaml.safe_load(CAPABILITIES_FILE.read_text(encoding="utf-8")))


@cache
def _structured_output_schema(output_model: type[BaseModel]) -> str:
    # Imported here: the SDK takes about as long to import as Airflow's own, and the DAG file (parsed
    # every few seconds by the dag-processor) reaches this module without needing the SDK.
    import anthropic

    try:
        schema = anthropic.transform_schema(output_model)
    except ValueError as error:
        raise UnfitSchemaError(f"{output_model.__name__}: {error}") from error
    if cycle := _recursive_definition(schema):
        raise UnfitSchemaError(
            f"{output_model.__name__} is recursive ({cycle} refers back to itself); structured outputs "
            "take no recursive schema: set structured_output: off or flatten the model"
        )
    return json.dumps(schema)


def structured_output_schema(output_model: type[BaseModel]) -> dict[str, Any]:
    """The output model's JSON schema as structured outputs take it (a fresh dict each call).

    The SDK's ``transform_schema`` closes every object (``additionalProperties: false``) and moves
    the constraints the API does not take (``minLength``, ``maximum``, ...) into descriptions, where
    the model still reads them; the answer is validated against the pydantic model afterwards, so
    those rules still hold. A recursive schema is the one shape it cannot fix, and is refused here.
    """
    return json.loads(_structured_output_schema(output_model))


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            yield ref.removeprefix("#/$defs/")
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _recursive_definition(schema: dict[str, Any]) -> str | None:
    """The name of a definition that reaches itself through ``$ref``s, if any."""
    definitions = schema.get("$defs") or {}
    edges = {name: set(_refs(body)) for name, body in definitions.items()}
    for start in edges:
        seen: set[str] = set()
        stack = list(edges[start])
        while stack:
            name = stack.pop()
            if name == start:
                return start
            if name not in seen:
                seen.add(name)
                stack.extend(edges.get(name, ()))
    return None
