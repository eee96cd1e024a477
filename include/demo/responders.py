"""The bundled workloads' answers in the Claude emulator: deterministic, so "the model" is checkable.

The emulator knows no workload; it finds these through its responder registry (``RESPONDERS`` below,
named by ``claude-emulator --responders claude_demo.responders``, its default). A responder reads a
:class:`~claude_emulator.params.Prompt` and returns the answer text, or None when the prompt is not
its workload.

- loan disclosure review: finds ``<loan_file id="ID">`` in the user turn; a disclosure is present
  when its heading (``DISCLOSURE_HEADINGS``) is a line of its own; answers a ``LoanReview`` as JSON.
- document tagging: finds ``<document id="ID">``; tags whose keywords occur in the text, the most
  mentioned first, one to three; answers a ``DocumentTags`` as JSON.
"""

from __future__ import annotations

from claude_emulator.params import Prompt
from claude_workloads.document_tagging import TAG_KEYWORDS, DocumentTags, Tag
from claude_workloads.loan_disclosure_review import DISCLOSURE_HEADINGS, Disclosure, LoanReview, risk_for

# A document that mentions no keyword still gets a tag, as a model would pick the closest one.
_FALLBACK_TAG = Tag.OPERATIONS


def _tagged(text: str, tag: str) -> tuple[str, str] | None:
    """(id, body) of the first ``<tag id="ID">body</tag>`` in `text`; the body runs to the end if unclosed.

    A plain search rather than a regular expression: it runs for every request of a batch.
    """
    opening = f'<{tag} id="'
    start = text.find(opening)
    if start < 0:
        return None
    id_end = text.find('">', start + len(opening))
    if id_end < 0:
        return None
    body_start = id_end + 2
    body_end = text.find(f"</{tag}>", body_start)
    return text[start + len(opening) : id_end], text[body_start : body_end if body_end >= 0 else len(text)]


def loan_review_responder(prompt: Prompt) -> str | None:
    found = _tagged(prompt.user, "loan_file")
    if found is None:
        return None
    loan_file_id, text = found
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
    found = _tagged(prompt.user, "document")
    if found is None:
        return None
    doc_id, text = found
    lowered = text.lower()
    mentions = {tag: sum(lowered.count(word) for word in TAG_KEYWORDS[tag]) for tag in Tag}
    ranked = sorted((tag for tag in Tag if mentions[tag]), key=lambda tag: -mentions[tag])
    tags = ranked[:3] or [_FALLBACK_TAG]
    summary = "A note about " + " and ".join(tag.value.replace("_", " ") for tag in tags) + " matters."
    return DocumentTags(doc_id=doc_id or "unknown", tags=tags, summary=summary).model_dump_json()


# What the emulator's registry reads: tried in this order, the first answer wins.
RESPONDERS = {
    "loan_disclosure_review": loan_review_responder,
    "document_tagging": document_tagging_responder,
}
