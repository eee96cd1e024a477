"""The emulator's state in one SQLite file: batches, their requests and results, counters, prompt cache.

Everything that must survive a restart lives here, and so does everything big: a batch's requests
and results are rows, never Python lists, so memory stays flat whatever the batch size. Each thread
has its own connection; WAL lets the results stream read while another batch is written, and
writers take the lock up front (``BEGIN IMMEDIATE``) so they queue instead of failing.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value REAL NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    processing_seconds REAL NOT NULL,
    request_count INTEGER NOT NULL,
    cancel_initiated_at REAL,
    ended_at REAL,
    succeeded INTEGER NOT NULL DEFAULT 0,
    errored INTEGER NOT NULL DEFAULT 0,
    canceled INTEGER NOT NULL DEFAULT 0,
    expired INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS batch_requests (
    batch_seq INTEGER NOT NULL,
    position INTEGER NOT NULL,
    custom_id TEXT NOT NULL,
    submission INTEGER NOT NULL,
    completion REAL NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (batch_seq, position)
);
CREATE INDEX IF NOT EXISTS batch_requests_by_completion ON batch_requests (batch_seq, completion, position);
CREATE TABLE IF NOT EXISTS batch_results (
    batch_seq INTEGER NOT NULL,
    chunk INTEGER NOT NULL,
    line_count INTEGER NOT NULL,
    jsonl BLOB NOT NULL,
    PRIMARY KEY (batch_seq, chunk)
);
CREATE TABLE IF NOT EXISTS submissions (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE TABLE IF NOT EXISTS prompt_cache (key TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_BATCH_COLUMNS = (
    "seq, id, created_at, processing_seconds, request_count, cancel_initiated_at, ended_at, "
    "succeeded, errored, canceled, expired"
)

# Submissions of batch requests are counted per custom_id, those of /v1/messages per parameters hash.
BATCH_SCOPE = "batch"
MESSAGES_SCOPE = "messages"


@dataclass(frozen=True)
class BatchRecord:
    seq: int
    id: str
    created_at: float
    processing_seconds: float
    request_count: int
    cancel_initiated_at: float | None
    ended_at: float | None
    succeeded: int
    errored: int
    canceled: int
    expired: int


@dataclass(frozen=True)
class NewRequest:
    """A request to store: `completion` in [0, 1) is how far into the batch's processing time it finishes."""

    custom_id: str
    completion: float
    body: str


@dataclass(frozen=True)
class PendingRequest:
    position: int
    custom_id: str
    submission: int
    completion: float
    body: str


