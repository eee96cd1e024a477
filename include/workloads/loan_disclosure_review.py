"""Loan disclosure review: which required disclosures a loan file lacks, and how risky that is.

Input record (one JSON object per line)::

    {"loan_file_id": "114829", "product": "mortgage", "borrower_state": "CA", "text": "..."}

The business key is ``loan_file_id``; ``product`` is the field the sample is stratified over.
"""

from __future__ import annotations

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
