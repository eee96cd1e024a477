"""Synthetic consumer loan files, about 4 KB of text each, some lacking required disclosures.

Deterministic for a seed, so a demo, a test and a benchmark see the same files.
Run ``python -m claude_demo.loans --count 500 --out loans.jsonl`` to write a JSONL input file.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from pathlib import Path

from claude_workloads.loan_disclosure_review import DISCLOSURE_HEADINGS

PRODUCTS = ("mortgage", "auto", "personal", "heloc")
STATES = ("CA", "NY", "TX", "FL", "IL", "WA", "GA", "OH")
_FILLER = (
    "The borrower acknowledges receipt of this statement and agrees to the terms set out below. "
    "Payments are applied first to interest, then to principal, then to fees. The lender may report "
    "the account to consumer reporting agencies. Escrow amounts may change with taxes and insurance. "
)


def _disclosure_section(heading: str, rng: random.Random) -> str:
    amount = rng.randint(1_000, 900_000)
    return f"{heading}\nThe {heading.lower()} for this loan is stated as {amount:,} in the schedule. " + (
        _FILLER * rng.randint(1, 2)
    )


def loan_file(index: int, rng: random.Random, missing_rate: float = 0.3, target_bytes: int = 4000) -> dict:
    """One loan file record; with probability `missing_rate` it lacks one to four disclosures."""
    headings = list(DISCLOSURE_HEADINGS.values())
    if rng.random() < missing_rate:
        for dropped in rng.sample(headings, rng.randint(1, 4)):
            headings.remove(dropped)
    loan_file_id = f"{100000 + index}"
    product = PRODUCTS[index % len(PRODUCTS)]
    parts = [f"LOAN FILE {loan_file_id} - {product.upper()} LOAN AGREEMENT"]
    parts += [_disclosure_section(h, rng) for h in headings]
    text = "\n\n".join(parts)
    while len(text) < target_bytes:
        text += "\n" + _FILLER
    return {
        "loan_file_id": loan_file_id,
        "product": product,
        "borrower_state": rng.choice(STATES),
        "text": text,
    }


def loan_files(
    count: int, seed: int = 7, missing_rate: float = 0.3, target_bytes: int = 4000
) -> Iterator[dict]:
    rng = random.Random(seed)
    for index in range(count):
        yield loan_file(index, rng, missing_rate, target_bytes)


def write_loan_files(path: Path, count: int, seed: int = 7, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for record in loan_files(count, seed, **kwargs):
            out.write(json.dumps(record) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--missing-rate", type=float, default=0.3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    write_loan_files(args.out, args.count, args.seed, missing_rate=args.missing_rate)
    print(args.out)


if __name__ == "__main__":
    main()
