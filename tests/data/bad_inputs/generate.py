"""The bad-input kinds whose files would be large, written on demand so the repository stays small.

``write_generated(folder)`` writes each file next to the committed ones' names (JSONL numbered 26-32,
CSV c02 and c08, so a concatenation in name order keeps the truncated files last); ``python
tests/data/bad_inputs/generate.py OUT_DIR`` does the same from a shell. Every file holds good records
around the bad one.
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
# Windows paths: every backslash doubles when the request is written as JSON, so 560 KB of text
# (about 140,000 tokens, inside the window) makes a request over 1 MB. (Backslashes, not quotes: the
# prompt escapes a quote as &#34;, which would push the text over the context window instead.)
ESCAPE_HEAVY_TEXT = "LOAN FILE bi27x C:\\scans" + "\\" * 560_000

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


CSV_HEADER = "loan_file_id,product,borrower_state,text"
# A line far over the record cap the suite runs with (16 MB): skipped unread, quarantined with its size.
LINE_OF_50_MB = "x" * 50_000_000


def _csv_row(key: str, text: str) -> str:
    return f"{key},auto,CA,LOAN FILE {key} {text}"


GENERATED.update(
    {
        "32-line-of-50-mb.jsonl": _lines(good("bi32a"), _record("bi32x", LINE_OF_50_MB), good("bi32b")),
        # A scanned page in one cell: over the csv module's default 131,072 characters, under a request.
        "c02-cell-of-500-kb.csv": _lines(
            CSV_HEADER,
            _csv_row("bc02a", "short"),
            _csv_row("bc02b", "page " * 100_000),
            _csv_row("bc02c", "short"),
        ),
        "c08-line-of-50-mb.csv": _lines(
            CSV_HEADER,
            _csv_row("bc08a", "short"),
            _csv_row("bc08x", LINE_OF_50_MB),
            _csv_row("bc08b", "short"),
        ),
    }
)


def write_generated(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in GENERATED.items():
        if not (folder / name).exists():
            (folder / name).write_bytes(content)
        written.append(folder / name)
    return written


if __name__ == "__main__":
    for path in write_generated(Path(sys.argv[1])):
        print(path)
