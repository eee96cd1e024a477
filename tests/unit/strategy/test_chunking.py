"""Chunking: the splitter's promises for any text and limits, chunk ids, and the merge rules' truth."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_batch.strategy.chunking import (
    DEFAULT_HEADINGS,
    MIN_CHUNK_BYTES,
    ChunkNode,
    chunk_custom_id,
    covering_answers,
    split_text,
)
from claude_batch.strategy.custom_ids import CUSTOM_ID, custom_id_for
from claude_demo.responders import document_tagging_responder, loan_review_responder
from claude_emulator.params import Prompt
from claude_workloads.document_tagging import TAG_KEYWORDS, DocumentTags, Tag, merge_tags
from claude_workloads.loan_disclosure_review import DISCLOSURE_HEADINGS, Disclosure, LoanReview, merge_reviews

WORDS = st.sampled_from(["alpha", "beta", "Gamma", "δέλτα", "日本語", "x", "", "  ", "\t"])
LINES = st.one_of(
    st.lists(WORDS, max_size=12).map(" ".join),
    st.sampled_from(["SECTION ONE", "# Heading", "PAYMENT SCHEDULE:", "", "   "]),
    st.text(max_size=40),
)
TEXTS = st.lists(LINES, max_size=60).map("\n".join)


def _sizes(text: str, chunks) -> list[int]:
    return [len(chunk.of(text).encode()) for chunk in chunks]


@settings(max_examples=300, deadline=None)
@given(
    text=TEXTS,
    max_bytes=st.integers(MIN_CHUNK_BYTES, 400),
    target_share=st.floats(0.1, 1.0),
    overlap_share=st.floats(0.0, 0.5),
    headings=st.sampled_from([DEFAULT_HEADINGS, None]),
)
def test_chunks_cover_the_whole_text_in_order_and_none_exceeds_the_limit(
    text: str, max_bytes: int, target_share: float, overlap_share: float, headings: str | None
) -> None:
    overlap = min(int(max_bytes * overlap_share), max_bytes - MIN_CHUNK_BYTES)
    target = max(1, int(max_bytes * target_share))
    chunks = split_text(text, max_bytes, target, overlap, headings)

    assert "".join(text[chunk.start : chunk.end] for chunk in chunks) == text
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    assert all(a.end == b.start for a, b in itertools.pairwise(chunks))
    assert all(size <= max_bytes for size in _sizes(text, chunks))
    assert all(
        chunk.begin <= chunk.start and len(text[chunk.begin : chunk.start].encode()) <= overlap
        for chunk in chunks
    )
    assert split_text(text, max_bytes, target, overlap, headings) == chunks


def test_a_blank_stretch_joins_a_neighbouring_chunk_instead_of_being_sent_alone() -> None:
    # Lines of exactly the 50-byte target, then a blank line: packed, it would be a chunk of its own.
    text = ("a" * 49 + "\n") * 3 + "\n" + "b" * 50
    chunks = split_text(text, 120, target_bytes=50)
    assert [chunk.of(text) for chunk in chunks] == ["a" * 49 + "\n"] * 2 + ["a" * 49 + "\n\n", "b" * 50]


@settings(max_examples=200, deadline=None)
@given(
    sections=st.lists(
        st.tuples(st.sampled_from(list(DISCLOSURE_HEADINGS.values())), st.integers(0, 300)), max_size=20
    ),
    max_bytes=st.integers(350, 2000),
)
def test_a_section_that_fits_a_chunk_is_never_cut(sections: list[tuple[str, int]], max_bytes: int) -> None:
    text = "\n".join(f"{heading}\n" + "word " * (length // 5) for heading, length in sections)
    chunks = split_text(text, max_bytes)
    cores = [text[chunk.start : chunk.end] for chunk in chunks]
    for match in re.finditer(DEFAULT_HEADINGS, text, re.MULTILINE):
        following = re.compile(DEFAULT_HEADINGS, re.MULTILINE).search(text, match.end())
        section = text[match.start() : following.start() if following else len(text)]
        if len(section.encode()) <= max_bytes:
            assert any(section in core for core in cores), section[:40]


def _loan_prompt(text: str) -> Prompt:
    return Prompt(model="claude-sonnet-4-6", system="", user=f'<loan_file id="L1">\n{text}\n</loan_file>')


def _doc_prompt(text: str) -> Prompt:
    return Prompt(model="claude-sonnet-4-6", system="", user=f'<document id="D1">\n{text}\n</document>')


@settings(max_examples=150, deadline=None)
@given(
    present=st.lists(st.sampled_from(list(Disclosure)), unique=True),
    filler=st.integers(0, 40),
    max_bytes=st.integers(200, 3000),
    seed=st.randoms(use_true_random=False),
)
def test_merged_chunk_reviews_equal_the_review_of_the_whole_file(present, filler, max_bytes, seed) -> None:
    sections = [f"{DISCLOSURE_HEADINGS[d]}\nStated as 1,234 in the schedule." for d in present]
    sections += ["GENERAL TERMS\n" + "Payments are applied first to interest. " * filler] * 3
    seed.shuffle(sections)
    text = "LOAN FILE L1\n\n" + "\n\n".join(sections)
    whole = LoanReview.model_validate_json(loan_review_responder(_loan_prompt(text)))
    parts = [
        LoanReview.model_validate_json(loan_review_responder(_loan_prompt(chunk.of(text))))
        for chunk in split_text(text, max_bytes)
    ]

    merged = merge_reviews(parts)

    assert merged.missing_disclosures == whole.missing_disclosures
    assert merged.risk_level == whole.risk_level
    assert merged.loan_file_id == "L1"


@settings(max_examples=150, deadline=None)
@given(
    mentioned=st.lists(st.sampled_from(list(Tag)), min_size=1, max_size=3, unique=True),
    repeats=st.integers(1, 30),
    max_bytes=st.integers(100, 2000),
)
def test_merged_chunk_tags_equal_the_tags_of_the_whole_document(mentioned, repeats, max_bytes) -> None:
    # At most three topics: the schema's three tags hold the whole union, so merge must find them all.
    # Every chunk has a topic (a part with none gets the model's closest tag, as a whole one would).
    paragraphs = [f"{TAG_KEYWORDS[tag][0]} " * repeats for tag in mentioned]
    text = "\n".join(paragraphs)
    whole = DocumentTags.model_validate_json(document_tagging_responder(_doc_prompt(text)))
    parts = [
        DocumentTags.model_validate_json(document_tagging_responder(_doc_prompt(chunk.of(text))))
        for chunk in split_text(text, max_bytes)
    ]

    assert set(merge_tags(parts).tags) == set(whole.tags) == set(mentioned)


def test_tag_union_over_three_keeps_the_tags_most_chunks_name() -> None:
    def tags(*names: Tag) -> DocumentTags:
        return DocumentTags(doc_id="D1", tags=list(names), summary="s")

    parts = [
        tags(Tag.LEGAL, Tag.FINANCE),
        tags(Tag.SECURITY, Tag.FINANCE),
        tags(Tag.MARKETING, Tag.FINANCE, Tag.LEGAL),
    ]
    assert merge_tags(parts).tags == [Tag.FINANCE, Tag.LEGAL, Tag.SECURITY]


def test_a_disclosure_missing_from_one_chunk_only_is_present_in_the_file() -> None:
    def review(*missing: Disclosure) -> LoanReview:
        return LoanReview(
            loan_file_id="L1", missing_disclosures=list(missing), risk_level="low", rationale="r"
        )

    merged = merge_reviews(
        [
            review(Disclosure.PREPAYMENT, Disclosure.LATE_PAYMENT, Disclosure.RIGHT_TO_CANCEL),
            review(Disclosure.LATE_PAYMENT, Disclosure.FINANCE_CHARGE, Disclosure.PREPAYMENT),
        ]
    )
    assert merged.missing_disclosures == [Disclosure.LATE_PAYMENT, Disclosure.PREPAYMENT]
    assert merged.risk_level == "medium"


def test_chunk_ids_are_readable_and_stay_within_64_characters() -> None:
    readable = custom_id_for("loan", ["114829"], __import__("datetime").date(2026, 6, 7))
    assert chunk_custom_id(readable, 2, 5) == "loan-2026-06-07-114829-c02of05"
    assert chunk_custom_id(chunk_custom_id(readable, 2, 5), 1, 2) == "loan-2026-06-07-114829-c02of05-c01of02"
    assert chunk_custom_id(readable, 7, 120) == "loan-2026-06-07-114829-c007of120"
    hashed = custom_id_for("loan", ["x" * 80], __import__("datetime").date(2026, 6, 7))
    assert len(hashed) == 64
    first, second = chunk_custom_id(hashed, 1, 3), chunk_custom_id(hashed, 2, 3)
    assert CUSTOM_ID.fullmatch(first) and CUSTOM_ID.fullmatch(second)
    assert first.endswith("-c01of03") and second.endswith("-c02of03") and first != second
    nested = chunk_custom_id(chunk_custom_id(first, 1, 2), 2, 2)
    assert CUSTOM_ID.fullmatch(nested) and nested.endswith("-c02of02")


def test_a_record_is_covered_by_its_chunks_or_by_what_a_failed_chunk_was_split_into() -> None:
    nodes = [
        ChunkNode("r-c01of02", "r", 1),
        ChunkNode("r-c02of02", "r", 2),
        ChunkNode("r-c02of02-c01of02", "r-c02of02", 1),
        ChunkNode("r-c02of02-c02of02", "r-c02of02", 2),
    ]
    answered = dict.fromkeys(["r-c02of02-c02of02", "r-c01of02", "r-c02of02-c01of02"])
    assert covering_answers("r", nodes, answered) == (
        ["r-c01of02", "r-c02of02-c01of02", "r-c02of02-c02of02"],
        None,
    )
    del answered["r-c02of02-c01of02"]
    assert covering_answers("r", nodes, answered) == ([], "r-c02of02-c01of02")


def test_limits_that_leave_no_room_are_refused() -> None:
    with pytest.raises(ValueError, match="leaves under"):
        split_text("text", 10, overlap_bytes=8)
