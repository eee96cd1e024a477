"""Structured outputs: the JSON schemas the API takes in ``output_config.format``, and answers in them.

The API compiles the schema into a grammar, so it refuses what the grammar cannot express (a 400
``invalid_request_error``, or an ``errored`` line in a batch): an object that does not set
``additionalProperties: false``, numeric and length constraints (``minimum``, ``maxLength``, ...),
``minItems`` other than 0 or 1, ``oneOf``/``not``/conditionals, a string ``format`` it does not know,
an ``enum`` of objects, a ``$ref`` outside the schema, and a recursive schema. What it accepts, it
honours: the answer is JSON valid against the schema (only a ``max_tokens`` cut-off breaks it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator

from claude_emulator.errors import invalid_request

TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})
STRING_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"}
)
# Keywords that carry no constraint the grammar must follow.
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$schema", "$id", "$comment"})
_KEYWORDS = _ANNOTATIONS | {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "enum",
    "const",
    "anyOf",
    "allOf",
    "$ref",
    "$defs",
    "definitions",
    "format",
    "pattern",
}
_DEFINITION_PREFIXES = ("#/$defs/", "#/definitions/")
_FIELD = "output_config.format.schema"


def check_output_config(output_config: Any, *, structured_outputs: bool, model: str) -> dict | None:
    """The schema of ``output_config.format`` (None without one), or ApiError as the API refuses it."""
    if not isinstance(output_config, dict):
        raise invalid_request("output_config: Input should be a valid dictionary")
    for key in output_config:
        if key not in ("format", "effort"):
            raise invalid_request(f"output_config.{key}: Extra inputs are not permitted")
    effort = output_config.get("effort")
    if effort is not None and effort not in ("low", "medium", "high", "xhigh", "max"):
        raise invalid_request(
            "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'"
        )
    output_format = output_config.get("format")
    if output_format is None:
        return None
    if not isinstance(output_format, dict):
        raise invalid_request("output_config.format: Input should be a valid dictionary")
    for key in output_format:
        if key not in ("type", "schema"):
            raise invalid_request(f"output_config.format.{key}: Extra inputs are not permitted")
    if output_format.get("type") != "json_schema":
        raise invalid_request("output_config.format.type: Input should be 'json_schema'")
    schema = output_format.get("schema")
    if not isinstance(schema, dict):
        raise invalid_request(f"{_FIELD}: Field required (a JSON schema object)")
    if not structured_outputs:
        raise invalid_request(f"output_config.format: structured outputs are not supported by {model}")
    for where, problem in _problems(schema, schema, ""):
        raise invalid_request(f"{_FIELD}{where}: {problem}")
    return schema


def _problems(node: Any, root: dict, where: str) -> Iterator[tuple[str, str]]:
    """(location, what is wrong) for each part of ``node`` the API would refuse; the first is enough."""
    if not isinstance(node, dict):
        yield where, "a schema must be an object"
        return
    for keyword in node:
        if keyword not in _KEYWORDS:
            yield where, f"'{keyword}' is not supported in structured outputs"
            return
    types = node.get("type")
    for name in types if isinstance(types, list) else [types] if types is not None else []:
        if name not in TYPES:
            yield where, f"type '{name}' is not supported"
    if "format" in node and node["format"] not in STRING_FORMATS:
        yield where, f"string format '{node['format']}' is not supported"
    if "minItems" in node and node["minItems"] not in (0, 1):
        yield where, f"minItems {node['minItems']} is not supported; only 0 or 1"
    if "enum" in node and not all(isinstance(v, str | int | float | bool) or v is None for v in node["enum"]):
        yield where, "enum values must be strings, numbers, booleans or null"
    is_object = types == "object" or (isinstance(types, list) and "object" in types) or "properties" in node
    if is_object and node.get("additionalProperties") is not False:
        yield where, "objects must set additionalProperties to false"
    if "$ref" in node:
        yield from _ref_problems(node["$ref"], root, where, set())
    for keyword in ("$defs", "definitions", "properties"):
        for name, child in (node.get(keyword) or {}).items():
            yield from _problems(child, root, f"{where}.{keyword}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _problems(node["items"], root, f"{where}.items")
    for keyword in ("anyOf", "allOf"):
        for index, child in enumerate(node.get(keyword) or []):
            yield from _problems(child, root, f"{where}.{keyword}.{index}")


def _definition(ref: str, root: dict) -> Any:
    for prefix in _DEFINITION_PREFIXES:
        if ref.startswith(prefix):
            return (root.get(prefix[2:-1]) or {}).get(ref.removeprefix(prefix))
    return None


def _ref_problems(ref: Any, root: dict, where: str, visiting: set[str]) -> Iterator[tuple[str, str]]:
    if not isinstance(ref, str) or not ref.startswith(_DEFINITION_PREFIXES):
        yield where, f"$ref {ref!r} is not supported; only references into the schema's own $defs"
        return
    target = _definition(ref, root)
    if target is None:
        yield where, f"$ref {ref} points to no definition"
        return
    if ref in visiting:
        yield where, f"recursive schemas are not supported ({ref} refers back to itself)"
        return
    for inner in _nested_refs(target):
        yield from _ref_problems(inner, root, where, visiting | {ref})


def _nested_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _nested_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nested_refs(value)


def conforms(text: str, schema: dict) -> bool:
    """Whether ``text`` is JSON valid against ``schema``."""
    try:
        instance = json.loads(text)
    except ValueError:
        return False
    return _validator(json.dumps(schema, sort_keys=True)).is_valid(instance)


@lru_cache(maxsize=64)
def _validator(schema_json: str) -> Draft202012Validator:
    # Every request of a batch carries the same schema: it is compiled once.
    return Draft202012Validator(json.loads(schema_json))


def minimal_instance(schema: dict) -> Any:
    """The smallest JSON value valid against an accepted ``schema``: what the emulator answers when
    its responder has nothing better for the schema asked for."""
    return _instance(schema, schema)


def _instance(node: dict, root: dict) -> Any:
    if "$ref" in node:
        return _instance(_definition(node["$ref"], root), root)
    if "const" in node:
        return node["const"]
    if node.get("enum"):
        return node["enum"][0]
    if node.get("anyOf"):
        return _instance(node["anyOf"][0], root)
    if node.get("allOf"):
        merged: dict[str, Any] = {}
        for part in node["allOf"]:
            value = _instance(part, root)
            if isinstance(value, dict):
                merged.update(value)
        return merged
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in node:
        properties = node.get("properties") or {}
        return {name: _instance(properties[name], root) for name in node.get("required") or []}
    if kind == "array":
        items = node.get("items")
        return [_instance(items, root)] if node.get("minItems") == 1 and isinstance(items, dict) else []
    return {"string": _string(node.get("format")), "integer": 0, "number": 0, "boolean": False}.get(kind)


def _string(format_name: str | None) -> str:
    return {
        "date-time": "2026-01-01T00:00:00Z",
        "time": "00:00:00Z",
        "date": "2026-01-01",
        "duration": "P1D",
        "email": "emulator@example.com",
        "hostname": "example.com",
        "uri": "https://example.com/",
        "ipv4": "127.0.0.1",
        "ipv6": "::1",
        "uuid": "00000000-0000-4000-8000-000000000000",
    }.get(format_name or "", "emulated")
