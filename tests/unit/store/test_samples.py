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
