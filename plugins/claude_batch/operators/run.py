"""What every stage shares: the run context (route's XCom), the run's folder and the clients.

XCom carries this small context, ids and paths only; requests, results and outputs live in files
under the run's folder in object storage (``file://`` by default, ``s3://`` etc. in production).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from airflow.sdk import ObjectStoragePath
from pydantic import AwareDatetime, BaseModel, ConfigDict

from claude_batch.strategy.records import RecordRead, read_records
from claude_batch.strategy.routing import Route
from claude_batch.strategy.spec import InputFormat, WorkloadSpec, load_workload

DATA_URI_VARIABLE = "CLAUDE_BATCH_DATA_URI"

# The sample's paid calls are in the ledger like any other; this shard index keeps them apart from
# the input's shards (0, 1, 2, ...), which never come near it (a shard holds up to 100,000 requests).
SAMPLE_SHARD_INDEX = 1_000_000


class RunContext(BaseModel):
    """The facts of one run that the route stage settles and every later stage reads."""

    model_config = ConfigDict(extra="forbid")

    workload: str
    spec_source: str
    store_run_id: int
    run_date: date
    logical_date: AwareDatetime
    deadline: AwareDatetime
    input_uri: str
    run_dir: str
    input_count: int
    route: Route
    route_rationale: str

    @classmethod
    def of(cls, value: Any) -> RunContext:
        return value if isinstance(value, RunContext) else cls.model_validate(value)

    def spec(self) -> WorkloadSpec:
        """The workload spec the run was routed with (a bundled name or a spec file's path)."""
        return load_workload(self.spec_source)

    def path(self, *parts: str) -> ObjectStoragePath:
        """A location inside the run's folder."""
        location = ObjectStoragePath(self.run_dir)
        for part in parts:
            location = location / part
        return location


def data_root() -> str:
    """Where run folders go: ``$CLAUDE_BATCH_DATA_URI``, or ``claude_batch_data`` in AIRFLOW_HOME."""
    if uri := os.environ.get(DATA_URI_VARIABLE):
        return uri.rstrip("/")
    home = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")).resolve()
    return f"file://{home / 'claude_batch_data'}"


def run_dir_for(workload: str, run_date: date) -> str:
    """One folder per workload and date: a re-run of the date finds its earlier files."""
    return f"{data_root()}/{workload}/{run_date.isoformat()}"


def input_location(uri: str) -> ObjectStoragePath:
    """An input given as a URL (``s3://``, ``file://``) or as a plain local path."""
    if "://" in uri:
        return ObjectStoragePath(uri)
    return ObjectStoragePath(f"file://{Path(uri).resolve()}")


def file_digest(location: ObjectStoragePath) -> str:
    """SHA-256 of a request file: the ledger notices when a shard's requests changed between tries."""
    digest = hashlib.sha256()
    with location.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def aware(moment: datetime) -> datetime:
    """A timestamp read back from the store; SQLite returns UTC without its zone."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def logical_date_of(context: Any) -> datetime:
    """The run's logical date; a manual run in Airflow 3 may have none, then its run_after counts."""
    dag_run = context["dag_run"]
    return dag_run.logical_date or dag_run.run_after


def read_lines(files: Iterable[Any]) -> Iterator[bytes]:
    """The non-blank lines of several JSONL files (result parts, a download), one file after the other."""
    for location in files:
        with location.open("rb") as stream:
            yield from (line for line in stream if line.strip())


def read_input(spec: WorkloadSpec, input_uri: str) -> Iterator[RecordRead]:
    """The run's input records, streamed: the file at ``input_uri``, or the spec's SQL query."""
    if spec.input.format is InputFormat.SQL:
        return read_records(spec.input, engine=_input_engine(spec))
    return read_records(spec.input, path=input_location(input_uri))


def count_input(spec: WorkloadSpec, input_uri: str) -> int:
    """How many records the input holds, without parsing them (bytes only; a COUNT for SQL)."""
    if spec.input.format is InputFormat.SQL:
        query = sa.text(f"SELECT COUNT(*) FROM ({spec.input.query}) AS claude_batch_input")
        with _input_engine(spec).connect() as connection:
            return int(connection.execute(query).scalar_one())
    lines = sum(1 for _ in read_lines([input_location(input_uri)]))
    header = 1 if spec.input.format is InputFormat.CSV and lines else 0
    return lines - header


def _input_engine(spec: WorkloadSpec) -> sa.Engine:
    assert spec.input.sqlalchemy_url is not None  # the spec requires it for sql inputs
    return sa.create_engine(spec.input.sqlalchemy_url)
