"""Export jobs and their events in SQLite (``<home>/serialization/jobs.db``).

The service process and its worker processes share this file: the service creates and cancels jobs,
the worker records progress. Every change is one ``BEGIN IMMEDIATE`` transaction that updates the job
and appends its numbered event, so a watcher replaying history sees each state exactly once, in order.
Jobs, requests and events are the service's own records (``records.py``) as JSON; no protos here.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from aiaas_services.serialization import records
from aiaas_services.serialization.records import QUEUED, EventRecord, ExportRequest, JobRecord, VariantRecord

# Tables of the record era (the proto-era ``jobs``/``events`` of older homes are left alone, unread).
SCHEMA = """
CREATE TABLE IF NOT EXISTS job_records (
    job_id TEXT PRIMARY KEY,
    request_id TEXT UNIQUE,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    job TEXT NOT NULL,
    request TEXT NOT NULL,
    carrier TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS job_records_by_state ON job_records (state, created_at);
CREATE TABLE IF NOT EXISTS job_events (
    job_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (job_id, sequence)
);
CREATE TABLE IF NOT EXISTS job_versions (
    job_id TEXT NOT NULL,
    model_name TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (model_name, version)
);
"""


class JobStore:
    """A thin, synchronous store; call it from threads (service) or directly (worker)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def create(self, job: JobRecord, request: ExportRequest, carrier: dict[str, str]) -> tuple[JobRecord, bool]:
        """Insert a QUEUED job (with its first event); returns (job, created). A repeated request_id
        returns the job it made the first time."""
        with self._transaction() as db:
            if request.request_id:
                row = db.execute("SELECT job FROM job_records WHERE request_id = ?", (request.request_id,)).fetchone()
                if row:
                    return records.job_of(json.loads(row[0])), False
            job.job_id = job.job_id or uuid.uuid4().hex
            job.state = QUEUED
            job.created_at = time.time()
            db.execute(
                "INSERT INTO job_records (job_id, request_id, state, created_at, job, request, carrier)"
                " VALUES (?,?,?,?,?,?,?)",
                (
                    job.job_id,
                    request.request_id or None,
                    job.state,
                    job.created_at,
                    json.dumps(records.to_json(job)),
                    json.dumps(records.to_json(request)),
                    json.dumps(carrier),
                ),
            )
            self._append(db, job, "state_changed", "queued")
            return job, True

    def get(self, job_id: str) -> JobRecord | None:
        with self._connect() as db:
            row = db.execute("SELECT job FROM job_records WHERE job_id = ?", (job_id,)).fetchone()
        return records.job_of(json.loads(row[0])) if row else None

    def request_of(self, job_id: str) -> tuple[ExportRequest, dict[str, str]]:
        with self._connect() as db:
            row = db.execute("SELECT request, carrier FROM job_records WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(job_id)
        return records.request_of(json.loads(row[0])), json.loads(row[1])

    def list_jobs(self, state: str = "", limit: int = 50, offset: int = 0) -> list[JobRecord]:
        """Newest first, optionally only one state."""
        query = "SELECT job FROM job_records" + (" WHERE state = ?" if state else "")
        query += " ORDER BY created_at DESC, job_id LIMIT ? OFFSET ?"
        params: tuple[str | int, ...] = ((state,) if state else ()) + (limit, offset)
        with self._connect() as db:
            return [records.job_of(json.loads(r[0])) for r in db.execute(query, params)]

    def ids_in_state(self, state: str) -> list[str]:
        """Oldest first."""
        with self._connect() as db:
            rows = db.execute("SELECT job_id FROM job_records WHERE state = ? ORDER BY created_at", (state,)).fetchall()
        return [r[0] for r in rows]

    def update(
        self,
        job_id: str,
        change: Callable[[JobRecord], None],
        event: tuple[str, str] | VariantRecord | None = None,
        only_if: tuple[str, ...] = (),
    ) -> JobRecord | None:
        """Apply ``change`` to the job and append ``event`` ((kind, text), or a variant) atomically; None
        (and nothing changed) when the job is missing or, with ``only_if``, not in one of those states."""
        with self._transaction() as db:
            row = db.execute("SELECT job FROM job_records WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            job = records.job_of(json.loads(row[0]))
            if only_if and job.state not in only_if:
                return None
            change(job)
            db.execute(
                "UPDATE job_records SET state = ?, job = ? WHERE job_id = ?",
                (job.state, json.dumps(records.to_json(job)), job_id),
            )
            if isinstance(event, VariantRecord):
                self._append(db, job, "variant", "", event)
            elif event is not None:
                self._append(db, job, *event)
            return job

    def note(self, job_id: str, message: str) -> None:
        """A progress line for watchers (no state change)."""
        self.update(job_id, lambda _job: None, ("message", message))

    def _append(
        self, db: sqlite3.Connection, job: JobRecord, kind: str, text: str, variant: VariantRecord | None = None
    ) -> None:
        row = db.execute("SELECT COALESCE(MAX(sequence), 0) FROM job_events WHERE job_id = ?", (job.job_id,)).fetchone()
        event = EventRecord(int(row[0]) + 1, time.time(), job.state, kind, text, variant)
        db.execute(
            "INSERT INTO job_events (job_id, sequence, event) VALUES (?,?,?)",
            (job.job_id, event.sequence, json.dumps(records.to_json(event))),
        )

    def events(self, job_id: str, after_sequence: int = 0) -> list[EventRecord]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT event FROM job_events WHERE job_id = ? AND sequence > ? ORDER BY sequence",
                (job_id, after_sequence),
            ).fetchall()
        return [records.event_of(json.loads(r[0])) for r in rows]

    def record_version(self, job_id: str, model_name: str, version: int) -> None:
        """Remember a registry version this job created (to fail it if the job dies before finishing)."""
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO job_versions VALUES (?,?,?)", (job_id, model_name, version))

    def versions_of(self, job_id: str) -> list[tuple[str, int]]:
        with self._connect() as db:
            rows = db.execute("SELECT model_name, version FROM job_versions WHERE job_id = ?", (job_id,)).fetchall()
        return [(r[0], int(r[1])) for r in rows]
