"""Builders shared by the strategy tests: bundled specs, input files and API result lines."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from claude_batch.strategy.spec import WorkloadSpec, parse_workload
from claude_batch.workloads import BUNDLED_WORKLOADS_DIR


def spec_data(name: str = "loan_disclosure_review") -> dict[str, Any]:
    """A bundled spec as the mapping its YAML holds, to change and validate again."""
    return copy.deepcopy(yaml.safe_load((BUNDLED_WORKLOADS_DIR / f"{name}.yaml").read_text()))


def make_spec(workload: str = "loan_disclosure_review", /, **sections: Any) -> WorkloadSpec:
    """A bundled spec with top-level fields replaced (sections are merged one level deep)."""
    data = spec_data(workload)
    for key, value in sections.items():
        data[key] = (
            {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
        )
    return parse_workload(data)


def write_jsonl(path: Path, records: Iterable[Any]) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")
    return path


def loan(
    loan_file_id: str, text: str = "ANNUAL PERCENTAGE RATE\n...", product: str = "auto"
) -> dict[str, str]:
    return {"loan_file_id": loan_file_id, "product": product, "borrower_state": "CA", "text": text}


def review_json(loan_file_id: str) -> str:
    return json.dumps(
        {
            "loan_file_id": loan_file_id,
            "missing_disclosures": [],
            "risk_level": "low",
            "rationale": "All present.",
        }
    )


def succeeded_line(custom_id: str, text: str, stop_reason: str = "end_turn", input_tokens: int = 1000) -> str:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": 100,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 250,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "service_tier": "batch",
        },
    }
    return json.dumps({"custom_id": custom_id, "result": {"type": "succeeded", "message": message}})


def errored_line(custom_id: str, kind: str, message: str = "something went wrong") -> str:
    error = {"type": "error", "error": {"type": kind, "message": message}, "request_id": None}
    return json.dumps({"custom_id": custom_id, "result": {"type": "errored", "error": error}})


def ended_line(custom_id: str, result_type: str) -> str:
    return json.dumps({"custom_id": custom_id, "result": {"type": result_type}})
