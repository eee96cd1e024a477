"""The emulator's "model": deterministic responders, one per bundled workload, and a default.

A responder reads a :class:`~claude_emulator.params.Prompt` and returns the answer text, or None when
the prompt is not its workload. Responders are tried newest first; the default answers anything.
A workload adds its own with :func:`register_responder`.

- loan disclosure review: finds ``<loan_file id="ID">`` in the user turn; a disclosure is present
  when its heading (``DISCLOSURE_HEADINGS``) is a line of its own; answers a ``LoanReview`` as JSON.
- document tagging: finds ``<document id="ID">``; tags whose keywords occur in the text, the most
  mentioned first, one to three; answers a ``DocumentTags`` as JSON.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from claude_emulator.params import Prompt
from claude_workloads.document_tagging import TAG_KEYWORDS, DocumentTags, Tag
from claude_workloads.loan_disclosure_review import DISCLOSURE_HEADINGS, Disclosure, LoanReview, risk_for

Responder = Callable[[Prompt], str | None]

_LOAN_FILE = re.compile(r'<loan_file id="([^"]*)">\n(.*?)\n</loan_file>', re.DOTALL)
_DOCUMENT = re.compile(r'<document id="([^"]*)">(.*?)(?:</document>|\Z)', re.DOTALL)
# A document that mentions no keyword still gets a tag, as a model would pick the closest one.
_FALLBACK_TAG = Tag.OPERATIONS


def loan_review_responder(prompt: Prompt) -> str | None:
    match = _LOAN_FILE.search(prompt.user)
    if match is None:
        return None
    loan_file_id, text = match.groups()
    lines = {line.strip() for line in text.splitlines()}
    missing = [disclosure for disclosure in Disclosure if DISCLOSURE_HEADINGS[disclosure] not in lines]
    if missing:
        rationale = (
            f"{len(missing)} of {len(Disclosure)} required disclosures are missing: "
            + ", ".join(disclosure.value for disclosure in missing)
            + "."
        )
    else:
        rationale = f"All {len(Disclosure)} required disclosures are present under their headings."
    review = LoanReview(
        loan_file_id=loan_file_id or "unknown",
        missing_disclosures=missing,
        risk_level=risk_for(len(missing)),
        rationale=rationale,
    )
    return review.model_dump_json()


def document_tagging_responder(prompt: Prompt) -> str | None:
    match = _DOCUMENT.search(prompt.user)
    if match is None:
        return None
    doc_id, text = match.groups()
    lowered = text.lower()
    mentions = {tag: sum(lowered.count(word) for word in TAG_KEYWORDS[tag]) for tag in Tag}
    ranked = sorted((tag for tag in Tag if mentions[tag]), key=lambda tag: -mentions[tag])
    tags = ranked[:3] or [_FALLBACK_TAG]
    summary = "A note about " + " and ".join(tag.value.replace("_", " ") for tag in tags) + " matters."
    return DocumentTags(doc_id=doc_id or "unknown", tags=tags, summary=summary).model_dump_json()


def default_responder(prompt: Prompt) -> str:
    words = prompt.user.split()
    opening = " ".join(words[:12])
    return (
        f"This is the Claude emulator answering a {len(words)}-word message that begins: "
        f'"{opening}". A real model would answer it here.'
    )


_RESPONDERS: list[tuple[str, Responder]] = [
    ("loan_disclosure_review", loan_review_responder),
    ("document_tagging", document_tagging_responder),
]


def register_responder(name: str, responder: Responder) -> None:
    """Add (or replace) the responder called `name`; it is tried before the ones registered earlier."""
    _RESPONDERS[:] = [(known, existing) for known, existing in _RESPONDERS if known != name]
    _RESPONDERS.insert(0, (name, responder))


def respond(prompt: Prompt) -> str:
    for _, responder in _RESPONDERS:
        answer = responder(prompt)
        if answer is not None:
            return answer
    return default_responder(prompt)
