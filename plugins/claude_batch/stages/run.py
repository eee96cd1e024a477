"""What every stage shares: the run context (route's XCom), the run's folder and the clients.

XCom carries this small context, ids and paths only; requests, results and outputs live in files
under the run's folder in object storage (``file://`` by default, ``s3://`` etc. in production).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from airflow.sdk import Context, ObjectStoragePath
from pydantic import AwareDatetime, BaseModel, ConfigDict

from claude_batch.placement import require_one_machine
from claude_batch.strategy.layout import RunLayout
from claude_batch.strategy.records import RecordRead, count_records, read_records
from claude_batch.strategy.routing import Route
from claude_batch.strategy.spec import InputFormat, WorkloadSpec, load_workload
from claude_batch.workloads import register_bundled_workloads

# The specs this face loads by name are the bundled ones (and $CLAUDE_BATCH_SPECS_DIR's).
register_bundled_workloads()

DATA_URI_VARIABLE = "CLAUDE_BATCH_DATA_URI"


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
        """The workload spec the run was routed with, by name (XCom is user-writable: never a path)."""
        return load_workload(self.spec_source)

    @property
    def layout(self) -> RunLayout[ObjectStoragePath]:
        """The run folder's files and folders, by name (``strategy.layout``)."""
        return RunLayout(ObjectStoragePath(self.run_dir))


def data_root() -> str:
    """Where run folders go: ``$CLAUDE_BATCH_DATA_URI``, or ``claude_batch_data`` in AIRFLOW_HOME (one
    machine only: ``placement``)."""
    if uri := os.environ.get(DATA_URI_VARIABLE):
        return uri.rstrip("/")
    require_one_machine(
        "The run folder (CLAUDE_BATCH_DATA_URI is not set)",
        f"set {DATA_URI_VARIABLE} on every component to an object store every worker reaches "
        "(s3://aws_default@bucket/prefix with an aws connection), or to a folder every worker mounts",
    )
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
    """SHA-256 of a file: the ledger notices when a shard's requests changed between tries, and route
    when a date's input did."""
    digest = hashlib.sha256()
    with location.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def input_digest(spec: WorkloadSpec, input_uri: str) -> str | None:
    """SHA-256 of the run's input file, when it is a file that is there (not SQL, not yet landed)."""
    if spec.input.format is InputFormat.SQL or not input_uri:
        return None
    location = input_location(input_uri)
    return file_digest(location) if location.is_file() else None


def aware(moment: datetime) -> datetime:
    """A timestamp read back from the store; SQLite returns UTC without its zone."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def logical_date_of(context: Context) -> datetime:
    """The run's logical date; a manual run in Airflow 3 may have none, then its run_after counts."""
    dag_run = context["dag_run"]
    return dag_run.logical_date or dag_run.run_after


class InputUnreadableError(ValueError):
    """The run's input cannot be read at all (missing, a directory, compressed, not UTF-8 text)."""


# The first bytes of files that are not text a record could be read from, with what to do.
_NOT_TEXT = (
    (b"\x1f\x8b", "gzip-compressed", "decompress it (gunzip) and point input_uri at the result"),
    (b"PK\x03\x04", "a zip archive", "extract the file and point input_uri at it"),
    (b"BZh", "bzip2-compressed", "decompress it (bunzip2) and point input_uri at the result"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "decompress it (unzstd) and point input_uri at the result"),
    (b"\xff\xfe", "UTF-16 text", "re-export it as UTF-8"),
    (b"\xfe\xff", "UTF-16 text", "re-export it as UTF-8"),
    (b"PAR1", "a Parquet file", "export it as JSONL or CSV"),
    (b"%PDF", "a PDF document", "export the records as JSONL or CSV"),
    (b"\xd0\xcf\x11\xe0", "an Excel 97 (OLE) workbook", "save it as CSV (UTF-8)"),
)


def check_input(spec: WorkloadSpec, input_uri: str) -> None:
    """Fail with the input's name, the cause and the fix when the input is no text file at all."""
    if spec.input.format is InputFormat.SQL:
        return
    if not input_uri:
        raise InputUnreadableError(
            f"No input for {spec.name}: input.uri is empty and the run's input_uri param is not set; set one"
        )
    location = input_location(input_uri)
    if not location.exists():
        raise InputUnreadableError(
            f"The input {input_uri} does not exist; check the run's input_uri (or the spec's input.uri, "
            "where {ds} becomes the run date), and whether the export ran"
        )
    if location.is_dir():
        raise InputUnreadableError(
            f"The input {input_uri} is a directory, not a {spec.input.format.value} file; point input_uri "
            "at one file"
        )
    with location.open("rb") as stream:
        opening = stream.read(_OPENING_BYTES)
    for magic, what, fix in _NOT_TEXT:
        if opening.startswith(magic):
            raise InputUnreadableError(
                f"The input {input_uri} is {what}, not {spec.input.format.value} text; {fix}"
            )
    _check_the_format_matches(spec, input_uri, opening)


# Enough of a file's start to hold its first line (a CSV header, or most of a JSONL record).
_OPENING_BYTES = 64 * 1024


def _check_the_format_matches(spec: WorkloadSpec, input_uri: str, opening: bytes) -> None:
    """A CSV export given to a workload that reads JSONL (or the other way round) would be read
    through as every line unreadable: refuse it whole when both its name and its first line say so.
    A JSONL file whose first line is bad but named .jsonl is read as usual (that line quarantined)."""
    name = input_uri.lower().rsplit("?", 1)[0]
    first_line = opening.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n").split(b"\n", 1)[0]
    looks_like_json = first_line.startswith(b"{")
    if spec.input.format is InputFormat.JSONL and name.endswith((".csv", ".tsv")) and not looks_like_json:
        found, fix = "CSV", "convert it to JSONL (one JSON object per line)"
    elif (
        spec.input.format is InputFormat.CSV
        and name.endswith((".jsonl", ".json", ".ndjson"))
        and looks_like_json
    ):
        found, fix = "JSONL", "convert it to CSV with a header line"
    else:
        return
    raise InputUnreadableError(
        f"The input {input_uri} is {found} (its name and its first line), but {spec.name} reads "
        f"{spec.input.format.value} (input.format in its spec); nothing was read or sent. {fix[0].upper()}{fix[1:]}, "
        "or point input_uri at the night's export in that format"
    )


def read_input(spec: WorkloadSpec, input_uri: str) -> Iterator[RecordRead]:
    """The run's input records, streamed: the file at ``input_uri``, or the spec's SQL query."""
    if spec.input.format is InputFormat.SQL:
        return read_records(spec.input, engine=_input_engine(spec))
    return read_records(spec.input, path=input_location(input_uri))


def count_input(spec: WorkloadSpec, input_uri: str) -> int:
    """How many records the input's reader yields (``records.count_records``; a COUNT for SQL).

    Raises ``InputUnreadableError`` naming the input and the cause when it is no text file at all.
    """
    if spec.input.format is InputFormat.SQL:
        query = sa.text(f"SELECT COUNT(*) FROM ({spec.input.query}) AS claude_batch_input")
        with _input_engine(spec).connect() as connection:
            return int(connection.execute(query).scalar_one())
    check_input(spec, input_uri)
    return count_records(spec.input, input_location(input_uri))


def _input_engine(spec: WorkloadSpec) -> sa.Engine:
    assert spec.input.sqlalchemy_url is not None  # the spec requires it for sql inputs
    return sa.create_engine(spec.input.sqlalchemy_url)
