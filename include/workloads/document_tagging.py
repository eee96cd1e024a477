"""Document tagging: one to three tags per document from a fixed taxonomy.

Input record (one JSON object per line)::

    {"doc_id": "kb-00042", "department": "legal", "title": "...", "body": "..."}

The business key is ``doc_id``; ``department`` is the field the sample is stratified over.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

MAX_TAGS = 3


class Tag(StrEnum):
    FINANCE = "finance"
    LEGAL = "legal"
    HUMAN_RESOURCES = "human_resources"
    ENGINEERING = "engineering"
    MARKETING = "marketing"
    SECURITY = "security"
    OPERATIONS = "operations"


# Words that signal a tag; shared by the synthetic documents and the emulator's responder.
TAG_KEYWORDS: dict[Tag, tuple[str, ...]] = {
    Tag.FINANCE: ("invoice", "budget", "revenue", "ledger"),
    Tag.LEGAL: ("contract", "liability", "clause", "compliance"),
    Tag.HUMAN_RESOURCES: ("hiring", "payroll", "onboarding", "benefits"),
    Tag.ENGINEERING: ("deployment", "latency", "database", "release"),
    Tag.MARKETING: ("campaign", "brand", "audience", "launch"),
    Tag.SECURITY: ("incident", "credential", "vulnerability", "access review"),
    Tag.OPERATIONS: ("logistics", "inventory", "vendor", "shift"),
}


class Document(BaseModel):
    """One input record: an internal document to tag."""

    # Inputs may carry columns the prompt does not need; ids often arrive as JSON numbers and are
    # identifiers, so numbers are kept as text.
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    doc_id: str = Field(min_length=1)
    department: str
    title: str
    body: str


class DocumentTags(BaseModel):
    """What the model must answer for one document (a JSON object, nothing else)."""

    model_config = ConfigDict(extra="forbid")

    doc_id: str = Field(min_length=1)
    tags: list[Tag] = Field(min_length=1, max_length=MAX_TAGS)
    summary: str = Field(min_length=1, max_length=500)


def merge_tags(parts: Sequence[DocumentTags]) -> DocumentTags:
    """The tags of a whole document from the tags of its chunks (in document order): their union.

    A topic of any part is a topic of the document. The schema allows three tags, so when the union
    holds more, the tags named by the most chunks are kept (ties: the earlier in the document, then
    the higher in each chunk's own ranking). The summary is the first chunk's.
    """
    if not parts:
        raise ValueError("a document has at least one chunk to merge")
    first_seen: dict[Tag, int] = {}
    named: dict[Tag, int] = {}
    for part in parts:
        for tag in part.tags:
            first_seen.setdefault(tag, len(first_seen))
            named[tag] = named.get(tag, 0) + 1
    ranked = sorted(named, key=lambda tag: (-named[tag], first_seen[tag]))
    return DocumentTags(doc_id=parts[0].doc_id, tags=ranked[:MAX_TAGS], summary=parts[0].summary)
