"""Emulator throughput: create -> end -> stream results for one batch of 100,000 requests (~256 MB).

Run from the repo root: ``.venv/bin/python bench/emulator_throughput.py [--requests N]``.

The emulator runs as the real console script (a subprocess); its resident memory is sampled all
along, and the peak is reported. Each request is a document-tagging prompt of about 2.5 KB (the
workload's system prompt and a synthetic document, padded with neutral text).

``streaming_ratio`` (also ``ratio``) compares, in the same run, the emulator streaming the results
over HTTP into a file (read with httpx, as the SDK does) with a bare loop writing the same JSONL
lines, already in memory, to a file. The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import anthropic
import httpx
import psutil

from claude_demo.documents import documents
from claude_emulator.testing import running_emulator

REPO_ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PROMPT = (REPO_ROOT / "include/workloads/prompts/document_tagging.system.j2").read_text()
REQUEST_BYTES = 2500
# Words that name no tag, so the padding never changes the answer.
_PADDING = "The remainder of this note records routine details kept for the archive. "
MODEL = "claude-haiku-4-5"


def batch_requests(count: int) -> list[dict]:
    requests = []
    for record in documents(count):
        user = f'<document id="{record["doc_id"]}">\n<title>{record["title"]}</title>\n{record["body"]}\n'
        request = {
            "custom_id": record["doc_id"],
            "params": {
                "model": MODEL,
                "max_tokens": 300,
                "system": SYSTEM_PROMPT,
                "messages": [{"role": "user", "content": user}],
            },
        }
        short_by = REQUEST_BYTES - len(json.dumps(request)) - len("</document>")
        padding = (_PADDING * (short_by // len(_PADDING) + 1))[: max(short_by, 0)]
        request["params"]["messages"][0]["content"] = user + padding + "</document>"
        requests.append(request)
    return requests


class PeakMemory:
    """Samples a process's resident memory in a thread until stopped; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self._process = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self.peak_bytes = 0
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)
            self._stop.wait(self._interval)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_bytes / 2**20


def stream_results(results_url: str, out: Path) -> tuple[float, list[bytes]]:
    """Seconds to stream the results into `out` (read with httpx, as the SDK does), and the lines."""
    headers = {"x-api-key": "bench-key", "anthropic-version": "2023-06-01"}
    started = time.perf_counter()
    with httpx.stream("GET", results_url, headers=headers, timeout=600.0) as response, out.open("wb") as file:
        response.raise_for_status()
        for chunk in response.iter_bytes(1 << 20):
            file.write(chunk)
    seconds = time.perf_counter() - started
    with out.open("rb") as file:
        return seconds, list(file)


def bare_loop(lines: list[bytes], out: Path) -> float:
    """Seconds for the baseline: a loop writing the same JSONL lines, already in memory, to a file."""
    started = time.perf_counter()
    with out.open("wb") as file:
        for line in lines:
            file.write(line)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--requests", type=int, default=100_000, help="requests in the batch (default 100,000)"
    )
    args = parser.parse_args()

    requests = batch_requests(args.requests)
    body_mb = len(json.dumps({"requests": requests})) / 2**20
    print(f"{args.requests:,} requests, request body {body_mb:.1f} MB")
    with running_emulator() as emulator, tempfile.TemporaryDirectory() as scratch:
        memory = PeakMemory(emulator.pid)
        client = anthropic.Anthropic(base_url=emulator.base_url, api_key="bench-key", timeout=600.0)
        started = time.perf_counter()
        batch = client.messages.batches.create(requests=requests)
        created = time.perf_counter()
        del requests
        while batch.processing_status != "ended":
            batch = client.messages.batches.retrieve(batch.id)
        ended = time.perf_counter()
        assert batch.results_url is not None
        # Streaming and baseline alternate, three times each, and the best of each counts: neither is
        # favoured by running while the other's writes are still being flushed.
        streamed, baseline = [], []
        for attempt in range(3):
            seconds, lines = stream_results(batch.results_url, Path(scratch) / f"streamed-{attempt}.jsonl")
            streamed.append(seconds)
            if attempt == 0:
                finished = time.perf_counter()
            baseline.append(bare_loop(lines, Path(scratch) / f"bare-{attempt}.jsonl"))
        peak_mb = memory.stop()
        assert len(lines) == args.requests, f"streamed {len(lines)} lines for {args.requests} requests"
        streaming_seconds, loop_seconds = min(streamed), min(baseline)

    total = finished - started
    figures = {
        "requests": args.requests,
        "requests_per_s": round(args.requests / total, 1),
        "create_s": round(created - started, 2),
        "process_s": round(ended - created, 2),
        "stream_s": round(streaming_seconds, 3),
        "bare_loop_s": round(loop_seconds, 3),
        "peak_mb": round(peak_mb, 1),
        "streaming_ratio": round(streaming_seconds / loop_seconds, 2),
        "ratio": round(streaming_seconds / loop_seconds, 2),
    }
    print(
        f"create {figures['create_s']} s, process {figures['process_s']} s, stream {figures['stream_s']} s "
        f"({figures['requests_per_s']:,} requests/s end to end)"
    )
    print(f"emulator peak memory {figures['peak_mb']} MB (target < 1024 MB)")
    print(
        f"streaming {figures['stream_s']} s vs bare loop {figures['bare_loop_s']} s: "
        f"ratio {figures['streaming_ratio']} (target < 3)"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
