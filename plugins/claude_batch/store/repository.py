"""The store's repository: one call per operator need, each transactional and idempotent.

Bulk writes (manifest, outputs, quarantine) stream their input and commit one chunk per transaction,
so a 100,000-row call never holds SQLite's single write lock for long and another run's writes
interleave. They are idempotent upserts, so a task retried after a crash halfway simply completes.

The rule that keeps "exactly once" true when a recovery round rescues a record: publishing an output
deletes, in the same transaction, the quarantine rows of the manifest records with that business key
in the run of that workload and logical date. Quarantine rows of input records rejected before the
manifest (a duplicate of the key, say) stay: they are other records.
"""

from __future__ import annotations

import fcntl
import itertools
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Engine, Insert, delete, exists, func, literal_column, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from claude_batch.store.engine import WRITE_OPTION, make_engine
from claude_batch.store.errors import (
    LedgerConflictError,
    RerunConflictError,
    RerunRateLimitedError,
    StoreError,
    UnknownAttemptError,
    UnknownRunError,
)
from claude_batch.store.migrations import upgrade
from claude_batch.store.models import (
    BatchAttempt,
    Output,
    Rerun,
    RoundRoute,
    Run,
    SampleValidation,
    StoredManifestEntry,
    StoredQuarantineEntry,
    StoredShard,
)
from claude_batch.store.records import (
    TERMINAL_STATUSES,
    Accounting,
    AttemptKind,
    AttemptRecord,
    AttemptStatus,
    ManifestRow,
    OutputRecord,
    OutputRow,
    QuarantineRecord,
    QuarantineRow,
    RequestCounts,
    RerunRecord,
    RoundRouteRecord,
    RunRecord,
    SampleValidationRecord,
    ShardRecord,
)
from claude_batch.strategy.usage import Usage

T = TypeVar("T")

RUN_OPEN = "running"
RUN_FAILED = "failed"

# Rows per statement and per transaction of a bulk write.
BULK_CHUNK = 5_000
# Keys per IN list of a lookup, far below SQLite's bound-parameter limit.
LOOKUP_CHUNK = 1_000

# Any constant unique to this project (not the migration's key): the PostgreSQL advisory lock that
# serializes batch creates, see Store.batch_create_lock.
BATCH_CREATE_LOCK_KEY = 4_711_270_391_355_120_002
# The same for the admission of re-runs, see Store.record_rerun_intent.
RERUN_ADMISSION_LOCK_KEY = 4_711_270_391_355_120_003
# The window of the per-person re-run limit.
RERUN_RATE_WINDOW = timedelta(minutes=1)

_ATTEMPT_KINDS = frozenset({"batch", "sync"})
_ATTEMPT_UPDATE_STATUSES = frozenset({"submitted", "ended", "failed", "canceled"})

_MANIFEST_COLUMNS = (
    StoredManifestEntry.custom_id,
    StoredManifestEntry.business_key,
    StoredManifestEntry.shard,
    StoredManifestEntry.round,
    StoredManifestEntry.position,
    StoredManifestEntry.chunk_of,
    StoredManifestEntry.chunk,
    StoredManifestEntry.chunk_count,
    StoredManifestEntry.chunk_depth,
    StoredManifestEntry.text_start,
    StoredManifestEntry.text_end,
)
_OUTPUT_UPDATED = (
    "custom_id",
    "output",
    "model",
    "source",
    "round",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cache_creation_1h_input_tokens",
    "updated_at",
)
_QUARANTINE_UPDATED = ("custom_id", "business_key", "quarantine_class", "reason", "attempts", "updated_at")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _execute_bulk(session: Session, stmt: Insert, rows: list[dict[str, Any]]) -> None:
    # RETURNING makes SQLAlchemy send the rows as multi-row INSERTs ("insertmanyvalues"); without it
    # psycopg2 runs an ON CONFLICT statement once per row, about 30 times slower.
    session.execute(stmt.returning(literal_column("1")), rows).close()


def _released_by(run_ids: Any, business_keys: list[str]) -> ColumnElement[bool]:
    """The quarantine rows that publishing ``business_keys`` releases (see the module docstring)."""
    published_record = exists().where(
        StoredManifestEntry.run_id == StoredQuarantineEntry.run_id,
        StoredManifestEntry.position == StoredQuarantineEntry.position,
        StoredManifestEntry.business_key.in_(business_keys),
    )
    return StoredQuarantineEntry.run_id.in_(run_ids) & published_record


def _one_entry_per_record() -> ColumnElement[bool]:
    """Of a round's manifest entries, one per record: a record chunked at shard time counts by its
    first chunk (chunks split in recovery are in later rounds)."""
    return or_(StoredManifestEntry.chunk.is_(None), StoredManifestEntry.chunk == 1)


def _attempt_record(attempt: BatchAttempt) -> AttemptRecord:
    counts = RequestCounts(
        processing=attempt.processing_count,
        succeeded=attempt.succeeded_count,
        errored=attempt.errored_count,
        canceled=attempt.canceled_count,
        expired=attempt.expired_count,
    )
    return AttemptRecord(
        id=attempt.id,
        run_id=attempt.run_id,
        shard_index=attempt.shard_index,
        round=attempt.round,
        kind=attempt.kind,
        request_count=attempt.request_count,
        request_digest=attempt.request_digest,
        status=attempt.status,
        batch_id=attempt.batch_id,
        adopted=attempt.adopted,
        request_counts=counts,
        created_at=attempt.created_at,
        submitted_at=attempt.submitted_at,
        ended_at=attempt.ended_at,
        create_seq=attempt.create_seq,
        create_mark=attempt.create_mark,
    )


