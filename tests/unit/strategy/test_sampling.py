from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_batch.strategy.sampling import SampleOutcome, evaluate_sample, sample_size, select_sample
from claude_batch.strategy.sharding import ValidRecord
from claude_batch.strategy.spec import Expectation
from claude_workloads.loan_disclosure_review import LoanFile, LoanReview
from tests.unit.strategy.helpers import loan, make_spec, review_json


def _records(products: list[str]) -> list[ValidRecord]:
    return [
        ValidRecord(
            position=n + 1,
            where=f"line {n + 1}",
            record=LoanFile.model_validate(loan(str(n), product=product)),
            key_values=(str(n),),
            business_key=str(n),
            custom_id=f"loan-{n}",
        )
        for n, product in enumerate(products)
    ]


def test_a_prompt_that_passed_before_samples_less_and_a_new_one_more() -> None:
    spec = make_spec(sample={"size": 50})
    assert sample_size(spec, already_validated=True) == 30
    assert sample_size(spec, already_validated=False) == 100
    assert sample_size(make_spec(sample={"size": 80}), already_validated=True) == 40


def test_sample_size_is_never_more_than_the_input() -> None:
    assert sample_size(make_spec(), already_validated=False, input_count=12) == 12
    assert sample_size(make_spec(), already_validated=False, input_count=12, forced=50) == 12


@pytest.mark.parametrize(
    ("forced", "expected"), [(5, 30), (29, 30), (30, 30), (64, 64), (100, 100), (250, 100)]
)
def test_a_forced_sample_size_is_held_within_30_to_100(forced: int, expected: int) -> None:
    for already_validated in (True, False):
        assert sample_size(make_spec(), already_validated, input_count=1_000, forced=forced) == expected


def test_every_stratum_is_represented_even_a_rare_one() -> None:
    records = _records(["mortgage"] * 500 + ["auto"] * 300 + ["heloc"] * 3)
    sample = select_sample(records, 30, "product", seed=7)
    counts = Counter(item.record.product for item in sample)
    assert len(sample) == 30
    assert counts["heloc"] >= 1
    assert counts["mortgage"] > counts["auto"] > counts["heloc"]


def test_the_same_seed_gives_the_same_sample_and_another_seed_another() -> None:
    records = _records(["mortgage", "auto", "personal", "heloc"] * 100)
    first = [item.custom_id for item in select_sample(records, 40, "product", seed=1)]
    again = [item.custom_id for item in select_sample(iter(records), 40, "product", seed=1)]
    other = [item.custom_id for item in select_sample(records, 40, "product", seed=2)]
    assert first == again
    assert first != other


def test_sample_keeps_input_order() -> None:
    sample = select_sample(_records(["auto"] * 200), 30, None, seed=3)
    positions = [item.position for item in sample]
    assert positions == sorted(positions)


@given(
    strata=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=8),
    size=st.integers(min_value=0, max_value=120),
    seed=st.integers(),
)
def test_any_sample_has_the_right_size_and_only_distinct_records(
    strata: list[int], size: int, seed: int
) -> None:
    products = [f"p{index}" for index, count in enumerate(strata) for _ in range(count)]
    sample = select_sample(_records(products), size, "product", seed)
    assert len(sample) == min(size, len(products))
    assert len({item.custom_id for item in sample}) == len(sample)
    if 0 < len(strata) <= size:
        assert {item.record.product for item in sample} == set(products)


def _outcome(key: str, text: str | None, error: str | None = None) -> SampleOutcome:
    return SampleOutcome(custom_id=f"loan-{key}", record=loan(key), text=text, error=error)


def test_a_sample_at_or_above_the_gate_passes() -> None:
    outcomes = [_outcome(str(n), review_json(str(n))) for n in range(9)] + [_outcome("9", "I cannot help.")]
    result = evaluate_sample(outcomes, LoanReview, pass_gate=0.9)
    assert (result.passed, result.pass_rate, result.n, result.valid) == (True, 0.9, 10, 9)
    assert result.summary_lines()[0] == "sample gate: 9/10 valid (90.0%), gate 90%: pass"


def test_a_sample_under_the_gate_fails_with_the_failing_examples() -> None:
    outcomes = [
        _outcome("1", review_json("1")),
        _outcome("2", "```json\nnot json\n```"),
        _outcome("3", None, error="overloaded_error: Overloaded"),
    ]
    result = evaluate_sample(outcomes, LoanReview, pass_gate=0.9)
    assert not result.passed
    assert [(f.custom_id, f.reason) for f in result.failures] == [
        ("loan-2", result.failures[0].reason),
        ("loan-3", "no answer: overloaded_error: Overloaded"),
    ]
    assert result.failures[0].reason.startswith("the answer is not JSON")
    assert "FAIL: the bulk run is stopped before it spends" in result.summary_lines()[0]


def test_expectations_catch_valid_answers_that_are_wrong() -> None:
    expectations = [
        Expectation(field="loan_file_id", equals_input_field="loan_file_id"),
        Expectation(field="risk_level", one_of=["low", "medium"]),
    ]
    high = review_json("3").replace('"low"', '"high"')
    outcomes = [_outcome("1", review_json("1")), _outcome("2", review_json("999")), _outcome("3", high)]
    result = evaluate_sample(outcomes, LoanReview, pass_gate=0.5, expectations=expectations)
    assert [f.reason for f in result.failures] == [
        "loan_file_id is '999' but the input's loan_file_id is '2'",
        "risk_level is <RiskLevel.HIGH: 'high'>, not one of ['low', 'medium']",
    ]


@pytest.mark.parametrize("gate", [0.1, 1.0])
def test_an_empty_sample_never_passes(gate: float) -> None:
    assert not evaluate_sample([], LoanReview, pass_gate=gate).passed
