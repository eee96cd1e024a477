"""``make bench``: run every benchmark in bench/ one after the other; keep and print their figures.

A benchmark is ``bench/<name>.py`` (files starting with ``_`` are helpers). Each runs as
``.venv/bin/python bench/<name>.py`` from the repo root; its output goes to the terminal and to
``bench/results/<name>.log``, its last line (one JSON object) to ``bench/results/<name>.json``.
``--only name,name`` runs a subset. The exit status is non-zero when a benchmark failed or missed
its targets (each benchmark's JSON says which, under ``meets_targets``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="", help="comma-separated benchmark names (default: all)")
    args = parser.parse_args()
    names = sorted(path.stem for path in BENCH.glob("*.py") if not path.name.startswith("_"))
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - set(names)
        if unknown:
            parser.error(f"no such benchmark: {', '.join(sorted(unknown))} (known: {', '.join(names)})")
        names = [name for name in names if name in wanted]
    RESULTS.mkdir(exist_ok=True)
    outcomes: dict[str, str] = {}
    for name in names:
        print(f"== bench/{name}.py", flush=True)
        last = ""
        with (RESULTS / f"{name}.log").open("w") as log:
            process = subprocess.Popen(
                [sys.executable, str(BENCH / f"{name}.py")],
                cwd=BENCH.parent,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            assert process.stdout is not None
            for line in process.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                log.write(line)
                if line.strip():
                    last = line.strip()
            code = process.wait()
        try:
            figures = json.loads(last)
        except json.JSONDecodeError:
            outcomes[name] = f"failed (exit {code}), no figures; see bench/results/{name}.log"
            continue
        (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
        met = figures.get("meets_targets")
        outcomes[name] = {True: "targets met", False: "targets MISSED", None: "done"}[met]
        if code != 0 and met is not False:
            outcomes[name] = f"failed (exit {code})"
    print("\n== results in bench/results/")
    for name, outcome in outcomes.items():
        print(f"  {name}: {outcome}")
    return 0 if all(outcome in ("targets met", "done") for outcome in outcomes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