class Store:
    """What the operators, the trigger's callers and the UI read and write; returns pydantic records.

    :param engine: an engine from :func:`claude_batch.store.engine.make_engine` (SQLite or PostgreSQL).
    """

    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            raise StoreError(f"the store supports SQLite and PostgreSQL, not {dialect}; change the store URL")
        self._engine = engine
        self._insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self._reader = sessionmaker(engine, expire_on_commit=False)
        self._writer = sessionmaker(engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False)
        # A SQLite database without a file lives in this process only: a thread lock serializes it.
        self._create_lock = threading.Lock()

    @classmethod
    def connect(cls, url: str) -> Store:
        """Open the store at a SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg2://...``)."""
        return cls(make_engine(url))

    def migrate(self) -> None:
        """Upgrade the schema to the latest revision; safe to call from several processes at once."""
        upgrade(self._engine)

    def close(self) -> None:
        """Close the pooled connections."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        with self._reader.begin() as session:
            yield session

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        with self._writer.begin() as session:
            yield session

    @staticmethod
    def _run(session: Session, run_id: int) -> Run:
        run = session.get(Run, run_id)
        if run is None:
            raise UnknownRunError(f"no run {run_id} in the store; open_run creates it")
        return run

    # Runs

    def open_run(
        self,
        workload: str,
        logical_date: date,
        dag_run_id: str | None,
        deadline: datetime | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> RunRecord:
        """Open the run of a workload for a date; a re-run of the date reopens the same run."""
        reopened = {
            "dag_run_id": dag_run_id,
            "status": RUN_OPEN,
            "deadline": deadline,
            "params": dict(params or {}),
            "finished_at": None,
            "error": None,
        }
        stmt = self._insert(Run).values(
            workload=workload, logical_date=logical_date, created_at=_utcnow(), **reopened
        )
        stmt = stmt.on_conflict_do_update(index_elements=[Run.workload, Run.logical_date], set_=reopened)
        with self._writing() as session:
            run_id = session.execute(stmt.returning(Run.id)).scalar_one()
            return RunRecord.model_validate(self._run(session, run_id))

    def finish_run(self, run_id: int, status: str, report: Mapping[str, Any]) -> RunRecord:
        """Close a run with its final status and its report (a JSON-serializable mapping)."""
        with self._writing() as session:
            run = self._run(session, run_id)
            run.status = status
            run.report = dict(report)
            run.finished_at = _utcnow()
            session.flush()
            return RunRecord.model_validate(run)

    def fail_run(self, workload: str, logical_date: date, dag_run_id: str | None, error: str) -> RunRecord:
        """Mark the run of a date failed with its error; creates the row when the night failed before
        route opened it, so every failed night is in the store.

        A run that another DAG run holds (route opened it for that one, and refused this one) is left
        as it is and returned unchanged: a refused DAG run must not fail the date's good night.
        """
        failed = {"dag_run_id": dag_run_id, "status": RUN_FAILED, "error": error, "finished_at": _utcnow()}
        stmt = self._insert(Run).values(
            workload=workload, logical_date=logical_date, created_at=_utcnow(), params={}, **failed
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[Run.workload, Run.logical_date],
            set_=failed,
            where=or_(Run.__table__.c.dag_run_id.is_(None), Run.__table__.c.dag_run_id == dag_run_id),
        )
        with self._writing() as session:
            run_id = session.execute(stmt.returning(Run.id)).scalar_one_or_none()
            if run_id is None:
                held = select(Run).where(Run.workload == workload, Run.logical_date == logical_date)
                return RunRecord.model_validate(session.scalars(held).one())
            return RunRecord.model_validate(self._run(session, run_id))

    def get_run(self, run_id: int) -> RunRecord:
        """The run with this id; raises UnknownRunError when there is none."""
        with self._reading() as session:
            return RunRecord.model_validate(self._run(session, run_id))

    def run_of_date(self, workload: str, logical_date: date) -> RunRecord | None:
        """The run of a workload for a date, if there is one."""
        stmt = select(Run).where(Run.workload == workload, Run.logical_date == logical_date)
        with self._reading() as session:
            run = session.scalars(stmt).one_or_none()
            return None if run is None else RunRecord.model_validate(run)

    def recent_runs(self, workload: str, limit: int = 30, before: date | None = None) -> list[RunRecord]:
        """The latest runs of a workload, newest logical date first; ``before``: only earlier dates."""
        stmt = select(Run).where(Run.workload == workload)
        if before is not None:
            stmt = stmt.where(Run.logical_date < before)
        stmt = stmt.order_by(Run.logical_date.desc()).limit(limit)
        with self._reading() as session:
            return [RunRecord.model_validate(run) for run in session.scalars(stmt)]

    # Shards and manifest

    def record_shards(self, run_id: int, shards: Iterable[ShardRecord]) -> None:
        """Record the shard files of a run or of a recovery round; recording a shard again replaces it."""
        rows = [shard.model_dump() | {"run_id": run_id} for shard in shards]
        if not rows:
            return
        table = StoredShard.__table__
        stmt = self._insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.run_id, table.c.round, table.c.shard_index],
            set_={name: stmt.excluded[name] for name in ("uri", "request_count", "byte_size")},
        )
        with self._writing() as session:
            self._run(session, run_id)
            session.execute(stmt, rows)

    def shards(self, run_id: int) -> list[ShardRecord]:
        """The shard files of a run, by round then shard index."""
        stmt = (
            select(StoredShard)
            .where(StoredShard.run_id == run_id)
            .order_by(StoredShard.round, StoredShard.shard_index)
        )
        with self._reading() as session:
            return [ShardRecord.model_validate(shard) for shard in session.scalars(stmt)]

    def add_manifest(self, run_id: int, entries: Iterable[ManifestRow]) -> int:
        """Stream manifest entries into the store. Returns the number read.

        An entry already there is kept: a custom_id resubmitted by a recovery round stays filed under
        the round and shard where it first appeared.
        """
        table = StoredManifestEntry.__table__
        stmt = self._insert(table).on_conflict_do_nothing(index_elements=[table.c.run_id, table.c.custom_id])
        read = 0
        for chunk in _chunks(entries, BULK_CHUNK):
            with self._writing() as session:
                self._run(session, run_id)
                _execute_bulk(session, stmt, [entry.model_dump() | {"run_id": run_id} for entry in chunk])
            read += len(chunk)
        return read

    def manifest_lookup(self, run_id: int, custom_ids: Iterable[str]) -> dict[str, ManifestRow]:
        """Manifest entries of the given custom_ids; ids not in the manifest are absent from the result."""
        found: dict[str, ManifestRow] = {}
        with self._reading() as session:
            for chunk in _chunks(custom_ids, LOOKUP_CHUNK):
                stmt = select(*_MANIFEST_COLUMNS).where(
                    StoredManifestEntry.run_id == run_id, StoredManifestEntry.custom_id.in_(chunk)
                )
                for row in session.execute(stmt):
                    found[row.custom_id] = ManifestRow.model_validate(row)
        return found

    def iter_chunks(self, run_id: int) -> Iterator[ManifestRow]:
        """Stream the chunk entries of a run (records too large for one request), by business key."""
        stmt = select(*_MANIFEST_COLUMNS).where(
            StoredManifestEntry.run_id == run_id, StoredManifestEntry.chunk_of.is_not(None)
        )
        stmt = stmt.order_by(StoredManifestEntry.business_key, StoredManifestEntry.custom_id)
        with self._engine.connect() as connection:
            for row in connection.execution_options(yield_per=BULK_CHUNK).execute(stmt):
                yield ManifestRow.model_validate(row)

    def manifest_entry_of_key(self, run_id: int, business_key: str) -> ManifestRow | None:
        """The round-0 manifest entry (one valid input record, with its position) of a business key."""
        stmt = select(*_MANIFEST_COLUMNS).where(
            StoredManifestEntry.run_id == run_id,
            StoredManifestEntry.round == 0,
            StoredManifestEntry.business_key == business_key,
        )
        with self._reading() as session:
            row = session.execute(stmt.limit(1)).one_or_none()
            return None if row is None else ManifestRow.model_validate(row)

    def manifest_count(self, run_id: int) -> int:
        """Number of manifest entries of a run."""
        stmt = (
            select(func.count()).select_from(StoredManifestEntry).where(StoredManifestEntry.run_id == run_id)
        )
        with self._reading() as session:
            return session.scalar(stmt) or 0

    # Ledger

    def record_intent(
        self,
        run_id: int,
        shard_index: int,
        round: int,
        kind: AttemptKind,
        request_count: int,
        request_digest: str,
    ) -> AttemptRecord:
        """Write the intent row before a paid call, or return the attempt already there for the key.

        A retried or cleared submit gets back the earlier attempt of (run, shard, round), with its batch
        id once attached: re-attach to it instead of paying again. When the returned attempt has no
        batch id, an earlier try may have created a batch and died before attaching it; look for that
        orphan before submitting. Compare ``request_digest`` to notice that the requests changed.
        """
        if kind not in _ATTEMPT_KINDS:
            raise ValueError(f"attempt kind must be one of {sorted(_ATTEMPT_KINDS)}, not {kind!r}")
        stmt = self._insert(BatchAttempt).values(
            run_id=run_id,
            shard_index=shard_index,
            round=round,
            kind=kind,
            request_count=request_count,
            request_digest=request_digest,
            status="intent",
            adopted=False,
            processing_count=0,
            succeeded_count=0,
            errored_count=0,
            canceled_count=0,
            expired_count=0,
            created_at=_utcnow(),
        )
        stmt = stmt.on_conflict_do_nothing(
            index_elements=[BatchAttempt.run_id, BatchAttempt.shard_index, BatchAttempt.round]
        )
        with self._writing() as session:
            self._run(session, run_id)
            session.execute(stmt)
            attempt = session.scalars(
                select(BatchAttempt).where(
                    BatchAttempt.run_id == run_id,
                    BatchAttempt.shard_index == shard_index,
                    BatchAttempt.round == round,
                )
            ).one()
            return _attempt_record(attempt)

    def attach_batch(self, attempt_id: int, batch_id: str, adopted: bool = False) -> AttemptRecord:
        """Attach the created (or adopted orphan) batch to its intent; attaching it again is a no-op.

        Raises LedgerConflictError when the attempt already has another batch, or the batch belongs to
        another attempt: either would mean paying twice for the same requests.
        """
        try:
            with self._writing() as session:
                attempt = session.get(BatchAttempt, attempt_id, with_for_update=True)
                if attempt is None:
                    raise UnknownAttemptError(
                        f"no attempt {attempt_id} in the ledger; record_intent creates it"
                    )
                if attempt.batch_id == batch_id:
                    return _attempt_record(attempt)
                where = f"attempt {attempt.id} (run {attempt.run_id}, shard {attempt.shard_index}, "
                where += f"round {attempt.round})"
                if attempt.batch_id is not None:
                    raise LedgerConflictError(
                        f"{where} already has batch {attempt.batch_id}; refusing to attach {batch_id}. "
                        f"Cancel {batch_id} unless it is wanted: its requests are already paid for."
                    )
                if attempt.kind != "batch":
                    raise LedgerConflictError(f"{where} is synchronous; batch {batch_id} cannot belong to it")
                owner = session.scalar(select(BatchAttempt.id).where(BatchAttempt.batch_id == batch_id))
                if owner is not None:
                    raise LedgerConflictError(
                        f"batch {batch_id} already belongs to attempt {owner}; it cannot also serve {where}"
                    )
                attempt.batch_id = batch_id
                attempt.adopted = adopted
                attempt.submitted_at = _utcnow()
                if attempt.status == "intent":
                    attempt.status = "submitted"
                session.flush()
                return _attempt_record(attempt)
        except IntegrityError as error:
            # Another process attached the same batch to another attempt between our check and write.
            raise LedgerConflictError(
                f"batch {batch_id} was attached to another attempt concurrently"
            ) from error

    @contextmanager
    def batch_create_lock(self) -> Iterator[None]:
        """Hold the deployment's lock around "settle the last create, create, attach" of a batch.

        The API has no idempotency key, so a batch whose create response was lost is recognised by
        its place in the API's list: with every create of the deployment serialized by this lock, a
        batch newer than the mark its creator recorded and not in the ledger can only be that
        creator's (see ``begin_create``). The lock is released when its holder dies: PostgreSQL ends
        the session's advisory lock, the kernel drops the SQLite lock file's ``flock``.
        """
        if self._engine.dialect.name == "postgresql":
            with self._engine.connect() as connection, connection.begin():
                connection.execute(select(func.pg_advisory_xact_lock(BATCH_CREATE_LOCK_KEY)))
                yield
            return
        database = self._engine.url.database
        if not database or database == ":memory:":
            with self._create_lock:
                yield
            return
        # Its own file, not SQLite's write lock: the holder waits on HTTP calls meanwhile, and every
        # other writer of the store must go on. flock is per open file, so threads exclude each other.
        with open(f"{database}.batch-create.lock", "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def begin_create(self, attempt_id: int, mark: str | None) -> AttemptRecord:
        """Record, under ``batch_create_lock``, that a create for this attempt is about to be sent.

        ``mark`` is the newest batch the API lists before the create (None when it lists none). The
        attempt becomes the last creator (the highest ``create_seq``): a batch newer than its mark that
        no attempt holds is its batch, whoever finds it (``last_create``).
        """
        with self._writing() as session:
            attempt = session.get(BatchAttempt, attempt_id, with_for_update=True)
            if attempt is None:
                raise UnknownAttemptError(f"no attempt {attempt_id} in the ledger; record_intent creates it")
            if attempt.batch_id is not None:
                raise LedgerConflictError(f"attempt {attempt_id} already has batch {attempt.batch_id}")
            last = session.scalar(select(func.max(BatchAttempt.create_seq)))
            attempt.create_seq = (last or 0) + 1
            attempt.create_mark = mark
            session.flush()
            return _attempt_record(attempt)

    def last_create(self) -> AttemptRecord | None:
        """The attempt whose create was sent last (by ``begin_create``), if any."""
        stmt = select(BatchAttempt).where(BatchAttempt.create_seq.is_not(None))
        stmt = stmt.order_by(BatchAttempt.create_seq.desc()).limit(1)
        with self._reading() as session:
            attempt = session.scalars(stmt).one_or_none()
            return None if attempt is None else _attempt_record(attempt)

    def attempt_by_id(self, attempt_id: int) -> AttemptRecord:
        """The attempt with this id; raises UnknownAttemptError when there is none."""
        with self._reading() as session:
            attempt = session.get(BatchAttempt, attempt_id)
            if attempt is None:
                raise UnknownAttemptError(f"no attempt {attempt_id} in the ledger")
            return _attempt_record(attempt)

    def attempt(self, run_id: int, shard_index: int, round: int) -> AttemptRecord | None:
        """The attempt of (run, shard, round), if an intent was recorded."""
        stmt = select(BatchAttempt).where(
            BatchAttempt.run_id == run_id,
            BatchAttempt.shard_index == shard_index,
            BatchAttempt.round == round,
        )
        with self._reading() as session:
            attempt = session.scalars(stmt).one_or_none()
            return None if attempt is None else _attempt_record(attempt)

    def update_attempt(
        self,
        batch_id: str,
        status: AttemptStatus,
        request_counts: RequestCounts | Mapping[str, int] | None = None,
        ended_at: datetime | None = None,
    ) -> AttemptRecord:
        """Record what the API says about a batch: status, request counts, end time."""
        return self._update_attempt(
            BatchAttempt.batch_id == batch_id, f"batch {batch_id}", status, request_counts, ended_at
        )

    def update_attempt_by_id(
        self,
        attempt_id: int,
        status: AttemptStatus,
        request_counts: RequestCounts | Mapping[str, int] | None = None,
        ended_at: datetime | None = None,
    ) -> AttemptRecord:
        """Like update_attempt, by attempt id: synchronous attempts have no batch id."""
        return self._update_attempt(
            BatchAttempt.id == attempt_id, f"attempt {attempt_id}", status, request_counts, ended_at
        )

    def _update_attempt(
        self,
        criterion: ColumnElement[bool],
        label: str,
        status: str,
        request_counts: RequestCounts | Mapping[str, int] | None,
        ended_at: datetime | None,
    ) -> AttemptRecord:
        if status not in _ATTEMPT_UPDATE_STATUSES:
            raise ValueError(f"status must be one of {sorted(_ATTEMPT_UPDATE_STATUSES)}, not {status!r}")
        with self._writing() as session:
            attempt = session.scalars(select(BatchAttempt).where(criterion).with_for_update()).one_or_none()
            if attempt is None:
                raise UnknownAttemptError(f"no {label} in the ledger")
            if attempt.status in TERMINAL_STATUSES and status not in TERMINAL_STATUSES:
                raise LedgerConflictError(f"{label} is already {attempt.status}; it cannot become {status}")
            if attempt.kind == "batch" and attempt.batch_id is None and status == "submitted":
                raise LedgerConflictError(f"{label} has no batch yet; attach_batch marks it submitted")
            if attempt.status == "ended" and status == "canceled":
                # A cancel that reaches a batch after its end changes nothing: its results stand.
                return _attempt_record(attempt)
            attempt.status = status
            if attempt.submitted_at is None and status == "submitted":
                attempt.submitted_at = _utcnow()
            if request_counts is not None:
                counts = RequestCounts.model_validate(request_counts)
                attempt.processing_count = counts.processing
                attempt.succeeded_count = counts.succeeded
                attempt.errored_count = counts.errored
                attempt.canceled_count = counts.canceled
                attempt.expired_count = counts.expired
            if ended_at is not None:
                attempt.ended_at = ended_at
            elif status in TERMINAL_STATUSES and attempt.ended_at is None:
                attempt.ended_at = _utcnow()
            session.flush()
            return _attempt_record(attempt)

    def unfinished_batches(self) -> list[AttemptRecord]:
        """Batches of every run the ledger holds as submitted and not ended: the processing queue's load."""
        stmt = (
            select(BatchAttempt)
            .where(BatchAttempt.kind == "batch", BatchAttempt.status == "submitted")
            .order_by(BatchAttempt.submitted_at, BatchAttempt.id)
        )
        with self._reading() as session:
            return [_attempt_record(attempt) for attempt in session.scalars(stmt)]

    def attempts_of_run(self, run_id: int) -> list[AttemptRecord]:
        """Every attempt of a run, by round then shard."""
        stmt = (
            select(BatchAttempt)
            .where(BatchAttempt.run_id == run_id)
            .order_by(BatchAttempt.round, BatchAttempt.shard_index)
        )
        with self._reading() as session:
            return [_attempt_record(attempt) for attempt in session.scalars(stmt)]

    def batches_created(self, run_id: int) -> int:
        """Number of batches a run has paid for (adopted orphans included: this run created them)."""
        stmt = (
            select(func.count())
            .select_from(BatchAttempt)
            .where(BatchAttempt.run_id == run_id, BatchAttempt.batch_id.is_not(None))
        )
        with self._reading() as session:
            return session.scalar(stmt) or 0

    def is_batch_known(self, batch_id: str) -> bool:
        """Whether a batch is attached to any attempt; orphan adoption must skip known batches."""
        stmt = select(exists().where(BatchAttempt.batch_id == batch_id))
        with self._reading() as session:
            return bool(session.scalar(stmt))

    def requests_in_flight(self) -> int:
        """Requests of all runs' submitted, not yet ended batches: the load on the processing queue.

        A batch leaves it when its end, cancel or failure is recorded (the wait, partition, the
        trigger's on_kill, or the queue check that polls the batches the ledger still holds open).
        """
        stmt = select(func.coalesce(func.sum(BatchAttempt.request_count), 0)).where(
            BatchAttempt.kind == "batch", BatchAttempt.status == "submitted"
        )
        with self._reading() as session:
            return int(session.scalar(stmt) or 0)

    # Recovery rounds

    def decide_round_route(self, run_id: int, round: int, route: str, rationale: str) -> RoundRouteRecord:
        """Keep the route of a recovery round as first decided; a later call gets that decision back.

        A resumed or cleared recovery task would decide again with a later clock; the round already
        went the way first decided (its attempts say so), and the report must say that way.
        """
        if route not in _ATTEMPT_KINDS:
            raise ValueError(f"route must be one of {sorted(_ATTEMPT_KINDS)}, not {route!r}")
        stmt = self._insert(RoundRoute).values(
            run_id=run_id, round=round, route=route, rationale=rationale, decided_at=_utcnow()
        )
        stmt = stmt.on_conflict_do_nothing(index_elements=[RoundRoute.run_id, RoundRoute.round])
        with self._writing() as session:
            self._run(session, run_id)
            session.execute(stmt)
            decided = session.get(RoundRoute, (run_id, round))
            return RoundRouteRecord.model_validate(decided)

    # Outputs

    def upsert_outputs(self, workload: str, logical_date: date, rows: Iterable[OutputRow]) -> int:
        """Publish outputs keyed by (workload, business key, logical date); a re-run never duplicates.

        The last row of a key wins, except over a re-run's output: a person re-ran that record after
        the night and paid for it, so publishing the night again (a cleared ``publish``, a re-run of
        the date) keeps it; *Undo* on the re-run puts the night's answer back. Publishing a key
        releases the quarantine rows of its manifest records (see the module docstring). Returns the
        number of rows read.
        """
        table = Output.__table__
        stmt = self._insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.workload, table.c.logical_date, table.c.business_key],
            set_={name: stmt.excluded[name] for name in _OUTPUT_UPDATED},
            where=table.c.source != "rerun",
        )
        run_ids = select(Run.id).where(Run.workload == workload, Run.logical_date == logical_date)
        read = 0
        for chunk in _chunks(rows, BULK_CHUNK):
            # PostgreSQL refuses to upsert one key twice in a statement; the later row is the one kept.
            latest = {row.business_key: row for row in chunk}
            now = _utcnow()
            fixed = {"workload": workload, "logical_date": logical_date, "created_at": now, "updated_at": now}
            with self._writing() as session:
                _execute_bulk(session, stmt, [row.model_dump() | fixed for row in latest.values()])
                for keys in _chunks(latest, LOOKUP_CHUNK):
                    session.execute(delete(StoredQuarantineEntry).where(_released_by(run_ids, keys)))
            read += len(chunk)
        return read

    def outputs_count(self, workload: str, logical_date: date) -> int:
        """Number of published outputs of a workload for a date."""
        stmt = (
            select(func.count())
            .select_from(Output)
            .where(Output.workload == workload, Output.logical_date == logical_date)
        )
        with self._reading() as session:
            return session.scalar(stmt) or 0

    def get_output(self, workload: str, business_key: str, logical_date: date) -> OutputRecord | None:
        """The published output of one business key, if any."""
        stmt = select(Output).where(
            Output.workload == workload,
            Output.business_key == business_key,
            Output.logical_date == logical_date,
        )
        with self._reading() as session:
            output = session.scalars(stmt).one_or_none()
            return None if output is None else OutputRecord.model_validate(output)

    # Re-runs

    def check_rerun_rate(self, requested_by: str, per_minute: int) -> None:
        """Refuse a re-run early, before its record is read, when its person is at their limit (see
        ``record_rerun_intent``, which holds the limit).

        :raises RerunRateLimitedError: with the seconds until the oldest re-run of the window ages out.
        """
        with self._reading() as session:
            self._check_rerun_rate(session, requested_by, per_minute, _utcnow())

    @staticmethod
    def _check_rerun_rate(session: Session, requested_by: str, per_minute: int, now: datetime) -> None:
        started, oldest = session.execute(
            select(func.count(), func.min(Rerun.created_at)).where(
                Rerun.requested_by == requested_by, Rerun.created_at > now - RERUN_RATE_WINDOW
            )
        ).one()
        if started >= per_minute:
            wait = (oldest + RERUN_RATE_WINDOW - now).total_seconds()
            raise RerunRateLimitedError(requested_by, per_minute, max(wait, 1.0))

    def record_rerun_intent(
        self,
        run_id: int,
        business_key: str,
        custom_id: str,
        requested_by: str,
        reason: str,
        model: str,
        *,
        per_minute: int | None = None,
    ) -> RerunRecord:
        """Write a re-run's ledger row before its paid call (status ``intent``).

        :param per_minute: at most this many re-runs by ``requested_by`` in any minute, counted on the
            ledger, so the limit holds across every api-server process and host of the deployment (an
            in-process counter would allow it once per process). Counting and writing are one
            serialized step: SQLite's write lock, an advisory lock on PostgreSQL. None: no limit.
        :raises RerunRateLimitedError: the person is at the limit; nothing was written.
        """
        with self._writing() as session:
            self._run(session, run_id)
            if per_minute is not None:
                if self._engine.dialect.name == "postgresql":
                    session.execute(select(func.pg_advisory_xact_lock(RERUN_ADMISSION_LOCK_KEY)))
                self._check_rerun_rate(session, requested_by, per_minute, _utcnow())
            rerun = Rerun(
                run_id=run_id,
                business_key=business_key,
                custom_id=custom_id,
                requested_by=requested_by,
                reason=reason,
                model=model,
                status="intent",
                input_tokens=0,
                output_tokens=0,
                cache_creation_input_tokens=0,
                cache_read_input_tokens=0,
                cache_creation_1h_input_tokens=0,
                cost_usd=0.0,
                created_at=_utcnow(),
            )
            session.add(rerun)
            session.flush()
            return RerunRecord.model_validate(rerun)

    @staticmethod
    def _open_rerun(session: Session, rerun_id: int) -> Rerun:
        rerun = session.get(Rerun, rerun_id, with_for_update=True)
        if rerun is None:
            raise RerunConflictError(f"no re-run {rerun_id} in the ledger; record_rerun_intent creates it")
        if rerun.status != "intent":
            raise RerunConflictError(f"re-run {rerun_id} is already {rerun.status}")
        return rerun

    def publish_rerun(self, rerun_id: int, row: OutputRow, cost_usd: float) -> RerunRecord:
        """Publish a re-run's output and complete its ledger row, in one transaction.

        The output it replaces (or the quarantine rows it releases) is kept on the ledger row, so
        ``undo_rerun`` can put it back.
        """
        with self._writing() as session:
            rerun = self._open_rerun(session, rerun_id)
            run = self._run(session, rerun.run_id)
            current = session.scalars(
                select(Output).where(
                    Output.workload == run.workload,
                    Output.logical_date == run.logical_date,
                    Output.business_key == row.business_key,
                )
            ).one_or_none()
            released = session.scalars(
                select(StoredQuarantineEntry).where(_released_by([run.id], [row.business_key]))
            ).all()
            rerun.replaced_output = (
                None if current is None else OutputRecord.model_validate(current).model_dump(mode="json")
            )
            rerun.released_quarantine = {
                "rows": [QuarantineRecord.model_validate(q).model_dump(mode="json") for q in released]
            }
            now = _utcnow()
            if current is None:
                session.add(
                    Output(
                        workload=run.workload,
                        logical_date=run.logical_date,
                        created_at=now,
                        updated_at=now,
                        **row.model_dump(),
                    )
                )
            else:
                for name, value in row.model_dump().items():
                    setattr(current, name, value)
                current.updated_at = now
            for entry in released:
                session.delete(entry)
            self._end_rerun(rerun, "published", row.usage, cost_usd, None)
            rerun.output = row.output
            session.flush()
            return RerunRecord.model_validate(rerun)

    def fail_rerun(
        self,
        rerun_id: int,
        status: str,
        error: str,
        usage: Usage | None = None,
        cost_usd: float = 0.0,
    ) -> RerunRecord:
        """Close a re-run that published nothing (``invalid_output`` or ``failed``), with what it cost."""
        if status not in ("invalid_output", "failed"):
            raise ValueError(f"a re-run fails as invalid_output or failed, not {status!r}")
        with self._writing() as session:
            rerun = self._open_rerun(session, rerun_id)
            self._end_rerun(rerun, status, usage or Usage(), cost_usd, error)
            session.flush()
            return RerunRecord.model_validate(rerun)

    @staticmethod
    def _end_rerun(rerun: Rerun, status: str, usage: Usage, cost_usd: float, error: str | None) -> None:
        rerun.status = status
        rerun.error = error
        rerun.cost_usd = cost_usd
        for name, value in usage.model_dump().items():
            setattr(rerun, name, value)
        rerun.ended_at = _utcnow()

    def undo_rerun(self, rerun_id: int, undone_by: str) -> RerunRecord:
        """Put back what a published re-run replaced: the earlier output, or its quarantine rows.

        Refused (RerunConflictError) when the output is no longer the one this re-run published: a
        later re-run or a publish replaced it, and undoing that comes first.
        """
        with self._writing() as session:
            rerun = session.get(Rerun, rerun_id, with_for_update=True)
            if rerun is None:
                raise RerunConflictError(f"no re-run {rerun_id} in the ledger")
            if rerun.status != "published":
                raise RerunConflictError(
                    f"re-run {rerun_id} is {rerun.status}; only a published one is undone"
                )
            run = self._run(session, rerun.run_id)
            current = session.scalars(
                select(Output).where(
                    Output.workload == run.workload,
                    Output.logical_date == run.logical_date,
                    Output.business_key == rerun.business_key,
                )
            ).one_or_none()
            if current is None or current.source != "rerun" or current.output != rerun.output:
                raise RerunConflictError(
                    f"the output of {rerun.business_key!r} changed after re-run {rerun_id}; "
                    "undo the later re-run first"
                )
            if rerun.replaced_output is None:
                session.delete(current)
            else:
                earlier = OutputRecord.model_validate(rerun.replaced_output)
                for name, value in OutputRow.model_validate(earlier.model_dump()).model_dump().items():
                    setattr(current, name, value)
                current.updated_at = earlier.updated_at
            now = _utcnow()
            for stored in (rerun.released_quarantine or {}).get("rows", []):
                entry = QuarantineRecord.model_validate(stored)
                session.add(StoredQuarantineEntry(**entry.model_dump(exclude={"updated_at"}), updated_at=now))
            rerun.status = "undone"
            rerun.undone_by = undone_by
            rerun.undone_at = now
            session.flush()
            return RerunRecord.model_validate(rerun)

    def reruns(self, run_id: int) -> list[RerunRecord]:
        """The re-runs of a run, newest first."""
        stmt = select(Rerun).where(Rerun.run_id == run_id).order_by(Rerun.id.desc())
        with self._reading() as session:
            return [RerunRecord.model_validate(rerun) for rerun in session.scalars(stmt)]

    def get_rerun(self, rerun_id: int) -> RerunRecord | None:
        """One re-run's ledger row, if there is one."""
        with self._reading() as session:
            rerun = session.get(Rerun, rerun_id)
            return None if rerun is None else RerunRecord.model_validate(rerun)

    # Quarantine

    def quarantine(self, run_id: int, rows: Iterable[QuarantineRow]) -> int:
        """Quarantine records of a run; quarantining a record again replaces its row. Returns rows read."""
        table = StoredQuarantineEntry.__table__
        stmt = self._insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.run_id, table.c.record_ref],
            set_={name: stmt.excluded[name] for name in _QUARANTINE_UPDATED},
        )
        read = 0
        for chunk in _chunks(rows, BULK_CHUNK):
            now = _utcnow()
            with self._writing() as session:
                self._run(session, run_id)
                unplaced = [row.custom_id for row in chunk if row.position is None and row.custom_id]
                positions = self._manifest_positions(session, run_id, unplaced)
                by_ref: dict[str, dict[str, Any]] = {}
                for row in chunk:
                    position = row.position
                    if position is None and row.custom_id is not None:
                        position = positions.get(row.custom_id)
                    ref = f"position:{position}" if position is not None else f"custom_id:{row.custom_id}"
                    stored = {"run_id": run_id, "record_ref": ref, "position": position, "created_at": now}
                    by_ref[ref] = row.model_dump() | stored | {"updated_at": now}
                _execute_bulk(session, stmt, list(by_ref.values()))
            read += len(chunk)
        return read

    @staticmethod
    def _manifest_positions(session: Session, run_id: int, custom_ids: list[str]) -> dict[str, int]:
        positions: dict[str, int] = {}
        for chunk in _chunks(custom_ids, LOOKUP_CHUNK):
            stmt = select(StoredManifestEntry.custom_id, StoredManifestEntry.position).where(
                StoredManifestEntry.run_id == run_id,
                StoredManifestEntry.custom_id.in_(chunk),
                StoredManifestEntry.position.is_not(None),
            )
            positions.update({custom_id: position for custom_id, position in session.execute(stmt)})
        return positions

    def quarantine_rows(self, run_id: int) -> list[QuarantineRecord]:
        """The quarantine of a run, in the order records were first quarantined."""
        stmt = (
            select(StoredQuarantineEntry)
            .where(StoredQuarantineEntry.run_id == run_id)
            .order_by(StoredQuarantineEntry.id)
        )
        with self._reading() as session:
            return [QuarantineRecord.model_validate(entry) for entry in session.scalars(stmt)]

    def quarantine_counts(self, run_id: int) -> dict[str, int]:
        """Quarantined records of a run per quarantine class."""
        stmt = (
            select(StoredQuarantineEntry.quarantine_class, func.count())
            .where(StoredQuarantineEntry.run_id == run_id)
            .group_by(StoredQuarantineEntry.quarantine_class)
        )
        with self._reading() as session:
            return {quarantine_class: count for quarantine_class, count in session.execute(stmt)}

    # Sample validations

    def record_sample_validation(
        self,
        workload: str,
        prompt_fingerprint: str,
        model: str,
        sample_size: int,
        pass_rate: float,
        passed: bool,
    ) -> SampleValidationRecord:
        """Append the result of a sample gate (a log: each gate run adds a row)."""
        validation = SampleValidation(
            workload=workload,
            prompt_fingerprint=prompt_fingerprint,
            model=model,
            sample_size=sample_size,
            pass_rate=pass_rate,
            passed=passed,
            created_at=_utcnow(),
        )
        with self._writing() as session:
            session.add(validation)
            session.flush()
            return SampleValidationRecord.model_validate(validation)

    def last_passed_validation(
        self, workload: str, prompt_fingerprint: str, model: str
    ) -> SampleValidationRecord | None:
        """The latest passed gate of this prompt fingerprint and model, if any."""
        stmt = (
            select(SampleValidation)
            .where(
                SampleValidation.workload == workload,
                SampleValidation.prompt_fingerprint == prompt_fingerprint,
                SampleValidation.model == model,
                SampleValidation.passed.is_(True),
            )
            .order_by(SampleValidation.created_at.desc(), SampleValidation.id.desc())
            .limit(1)
        )
        with self._reading() as session:
            validation = session.scalars(stmt).one_or_none()
            return None if validation is None else SampleValidationRecord.model_validate(validation)

    def last_validation(
        self, workload: str, prompt_fingerprint: str, *, same_prompt: bool = True
    ) -> SampleValidationRecord | None:
        """The latest gate of the workload under this prompt fingerprint, or (``same_prompt=False``)
        under any other one: the prompt a new one is compared with."""
        fingerprint = SampleValidation.prompt_fingerprint
        stmt = (
            select(SampleValidation)
            .where(
                SampleValidation.workload == workload,
                fingerprint == prompt_fingerprint if same_prompt else fingerprint != prompt_fingerprint,
            )
            .order_by(SampleValidation.created_at.desc(), SampleValidation.id.desc())
            .limit(1)
        )
        with self._reading() as session:
            validation = session.scalars(stmt).one_or_none()
            return None if validation is None else SampleValidationRecord.model_validate(validation)

    # Exactly once

    def accounting(self, run_id: int) -> Accounting:
        """Count where the records of a run ended, to prove each ended exactly once (see Accounting)."""
        with self._reading() as session:
            run = self._run(session, run_id)
            published = exists().where(
                Output.workload == run.workload,
                Output.logical_date == run.logical_date,
                Output.business_key == StoredManifestEntry.business_key,
            )
            quarantined = exists().where(
                StoredQuarantineEntry.run_id == run_id,
                StoredQuarantineEntry.position == StoredManifestEntry.position,
            )
            manifest = session.execute(
                select(
                    func.count(),
                    func.count().filter(published),
                    func.count().filter(quarantined),
                    func.count().filter(~published, ~quarantined),
                    func.count().filter(published, quarantined),
                ).where(
                    StoredManifestEntry.run_id == run_id,
                    StoredManifestEntry.round == 0,
                    _one_entry_per_record(),
                )
            ).one()
            in_manifest = exists().where(
                StoredManifestEntry.run_id == run_id,
                StoredManifestEntry.round == 0,
                _one_entry_per_record(),
                StoredManifestEntry.position == StoredQuarantineEntry.position,
            )
            rejected = session.scalar(
                select(func.count())
                .select_from(StoredQuarantineEntry)
                .where(StoredQuarantineEntry.run_id == run_id, ~in_manifest)
            )
        return Accounting(
            manifest=manifest[0],
            published=manifest[1],
            quarantined=manifest[2],
            rejected=rejected or 0,
            unaccounted=manifest[3],
            double_counted=manifest[4],
        )
