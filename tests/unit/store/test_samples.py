"""Sample gates: the last passed validation of a prompt fingerprint and model lets the gate shrink."""

from __future__ import annotations

from claude_batch.store import Store


def test_last_passed_validation_is_the_latest_pass_of_that_prompt_and_model(store: Store) -> None:
    store.record_sample_validation("loan_review", "sha256:p1", "claude-sonnet-4-5", 100, 0.99, True)
    latest = store.record_sample_validation("loan_review", "sha256:p1", "claude-sonnet-4-5", 30, 0.97, True)
    store.record_sample_validation("loan_review", "sha256:p1", "claude-sonnet-4-5", 30, 0.62, False)
    store.record_sample_validation("loan_review", "sha256:p1", "claude-haiku-4-5", 100, 1.0, True)

    assert store.last_passed_validation("loan_review", "sha256:p1", "claude-sonnet-4-5") == latest


def test_a_new_prompt_or_failed_gates_have_no_passed_validation(store: Store) -> None:
    store.record_sample_validation("loan_review", "sha256:p1", "claude-sonnet-4-5", 100, 0.5, False)

    assert store.last_passed_validation("loan_review", "sha256:p1", "claude-sonnet-4-5") is None
    assert store.last_passed_validation("loan_review", "sha256:p2", "claude-sonnet-4-5") is None
    assert store.last_passed_validation("document_tagging", "sha256:p1", "claude-sonnet-4-5") is None


def test_a_prompt_is_compared_with_the_latest_sample_of_another_fingerprint(store: Store) -> None:
    store.record_sample_validation("loan_review", "sha256:p1", "claude-sonnet-4-5", 100, 0.99, True)
    previous = store.record_sample_validation("loan_review", "sha256:p2", "claude-sonnet-4-5", 30, 0.8, False)
    current = store.record_sample_validation("loan_review", "sha256:p3", "claude-sonnet-4-5", 60, 0.95, True)
    store.record_sample_validation("document_tagging", "sha256:p9", "claude-haiku-4-5", 30, 1.0, True)

    assert store.last_validation("loan_review", "sha256:p3") == current
    assert store.last_validation("loan_review", "sha256:p3", same_prompt=False) == previous
    assert store.last_validation("loan_review", "sha256:p1", same_prompt=False) == current
    assert store.last_validation("document_tagging", "sha256:p9", same_prompt=False) is None
