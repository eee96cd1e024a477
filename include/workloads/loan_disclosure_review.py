"""Loan disclosure review: which required disclosures a loan file lacks, and how risky that is.

Input record (one JSON object per line)::

    {"loan_file_id": "114829", "product": "mortgage", "borrower_state": "CA", "text": "..."}

The business key is ``loan_file_id``; ``product`` is the field the sample is stratified over.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Disclosure(StrEnum):
    """A disclosure a consumer loan file must carry (Truth in Lending style)."""

    ANNUAL_PERCENTAGE_RATE = "annual_percentage_rate"
    FINANCE_CHARGE = "finance_charge"
    AMOUNT_FINANCED = "amount_financed"
    TOTAL_OF_PAYMENTS = "total_of_payments"
    PAYMENT_SCHEDULE = "payment_schedule"
    LATE_PAYMENT = "late_payment"
    PREPAYMENT = "prepayment"
    RIGHT_TO_CANCEL = "right_to_cancel"


# The heading under which each disclosure appears in a loan file. The synthetic files of
# claude_demo and the emulator's responder both use this table, so "the model" is checkable.
DISCLOSURE_HEADINGS: dict[Disclosure, str] = {
    Disclosure.ANNUAL_PERCENTAGE_RATE: "ANNUAL PERCENTAGE RATE",
    Disclosure.FINANCE_CHARGE: "FINANCE CHARGE",
    Disclosure.AMOUNT_FINANCED: "AMOUNT FINANCED",
    Disclosure.TOTAL_OF_PAYMENTS: "TOTAL OF PAYMENTS",
    Disclosure.PAYMENT_SCHEDULE: "PAYMENT SCHEDULE",
    Disclosure.LATE_PAYMENT: "LATE PAYMENT CHARGE",
    Disclosure.PREPAYMENT: "PREPAYMENT POLICY",
    Disclosure.RIGHT_TO_CANCEL: "NOTICE OF RIGHT TO CANCEL",
}


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


def risk_for(missing: int) -> RiskLevel:
    """The review policy: any gap is a finding, three or more gaps make the file high risk."""
    if missing == 0:
        return RiskLevel.LOW
    return RiskLevel.MEDIUM if missing < 3 else RiskLevel.HIGH


class LoanFile(BaseModel):
    """One input record: a loan file's text with the fields it is keyed and sampled by."""

    # Inputs may carry columns the prompt does not need; ids often arrive as JSON numbers and are
    # identifiers, so numbers are kept as text.
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    loan_file_id: str = Field(min_length=1)
    product: str
    borrower_state: str
    text: str


class LoanReview(BaseModel):
    """What the model must answer for one loan file (a JSON object, nothing else)."""

    model_config = ConfigDict(extra="forbid")

    loan_file_id: str = Field(min_length=1)
    missing_disclosures: list[Disclosure]
    risk_level: RiskLevel
    rationale: str = Field(min_length=1, max_length=2000)


def merge_reviews(parts: Sequence[LoanReview]) -> LoanReview:
    """The review of a whole loan file from the reviews of its chunks (in file order).

    Each chunk sees part of the file, so it reports as missing every disclosure that is not in *its*
    part. A disclosure is missing from the file only when it is missing from every chunk: the
    intersection. A union would flag a disclosure that is present, just in another chunk, and the
    analyst would act on a false finding. The risk level follows from the merged set, by the policy.
    """
    if not parts:
        raise ValueError("a loan file has at least one chunk to merge")
    missing = set(parts[0].missing_disclosures)
    for part in parts[1:]:
        missing &= set(part.missing_disclosures)
    ordered = [disclosure for disclosure in Disclosure if disclosure in missing]
    if ordered:
        rationale = (
            f"{len(ordered)} of {len(Disclosure)} required disclosures are missing from all "
            f"{len(parts)} parts of the file: " + ", ".join(d.value for d in ordered) + "."
        )
    else:
        rationale = f"Every required disclosure is present in one of the {len(parts)} parts of the file."
    return LoanReview(
        loan_file_id=parts[0].loan_file_id,
        missing_disclosures=ordered,
        risk_level=risk_for(len(ordered)),
        rationale=rationale,
    )
