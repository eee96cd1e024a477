"""Reading the model's answer: one JSON object, checked against the workload's output model."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

# Models asked for "only JSON" still wrap it in a Markdown fence now and then; the content is fine.
_FENCE = re.compile(r"^```[A-Za-z]*[ \t]*\n(.*?)\n?```$", re.DOTALL)
_SHOWN_ERRORS = 3


@dataclass(frozen=True, slots=True)
class ParsedOutput:
    """Either the validated output or, in plain words, why the answer is not one."""

    value: BaseModel | None
    problem: str | None


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a Message: its text blocks joined (thinking and tool blocks are not the answer)."""
    return "".join(
        block.get("text", "") for block in message.get("content") or () if block.get("type") == "text"
    )


def parse_output(text: str, output_model: type[BaseModel]) -> ParsedOutput:
    """Validate ``text`` as one JSON object of ``output_model``, tolerating whitespace and a code fence."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    if not body:
        return ParsedOutput(None, "the answer is empty")
    try:
        return ParsedOutput(output_model.model_validate_json(body), None)
    except ValidationError as error:
        return ParsedOutput(None, describe_validation_error(error, output_model.__name__))


def describe_validation_error(error: ValidationError, model_name: str) -> str:
    """The first few problems of a validation error as one line, field by field."""
    problems = error.errors(include_url=False)
    if problems[0]["type"] == "json_invalid":
        return f"the answer is not JSON ({problems[0]['msg'].removeprefix('Invalid JSON: ')})"
    parts = [
        f"{'.'.join(str(p) for p in problem['loc']) or '(root)'}: {problem['msg']}"
        for problem in problems[:_SHOWN_ERRORS]
    ]
    more = f" and {len(problems) - _SHOWN_ERRORS} more" if len(problems) > _SHOWN_ERRORS else ""
    return f"not a valid {model_name}: " + "; ".join(parts) + more
