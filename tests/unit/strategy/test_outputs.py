from __future__ import annotations

import pytest

from claude_batch.strategy.outputs import message_text, parse_output
from claude_workloads.loan_disclosure_review import LoanReview, RiskLevel
from tests.unit.strategy.helpers import review_json


@pytest.mark.parametrize(
    "text",
    [
        review_json("1"),
        f"  \n{review_json('1')}\n ",
        f"```json\n{review_json('1')}\n```",
        f"```\n{review_json('1')}```",
    ],
)
def test_a_json_answer_is_read_with_whitespace_or_a_code_fence(text: str) -> None:
    parsed = parse_output(text, LoanReview)
    assert parsed.problem is None
    assert isinstance(parsed.value, LoanReview) and parsed.value.risk_level is RiskLevel.LOW


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "the answer is empty"),
        ("Sure! Here is the review: {}", "the answer is not JSON"),
        ('{"loan_file_id": "1"}', "not a valid LoanReview: missing_disclosures: Field required"),
        (
            '{"loan_file_id": "1", "missing_disclosures": [], "risk_level": "severe", "rationale": "x"}',
            "risk_level: Input should be 'low', 'medium' or 'high'",
        ),
    ],
)
def test_an_invalid_answer_says_why(text: str, problem: str) -> None:
    parsed = parse_output(text, LoanReview)
    assert parsed.value is None
    assert problem in (parsed.problem or "")


def test_many_problems_are_summarised() -> None:
    parsed = parse_output('{"extra": 1}', LoanReview)
    assert (parsed.problem or "").endswith("and 2 more")


def test_message_text_joins_text_blocks_only() -> None:
    message = {
        "content": [
            {"type": "thinking", "thinking": "hmm"},
            {"type": "text", "text": "{"},
            {"type": "text", "text": "}"},
        ]
    }
    assert message_text(message) == "{}"
