"""The OpenAPI schemas the emulator's responses must satisfy, extracted into a small fixture file.

The spec (``../shared/reference/anthropic-openapi.json``, 1.6 MB) stays outside the repository; the
fixture ``tests/fixtures/anthropic_openapi_schemas.json`` holds the response schemas the emulator
sends and every schema they reference, with ``$ref``s rewritten to ``#/$defs/<name>``.
Regenerate it with ``.venv/bin/python -m tests.unit.emulator.openapi_schemas [--spec PATH]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from tests.conftest import REPO_ROOT

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "anthropic_openapi_schemas.json"
DEFAULT_SPEC = REPO_ROOT.parent / "shared" / "reference" / "anthropic-openapi.json"
# Every kind of body the emulator sends.
RESPONSE_SCHEMAS = (
    "MessageBatch",
    "ListResponse_MessageBatch_",
    "MessageBatchIndividualResponse",
    "DeleteMessageBatchResponse",
    "Message",
    "ErrorResponse",
    "CountMessageTokensResponse",
)
_SPEC_PREFIX = "#/components/schemas/"


def _rewrite_refs(node: Any, found: set[str]) -> Any:
    """`node` with spec refs pointing into ``$defs``; collects the referenced names in `found`."""
    if isinstance(node, dict):
        rewritten = {key: _rewrite_refs(value, found) for key, value in node.items()}
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_SPEC_PREFIX):
            found.add(ref.removeprefix(_SPEC_PREFIX))
            rewritten["$ref"] = "#/$defs/" + ref.removeprefix(_SPEC_PREFIX)
        return rewritten
    if isinstance(node, list):
        return [_rewrite_refs(item, found) for item in node]
    return node


def extract(spec: dict[str, Any]) -> dict[str, Any]:
    """The response schemas and their transitive references, as one JSON Schema ``$defs`` document."""
    schemas = spec["components"]["schemas"]
    definitions: dict[str, Any] = {}
    pending = list(RESPONSE_SCHEMAS)
    while pending:
        name = pending.pop()
        if name in definitions:
            continue
        found: set[str] = set()
        definitions[name] = _rewrite_refs(schemas[name], found)
        pending += sorted(found - definitions.keys())
    return {
        "description": "Response schemas of Anthropic's OpenAPI spec (components.schemas), extracted by "
        "tests/unit/emulator/openapi_schemas.py; do not edit by hand.",
        "roots": list(RESPONSE_SCHEMAS),
        "$defs": dict(sorted(definitions.items())),
    }


def validator(name: str, definitions: dict[str, Any]) -> Draft202012Validator:
    """A validator of the schema `name`, resolving references within `definitions`."""
    return Draft202012Validator({"$defs": definitions, "$ref": f"#/$defs/{name}"})


def fixture_definitions() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))["$defs"]


def strict(node: Any) -> Any:
    """`node` with ``additionalProperties: false`` on every object schema that lists its properties.

    The spec leaves most objects open; closed, they also catch a field the spec does not name.
    """
    if isinstance(node, dict):
        node = {key: strict(value) for key, value in node.items()}
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strict(item) for item in node]
    return node


def assert_valid(schema: str, body: Any, definitions: dict[str, Any]) -> None:
    errors = sorted(validator(schema, definitions).iter_errors(body), key=str)
    assert not errors, f"{schema}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC)
    args = parser.parse_args()
    extracted = extract(json.loads(args.spec.read_text(encoding="utf-8")))
    FIXTURE.write_text(json.dumps(extracted, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"{FIXTURE}: {len(extracted['$defs'])} schemas")


if __name__ == "__main__":
    main()
