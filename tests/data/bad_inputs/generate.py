"""The bad-input kinds whose files would be large, written on demand so the repository stays small.

``write_generated(folder)`` writes each file next to the committed ones' names (numbered 26-29, so a
concatenation in name order keeps the truncated file last); ``python tests/data/bad_inputs/generate.py
OUT_DIR`` does the same from a shell. Every file holds good records around the bad one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def good(key: str, product: str = "auto") -> str:
    """A small, valid loan file record (as the committed files hold them)."""
    text = (
        f"LOAN FILE {key} - {product.upper()} LOAN AGREEMENT\n\nANNUAL PERCENTAGE RATE\nThe annual "
        "percentage rate for this loan is 7.1 %.\n\nFINANCE CHARGE\nThe finance charge is 4,210.\n\n"
        "PAYMENT SCHEDULE\n48 monthly payments."
    )
    return json.dumps({"loan_file_id": key, "product": product, "borrower_state": "CA", "text": text})


def _record(key: str, text: str) -> str:
    return json.dumps({"loan_file_id": key, "product": "mortgage", "borrower_state": "WA", "text": text})


def _lines(*lines: str) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


# A scanned loan file pasted whole: about 900 KB, over 200,000 tokens at 4 bytes each.
HUGE_TEXT = "LOAN FILE bi26x\n" + "The borrower promises to pay the lender as scheduled. " * 17_000
# Windows paths and quoted terms: every backslash and quote doubles when the request is written as
# JSON, so 560 KB of text (about 140,000 tokens, inside the window) makes a request over 1 MB.
ESCAPE_HEAVY_TEXT = 'LOAN FILE bi27x \\\\scan\\"p\\" ' + '\\"' * 280_000

GENERATED: dict[str, bytes] = {
    "26-huge-text-over-the-context-window.jsonl": _lines(
        good("bi26a"), _record("bi26x", HUGE_TEXT), good("bi26b")
    ),
    "27-request-over-max-request-bytes.jsonl": _lines(
        good("bi27a"), _record("bi27x", ESCAPE_HEAVY_TEXT), good("bi27b")
    ),
    "28-nesting-deeper-than-the-parser.jsonl": _lines(
        good("bi28a"),
        '{"loan_file_id": "bi28x", "product": "auto", "borrower_state": "CA", "text": "x", "pages": '
        + "[" * 3_000
        + "]" * 3_000
        + "}",
        good("bi28b"),
    ),
    "29-key-with-5000-digits.jsonl": _lines(
        good("bi29a"),
        '{"loan_file_id": ' + "7" * 5_000 + ', "product": "auto", "borrower_state": "CA", "text": "x"}',
        good("bi29b"),
    ),
}


def write_generated(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in GENERATED.items():
        (folder / name).write_bytes(content)
        written.append(folder / name)
    return written


if __name__ == "__main__":
    for path in write_generated(Path(sys.argv[1])):
        print(path)
