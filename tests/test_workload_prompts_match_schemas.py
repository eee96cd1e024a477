"""The static system prompts list exactly what the output schemas accept, so they cannot drift apart."""

from __future__ import annotations

from claude_workloads.document_tagging import Tag
from claude_workloads.loan_disclosure_review import DISCLOSURE_HEADINGS, Disclosure
from tests.conftest import REPO_ROOT

PROMPTS = REPO_ROOT / "include" / "workloads" / "prompts"


def test_loan_system_prompt_names_every_disclosure_with_its_heading() -> None:
    prompt = (PROMPTS / "loan_disclosure_review.system.j2").read_text()
    assert set(DISCLOSURE_HEADINGS) == set(Disclosure)
    for disclosure, heading in DISCLOSURE_HEADINGS.items():
        assert f'- {disclosure.value}: heading "{heading}"' in prompt


def test_tagging_system_prompt_lists_exactly_the_taxonomy() -> None:
    prompt = (PROMPTS / "document_tagging.system.j2").read_text()
    listed = prompt.split("Allowed tags:")[1].split(".")[0]
    assert {t.strip() for t in listed.replace("\n", " ").split(",")} == {t.value for t in Tag}
