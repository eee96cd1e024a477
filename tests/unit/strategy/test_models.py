from __future__ import annotations

from enum import StrEnum

import pytest
from pydantic import BaseModel

from claude_batch.strategy.cost import default_price_table
from claude_batch.strategy.models import (
    ThinkingMode,
    UnfitSchemaError,
    UnknownModelError,
    default_capability_table,
    structured_output_schema,
)

CURRENT_FAMILIES = [
    "claude-opus-4-5",
    "claude-opus-4-6",
    "claude-opus-4-7",
    "claude-opus-4-8",
    "claude-opus-5",
    "claude-opus-5-5",
    "claude-sonnet-4-5",
    "claude-sonnet-4-6",
    "claude-sonnet-5",
    "claude-sonnet-5-5",
    "claude-haiku-4-5",
    "claude-haiku-5-5",
]


@pytest.mark.parametrize("model", CURRENT_FAMILIES)
def test_every_current_family_has_a_price_and_its_capabilities(model: str) -> None:
    capabilities = default_capability_table().for_model(model)
    assert capabilities.structured_outputs
    assert capabilities.batch
    assert default_price_table().price_for(model).input_per_mtok > 0


def test_the_newer_facts_are_in_the_table() -> None:
    table = default_capability_table()
    assert table.for_model("claude-sonnet-5").sampling == []
    assert table.for_model("claude-sonnet-4-6").sampling == ["temperature", "top_p", "top_k"]
    assert ThinkingMode.ENABLED not in table.for_model("claude-opus-4-7").thinking
    assert table.for_model("claude-opus-5-5").thinking == [ThinkingMode.ADAPTIVE]
    assert not table.for_model("claude-opus-5-5").forced_tool_choice
    assert table.token_factor("claude-opus-4-7") == pytest.approx(1.3)
    assert table.token_factor("claude-sonnet-4-6") == 1.0
    assert not table.for_model("claude-sonnet-4-20250514").structured_outputs
    assert default_price_table().price_for("claude-opus-5-5").input_per_mtok == 4.0
    assert default_price_table().price_for("claude-sonnet-5-5").output_per_mtok == 10.0


def test_the_longest_prefix_wins() -> None:
    table = default_capability_table()
    assert table.for_model("claude-opus-5-5-20261101").prefix == "claude-opus-5-5"
    assert table.for_model("claude-opus-5-20260301").prefix == "claude-opus-5"


def test_an_unknown_model_says_how_to_add_it() -> None:
    with pytest.raises(UnknownModelError, match="model_capabilities"):
        default_capability_table().for_model("gpt-9")


class Colour(StrEnum):
    RED = "red"


class Node(BaseModel):
    name: str
    children: list[Node]


class Shape(BaseModel):
    colour: Colour
    sides: int


def test_a_recursive_output_model_is_refused() -> None:
    with pytest.raises(UnfitSchemaError, match="recursive"):
        structured_output_schema(Node)


def test_a_flat_output_model_becomes_a_closed_schema() -> None:
    schema = structured_output_schema(Shape)
    assert schema["additionalProperties"] is False
    assert schema["properties"]["colour"] == {"$ref": "#/$defs/Colour"}
    # A fresh copy each call: changing one never changes the next.
    schema["properties"].clear()
    assert structured_output_schema(Shape)["properties"]
