"""Synthetic internal documents for the document tagging workload (deterministic for a seed).

Run ``python -m claude_demo.documents --count 200 --out docs.jsonl`` to write a JSONL input file.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from pathlib import Path

from claude_workloads.document_tagging import TAG_KEYWORDS, Tag


def document(index: int, rng: random.Random) -> dict:
    """One document whose body carries the keywords of one to three tags."""
    tags = rng.sample(list(Tag), rng.randint(1, 3))
    sentences = [
        f"This note covers the {word} work item and what the team decided about it."
        for tag in tags
        for word in rng.sample(TAG_KEYWORDS[tag], 2)
    ]
    rng.shuffle(sentences)
    return {
        "doc_id": f"kb-{index:05d}",
        "department": tags[0].value,
        "title": f"{tags[0].value.replace('_', ' ').title()} update {index}",
        "body": " ".join(sentences),
    }


def documents(count: int, seed: int = 11) -> Iterator[dict]:
    rng = random.Random(seed)
    for index in range(count):
        yield document(index, rng)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as out:
        for record in documents(args.count, args.seed):
            out.write(json.dumps(record) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