class EmulatorState:
    """The SQLite state file at `path` (created when missing).

    :param path: where the state lives; the same path after a restart finds the same batches.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._connection().executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                self.path, isolation_level=None, timeout=120.0, check_same_thread=False
            )
            connection.execute("PRAGMA journal_mode=WAL")
            # The state is a rehearsal aid: losing the last transaction in a power cut is acceptable,
            # an fsync per commit is not.
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA journal_size_limit=67108864")
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    def close(self) -> None:
        with self._connections_lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; commits on success, rolls back on any exception."""
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    # The clock

    def clock_anchor(self) -> tuple[float, float, float] | None:
        """(emulator time, real wall time, time scale) saved by the last start, if any."""
        rows = dict(self._connection().execute("SELECT name, value FROM meta").fetchall())
        if "clock_anchor" not in rows:
            return None
        return rows["clock_anchor"], rows["clock_wall"], rows["clock_scale"]

    def save_clock_anchor(self, anchor: float, wall: float, scale: float) -> None:
        with self.transaction() as connection:
            connection.executemany(
                "INSERT INTO meta (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [("clock_anchor", anchor), ("clock_wall", wall), ("clock_scale", scale)],
            )

    # Batches

    def create_batch(
        self, batch_id: str, created_at: float, processing_seconds: float, requests: Iterable[NewRequest]
    ) -> BatchRecord:
        """Store a batch and its requests in one transaction, numbering each custom_id's submission.

        `requests` may raise (a bad body is found while it is read): nothing is stored then.
        """
        with self.transaction() as connection:
            seq = connection.execute(
                "INSERT INTO batches (id, created_at, processing_seconds, request_count) VALUES (?, ?, ?, 0)",
                (batch_id, created_at, processing_seconds),
            ).lastrowid
            rows: list[tuple[int, int, str, int, float, str]] = []
            count = 0
            for count, request in enumerate(requests, start=1):
                submission = self.next_submission(connection, BATCH_SCOPE, request.custom_id)
                rows.append((seq, count - 1, request.custom_id, submission, request.completion, request.body))
                if len(rows) == 1000:
                    self._insert_requests(connection, rows)
                    rows = []
            self._insert_requests(connection, rows)
            connection.execute("UPDATE batches SET request_count = ? WHERE seq = ?", (count, seq))
            self.add_counters(connection, {"batches_created": 1, "batch_requests_submitted": count})
        record = self.batch(batch_id)
        assert record is not None
        return record

    @staticmethod
    def _insert_requests(connection: sqlite3.Connection, rows: list[tuple]) -> None:
        connection.executemany(
            "INSERT INTO batch_requests (batch_seq, position, custom_id, submission, completion, body) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )

    def batch(self, batch_id: str) -> BatchRecord | None:
        row = (
            self._connection()
            .execute(f"SELECT {_BATCH_COLUMNS} FROM batches WHERE id = ?", (batch_id,))
            .fetchone()
        )
        return BatchRecord(*row) if row else None

    def list_batches(
        self, *, before_id: str | None, after_id: str | None, limit: int
    ) -> tuple[list[BatchRecord], bool] | None:
        """A page of batches, newest first, and whether more lie beyond it; None for an unknown cursor."""
        connection = self._connection()
        cursor_id = before_id or after_id
        if cursor_id is None:
            rows = connection.execute(
                f"SELECT {_BATCH_COLUMNS} FROM batches ORDER BY seq DESC LIMIT ?", (limit + 1,)
            ).fetchall()
        else:
            found = connection.execute("SELECT seq FROM batches WHERE id = ?", (cursor_id,)).fetchone()
            if found is None:
                return None
            if before_id is not None:
                # The page just newer than the cursor: the `limit` closest to it, shown newest first.
                rows = connection.execute(
                    f"SELECT {_BATCH_COLUMNS} FROM batches WHERE seq > ? ORDER BY seq ASC LIMIT ?",
                    (found[0], limit + 1),
                ).fetchall()
                has_more = len(rows) > limit
                return [BatchRecord(*row) for row in reversed(rows[:limit])], has_more
            rows = connection.execute(
                f"SELECT {_BATCH_COLUMNS} FROM batches WHERE seq < ? ORDER BY seq DESC LIMIT ?",
                (found[0], limit + 1),
            ).fetchall()
        return [BatchRecord(*row) for row in rows[:limit]], len(rows) > limit

    def mark_cancel(self, batch_id: str, at: float) -> None:
        with self.transaction() as connection:
            connection.execute(
                "UPDATE batches SET cancel_initiated_at = ? "
                "WHERE id = ? AND cancel_initiated_at IS NULL AND ended_at IS NULL",
                (at, batch_id),
            )

    def delete_batch(self, seq: int) -> None:
        with self.transaction() as connection:
            connection.execute("DELETE FROM batch_results WHERE batch_seq = ?", (seq,))
            connection.execute("DELETE FROM batch_requests WHERE batch_seq = ?", (seq,))
            connection.execute("DELETE FROM batches WHERE seq = ?", (seq,))

    # Processing

    def pending_requests(self, seq: int, after: tuple[float, int], limit: int) -> list[PendingRequest]:
        """The next requests of a batch in completion order, after (completion, position) `after`."""
        rows = (
            self._connection()
            .execute(
                "SELECT position, custom_id, submission, completion, body FROM batch_requests "
                "WHERE batch_seq = ? AND (completion, position) > (?, ?) "
                "ORDER BY completion, position LIMIT ?",
                (seq, after[0], after[1], limit),
            )
            .fetchall()
        )
        return [PendingRequest(*row) for row in rows]

    def clear_results(self, seq: int) -> None:
        """Forget results of a processing run that a crash interrupted, so the run starts over."""
        with self.transaction() as connection:
            connection.execute("DELETE FROM batch_results WHERE batch_seq = ?", (seq,))

    @staticmethod
    def insert_result_chunk(connection: sqlite3.Connection, seq: int, chunk: int, lines: list[str]) -> None:
        """Store consecutive result lines as one JSONL blob: streaming then reads a row per chunk."""
        connection.execute(
            "INSERT INTO batch_results (batch_seq, chunk, line_count, jsonl) VALUES (?, ?, ?, ?)",
            (seq, chunk, len(lines), "".join(line + "\n" for line in lines).encode()),
        )

    def finish_batch(
        self, seq: int, ended_at: float, outcomes: dict[str, int], counters: dict[str, int]
    ) -> None:
        """Mark a processed batch ended with its outcome counts; its requests are no longer needed."""
        with self.transaction() as connection:
            connection.execute(
                "UPDATE batches SET ended_at = ?, succeeded = ?, errored = ?, canceled = ?, expired = ? "
                "WHERE seq = ?",
                (
                    ended_at,
                    outcomes.get("succeeded", 0),
                    outcomes.get("errored", 0),
                    outcomes.get("canceled", 0),
                    outcomes.get("expired", 0),
                    seq,
                ),
            )
            connection.execute("DELETE FROM batch_requests WHERE batch_seq = ?", (seq,))
            self.add_counters(connection, counters)

    def result_chunks(self, seq: int, after_chunk: int, limit: int) -> list[tuple[int, int, bytes]]:
        """(chunk number, line count, JSONL bytes) of the next `limit` result chunks after `after_chunk`."""
        return (
            self._connection()
            .execute(
                "SELECT chunk, line_count, jsonl FROM batch_results WHERE batch_seq = ? AND chunk > ? "
                "ORDER BY chunk LIMIT ?",
                (seq, after_chunk, limit),
            )
            .fetchall()
        )

    # Submissions, prompt cache and counters (inside a caller's transaction)

    @staticmethod
    def next_submission(connection: sqlite3.Connection, scope: str, key: str) -> int:
        """Count one more submission of `key`; returns its number (1 for the first)."""
        return connection.execute(
            "INSERT INTO submissions (scope, key, count) VALUES (?, ?, 1) "
            "ON CONFLICT (scope, key) DO UPDATE SET count = count + 1 RETURNING count",
            (scope, key),
        ).fetchone()[0]

    @staticmethod
    def cache_is_warm(connection: sqlite3.Connection, key: str, at: float) -> bool:
        row = connection.execute("SELECT expires_at FROM prompt_cache WHERE key = ?", (key,)).fetchone()
        return row is not None and row[0] >= at

    @staticmethod
    def keep_cached(connection: sqlite3.Connection, key: str, expires_at: float) -> None:
        connection.execute(
            "INSERT INTO prompt_cache (key, expires_at) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)",
            (key, expires_at),
        )

    @staticmethod
    def add_counters(connection: sqlite3.Connection, increments: dict[str, int]) -> None:
        connection.executemany(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            [(name, value) for name, value in increments.items() if value],
        )

    def counters(self) -> dict[str, int]:
        return dict(self._connection().execute("SELECT name, value FROM counters").fetchall())

    def batch_submission_summary(self) -> tuple[int, int]:
        """(most submissions of any custom_id, how many custom_ids were submitted more than once)."""
        row = (
            self._connection()
            .execute(
                "SELECT coalesce(max(count), 0), coalesce(sum(count > 1), 0) "
                "FROM submissions WHERE scope = ?",
                (BATCH_SCOPE,),
            )
            .fetchone()
        )
        return row[0], row[1]
