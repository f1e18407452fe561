"""Durable job state: SQLite (WAL) under ``<home>/training/jobs.db``.

Two tables: ``jobs`` (one row per job: state, its ``JobSpec`` as JSON, results as JSON) and ``events``
(the per-job, gap-free sequence of what happened, which WatchJob replays). Writes are small and commit
at once, so a crash loses at most the event being written; no gRPC here.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from aiaas_services.training.spec import JobSpec

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT UNIQUE NOT NULL,
    request_id TEXT,
    state TEXT NOT NULL,
    spec BLOB NOT NULL,
    job_spec TEXT NOT NULL DEFAULT '',
    failure_reason TEXT NOT NULL DEFAULT '',
    current_epoch INTEGER NOT NULL DEFAULT 0,
    total_epochs INTEGER NOT NULL DEFAULT 0,
    result TEXT NOT NULL DEFAULT '{}',
    trace_id TEXT NOT NULL DEFAULT '',
    carrier TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_request_id ON jobs(request_id) WHERE request_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    time REAL NOT NULL,
    state TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (job_id, sequence)
);
"""

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})


@dataclasses.dataclass
class JobRecord:
    """A job row. ``spec`` is what the job asks for; ``request`` the request's TrainingSpec as the client
    sent it (wire bytes the API echoes; the domain never reads them). ``result`` holds test metrics,
    confusion matrix, registered version, export job id ..."""

    job_id: str
    state: str
    spec: JobSpec
    created_at: float
    request: bytes = b""
    request_id: str | None = None
    failure_reason: str = ""
    current_epoch: int = 0
    total_epochs: int = 0
    result: dict[str, Any] = dataclasses.field(default_factory=dict)
    trace_id: str = ""
    carrier: dict[str, str] = dataclasses.field(default_factory=dict)
    started_at: float | None = None
    finished_at: float | None = None
    seq: int = 0


@dataclasses.dataclass(frozen=True)
class EventRecord:
    """One job event: ``kind`` is state_changed, epoch or message; ``payload`` its JSON value."""

    job_id: str
    sequence: int
    time: float
    state: str
    kind: str
    payload: Any


class JobStore:
    """The jobs database. One connection, used from the event loop's thread only."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if "job_spec" not in columns:  # a database from before JobSpec was stored: see unparsed()
            self._db.execute("ALTER TABLE jobs ADD COLUMN job_spec TEXT NOT NULL DEFAULT ''")

    def close(self) -> None:
        self._db.close()

    def insert(self, job: JobRecord) -> None:
        with self._db:
            cursor = self._db.execute(
                "INSERT INTO jobs (job_id, request_id, state, spec, job_spec, total_epochs, trace_id, carrier, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.job_id,
                    job.request_id,
                    job.state,
                    job.request,
                    job.spec.to_json(),
                    job.total_epochs,
                    job.trace_id,
                    json.dumps(job.carrier),
                    job.created_at,
                ),
            )
            job.seq = int(cursor.lastrowid or 0)

    def update(self, job: JobRecord) -> None:
        self._db.execute(
            "UPDATE jobs SET state=?, failure_reason=?, current_epoch=?, total_epochs=?, result=?, started_at=?, "
            "finished_at=? WHERE job_id=?",
            (
                job.state,
                job.failure_reason,
                job.current_epoch,
                job.total_epochs,
                json.dumps(job.result),
                job.started_at,
                job.finished_at,
                job.job_id,
            ),
        )

    def get(self, job_id: str) -> JobRecord | None:
        row = self._db.execute("SELECT * FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return _job(row) if row else None

    def by_request_id(self, request_id: str) -> JobRecord | None:
        row = self._db.execute("SELECT * FROM jobs WHERE request_id=?", (request_id,)).fetchone()
        return _job(row) if row else None

    def list_jobs(self, limit: int, before_seq: int | None = None, state: str | None = None) -> list[JobRecord]:
        """Newest first; ``before_seq`` pages on."""
        clauses: list[str] = []
        params: list[Any] = []
        if before_seq is not None:
            clauses.append("seq < ?")
            params.append(before_seq)
        if state is not None:
            clauses.append("state = ?")
            params.append(state)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(f"SELECT * FROM jobs {where} ORDER BY seq DESC LIMIT ?", (*params, limit)).fetchall()
        return [_job(r) for r in rows]

    def in_states(self, *states: str) -> list[JobRecord]:
        """Jobs in any of these states, oldest first (the queue order)."""
        marks = ",".join("?" * len(states))
        rows = self._db.execute(f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY seq", states).fetchall()
        return [_job(r) for r in rows]

    def append_event(self, job_id: str, state: str, kind: str, payload: Any) -> EventRecord:
        """Add the next event of a job (sequence = last + 1)."""
        with self._db:
            row = self._db.execute("SELECT MAX(sequence) FROM events WHERE job_id=?", (job_id,)).fetchone()
            sequence = int(row[0] or 0) + 1
            now = time.time()
            self._db.execute(
                "INSERT INTO events (job_id, sequence, time, state, kind, payload) VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, sequence, now, state, kind, json.dumps(payload)),
            )
        return EventRecord(job_id, sequence, now, state, kind, payload)

    def events(self, job_id: str, after_sequence: int = 0, kind: str | None = None) -> list[EventRecord]:
        query = "SELECT * FROM events WHERE job_id=? AND sequence>?"
        params: list[Any] = [job_id, after_sequence]
        if kind:
            query += " AND kind=?"
            params.append(kind)
        rows = self._db.execute(query + " ORDER BY sequence", params).fetchall()
        return [
            EventRecord(r["job_id"], r["sequence"], r["time"], r["state"], r["kind"], json.loads(r["payload"]))
            for r in rows
        ]

    def unparsed(self) -> list[tuple[str, bytes]]:
        """(job_id, request bytes) of rows written before the JobSpec was stored with them."""
        rows = self._db.execute("SELECT job_id, spec FROM jobs WHERE job_spec = ''").fetchall()
        return [(row["job_id"], bytes(row["spec"])) for row in rows]

    def set_spec(self, job_id: str, spec: JobSpec) -> None:
        """Store the JobSpec of a row that ``unparsed`` returned."""
        self._db.execute("UPDATE jobs SET job_spec=? WHERE job_id=?", (spec.to_json(), job_id))

    def count(self, *states: str) -> int:
        marks = ",".join("?" * len(states))
        return int(self._db.execute(f"SELECT COUNT(*) FROM jobs WHERE state IN ({marks})", states).fetchone()[0])


def _job(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        job_id=row["job_id"],
        state=row["state"],
        spec=JobSpec.from_json(row["job_spec"]),
        request=bytes(row["spec"]),
        created_at=row["created_at"],
        request_id=row["request_id"],
        failure_reason=row["failure_reason"],
        current_epoch=row["current_epoch"],
        total_epochs=row["total_epochs"],
        result=json.loads(row["result"]),
        trace_id=row["trace_id"],
        carrier=json.loads(row["carrier"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        seq=row["seq"],
    )
