"""The one place that names the files and folders of a run.

A run folder (one per workload and date, local or in object storage) holds::

    sample/requests.jsonl              the validation sample's requests
    sample/manifest.jsonl              custom_id -> business key of each sampled record
    sample/results/part-NNN.jsonl      their answers, sent synchronously
    sample/gate.json, sample/report.json
    shards/shard-NNNNN.jsonl           round 0's request files, one per batch
    shards/manifest.jsonl              custom_id -> business key of every round-0 request
    shards/shard-NNNNN.manifest.jsonl  the same of one shard's requests (what its partition reads)
    shards/quarantine.jsonl            records that were never sent
    shards/shard-NNNNN.results/        answers of a shard sent synchronously (part-NNN.jsonl)
    recovery/round-NN-shard-NNNNN.jsonl, round-NN-manifest.jsonl, round-NN-quarantine.jsonl
    recovery/round-NN-shard-NNNNN.manifest.jsonl
    recovery/round-NN-shard-NNNNN.results/
    results/round-NN/shard-NNNNN.jsonl a batch's results, downloaded once
    partitions/round-NN/shard-NNNNN/   one file per result class, and summary.json
    report.json                        the run report

These names are on disk in runs already started: changing one strands them. Round 0's files are in
``shards/`` and carry no round in their names; later rounds' are in ``recovery/`` with one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, Self, TypeVar

MANIFEST_FILE = "manifest.jsonl"
QUARANTINE_FILE = "quarantine.jsonl"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.json"
SHARD_STEM = "shard"
PART_GLOB = "part-*.jsonl"


class RunPath(Protocol):
    """The path-likes a run folder is made of (pathlib.Path, Airflow's ObjectStoragePath)."""

    @property
    def name(self) -> str: ...

    @property
    def parent(self) -> Any: ...

    def __truediv__(self, name: str) -> Self: ...

    def glob(self, pattern: str) -> Iterator[Self]: ...


P = TypeVar("P", bound=RunPath)


def round_name(round_number: int) -> str:
    """``round-NN``: how a round is named in file and folder names."""
    return f"round-{round_number:02d}"


def shard_name(shard_index: int) -> str:
    """``shard-NNNNN``: how a shard is named in result and partition names."""
    return f"{SHARD_STEM}-{shard_index:05d}"


def request_file_stem(round_number: int) -> str:
    """The stem of a round's request files: ``shard`` in round 0, ``round-NN-shard`` after."""
    return SHARD_STEM if round_number == 0 else f"{round_name(round_number)}-{SHARD_STEM}"


def request_file_name(round_number: int, shard_index: int) -> str:
    """``shard-00003.jsonl`` in round 0, ``round-02-shard-00003.jsonl`` in round 2."""
    return f"{request_file_stem(round_number)}-{shard_index:05d}.jsonl"


def manifest_name(round_number: int) -> str:
    return MANIFEST_FILE if round_number == 0 else f"{round_name(round_number)}-{MANIFEST_FILE}"


def shard_manifest_name(round_number: int, shard_index: int) -> str:
    """``shard-00003.manifest.jsonl`` in round 0, ``round-02-shard-00003.manifest.jsonl`` in round 2."""
    return request_file_name(round_number, shard_index).removesuffix(".jsonl") + ".manifest.jsonl"


def quarantine_name(round_number: int) -> str:
    return QUARANTINE_FILE if round_number == 0 else f"{round_name(round_number)}-{QUARANTINE_FILE}"


def class_file_name(result_class: str) -> str:
    """``succeeded.jsonl``, ``errored.jsonl`` ...: one file per result class in a partition folder."""
    return f"{result_class}.jsonl"


def part_name(number: int) -> str:
    """``part-NNN.jsonl``: one part of answers sent synchronously (a retried task adds one)."""
    return f"part-{number:03d}.jsonl"


@dataclass(frozen=True)
class PartitionFolder(Generic[P]):
    """A partition folder found on disk, with the round and shard its name says."""

    round: int
    shard: int
    path: P


@dataclass(frozen=True)
class RunLayout(Generic[P]):
    """Every file and folder of one run, under ``root`` (the run folder)."""

    root: P

    # The validation sample

    @property
    def sample_dir(self) -> P:
        return self.root / "sample"

    @property
    def sample_requests(self) -> P:
        return self.sample_dir / "requests.jsonl"

    @property
    def sample_manifest(self) -> P:
        return self.sample_dir / MANIFEST_FILE

    @property
    def sample_results(self) -> P:
        return self.sample_dir / "results"

    @property
    def sample_gate(self) -> P:
        return self.sample_dir / "gate.json"

    @property
    def sample_report(self) -> P:
        return self.sample_dir / REPORT_FILE

    def sample_result_parts(self) -> list[P]:
        return result_parts(self.sample_results)

    # Request files, manifests and quarantine files, by round

    @property
    def shards_dir(self) -> P:
        return self.round_dir(0)

    @property
    def recovery_dir(self) -> P:
        return self.root / "recovery"

    def round_dir(self, round_number: int) -> P:
        """Where a round's request files, manifest and quarantine file are."""
        return self.root / "shards" if round_number == 0 else self.recovery_dir

    def request_file(self, round_number: int, shard_index: int) -> P:
        return self.round_dir(round_number) / request_file_name(round_number, shard_index)

    def request_files(self, round_number: int) -> list[tuple[int, P]]:
        """(shard index, request file) of every request file of a round on disk, in shard order."""
        stem = f"{request_file_stem(round_number)}-"
        found = []
        for path in self.round_dir(round_number).glob(f"{stem}*.jsonl"):
            index = path.name.removeprefix(stem).removesuffix(".jsonl")
            if index.isdigit():
                found.append((int(index), path))
        return sorted(found, key=lambda item: item[0])

    def sync_results(self, round_number: int, shard_index: int) -> P:
        """The folder of the answers to a request file sent synchronously (``part-NNN.jsonl``)."""
        stem = request_file_name(round_number, shard_index).removesuffix(".jsonl")
        return self.round_dir(round_number) / f"{stem}.results"

    def manifest(self, round_number: int) -> P:
        return self.round_dir(round_number) / manifest_name(round_number)

    def shard_manifest(self, round_number: int, shard_index: int) -> P:
        return self.round_dir(round_number) / shard_manifest_name(round_number, shard_index)

    def quarantine(self, round_number: int) -> P:
        return self.round_dir(round_number) / quarantine_name(round_number)

    # Results and partitions

    def batch_results(self, round_number: int, shard_index: int) -> P:
        """A batch's results, downloaded once (a re-run reads this copy)."""
        return self.root / "results" / round_name(round_number) / f"{shard_name(shard_index)}.jsonl"

    def partition_dir(self, round_number: int, shard_index: int) -> P:
        return self.root / "partitions" / round_name(round_number) / shard_name(shard_index)

    def partition_file(self, round_number: int, shard_index: int, result_class: str) -> P:
        return self.partition_dir(round_number, shard_index) / class_file_name(result_class)

    def partition_summary(self, round_number: int, shard_index: int) -> P:
        return self.partition_dir(round_number, shard_index) / SUMMARY_FILE

    def partition_folders(self) -> list[PartitionFolder[P]]:
        """Every partition folder with a summary (a finished partition), by round then shard."""
        found = []
        for summary in (self.root / "partitions").glob(f"round-*/{SHARD_STEM}-*/{SUMMARY_FILE}"):
            folder = summary.parent
            round_number = int(folder.parent.name.removeprefix("round-"))
            shard_index = int(folder.name.removeprefix(f"{SHARD_STEM}-"))
            found.append(PartitionFolder(round_number, shard_index, folder))
        return sorted(found, key=lambda found: (found.round, found.shard))

    # The run's report

    @property
    def report(self) -> P:
        return self.root / REPORT_FILE


def result_parts(results_dir: P) -> list[P]:
    """The parts of a folder of answers sent synchronously, in the order they were written."""
    return sorted(results_dir.glob(PART_GLOB), key=str)
