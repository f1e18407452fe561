"""Predicted classes of inference requests that carried an id, kept until their labelled feedback comes.

``RecordFeedback`` names a request by its id and may arrive on any worker of a ``--workers N`` service
(the kernel gives each connection to one worker), so the workers keep these predictions in one store:
``SharedPredictions``, a small SQLite file in the folder the workers already share (beside the drift
counts of ``drift_share``). Why SQLite: it is in the standard library, takes writers from several
processes with its own locking, and a feedback consumes its prediction in one transaction, so a request
counts once whichever worker hears of it. One process alone keeps them in memory (``LocalPredictions``).

Both are bounded: the newest ``capacity`` requests (and, in the file, ``max_rows`` predicted rows) are
kept, older ones are forgotten. On the hot path ``remember`` only queues the prediction; a writer thread
stores it (within milliseconds), and a feedback that finds nothing waits briefly for a peer's write in
flight before it answers NOT_FOUND. No gRPC.
"""

from __future__ import annotations

import collections
import logging
import queue
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

REMEMBERED = 10_000  # requests with an id kept per store (a process alone, or all workers together x 4)
MAX_ROWS = 2_000_000  # predicted rows kept in the shared file (4 bytes each)
PRUNE_EVERY = 256  # inserts between two prunings of the shared file
MAX_QUEUED = 10_000  # predictions waiting for the writer before new ones are dropped
# Pauses (seconds) before the retries of a shared ``take`` that found nothing: another worker may have
# answered the request a moment ago and its writer not stored it yet.
PEER_WAITS = (0.05, 0.2, 0.5)


WRITE_DELAY_S = 0.05  # how long the writer lets predictions gather before one transaction


class RowMismatch(ValueError):
    """The labels do not match the remembered request's rows (``rows``: how many it had); nothing is taken."""

    def __init__(self, rows: int) -> None:
        super().__init__(f"the request had {rows} rows")
        self.rows = rows


class LocalPredictions:
    """One process's predictions, in memory (newest ``capacity`` requests)."""

    shared = False

    def __init__(self, capacity: int = REMEMBERED) -> None:
        self.capacity = capacity
        self._items: collections.OrderedDict[tuple[str, str], tuple[str, np.ndarray]] = collections.OrderedDict()

    def remember(self, model: str, request_id: str, version: str, predicted: np.ndarray) -> None:
        """Keep (on the hot path: one dict insert)."""
        self._items[(model, request_id)] = (version, predicted)
        self._items.move_to_end((model, request_id))
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def take(self, model: str, request_id: str, rows: int) -> tuple[str, np.ndarray] | None:
        """The (version, predicted classes) of a request, forgotten once taken; None when unknown.
        ``RowMismatch`` (and nothing taken) when it had other than ``rows`` rows."""
        found = self._items.get((model, request_id))
        if found is None:
            return None
        if len(found[1]) != rows:
            raise RowMismatch(len(found[1]))
        del self._items[(model, request_id)]
        return found

    def close(self) -> None:
        """Nothing to release."""


class SharedPredictions:
    """The workers' predictions in ``path`` (SQLite, WAL); a writer thread per worker fills it."""

    shared = True

    def __init__(self, path: Path, capacity: int = 4 * REMEMBERED, max_rows: int = MAX_ROWS) -> None:
        self.path = path
        self.capacity = capacity
        self.max_rows = max_rows
        self._lock = threading.Lock()  # one connection, used by the writer thread and by take
        self._db = sqlite3.connect(str(path), timeout=10.0, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")  # the predictions are worth nothing after a crash
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS predictions (seq INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, "
            "request_id TEXT NOT NULL, version TEXT NOT NULL, rows INTEGER NOT NULL, predicted BLOB NOT NULL, "
            "UNIQUE (model, request_id))"
        )
        self._queue: queue.SimpleQueue[tuple[str, str, str, bytes, int] | None] = queue.SimpleQueue()
        self._inserted = 0
        self._dropped = 0
        self._writer = threading.Thread(target=self._write_loop, name="predictions-writer", daemon=True)
        self._writer.start()

    def remember(self, model: str, request_id: str, version: str, predicted: np.ndarray) -> None:
        """Queue for the writer (on the hot path: one array copy and a queue put)."""
        if self._queue.qsize() >= MAX_QUEUED:  # the writer is stuck (disk full?): forget rather than grow
            self._dropped += 1
            if self._dropped in (1, 1000):
                logger.warning("feedback predictions dropped: the writer of %s is behind", self.path)
            return
        self._queue.put((model, request_id, version, predicted.astype("<i4").tobytes(), len(predicted)))

    def take(self, model: str, request_id: str, rows: int) -> tuple[str, np.ndarray] | None:
        """The (version, predicted classes) of a request, deleted in the same transaction (so it counts
        once across workers); None when no worker stored it. ``RowMismatch`` when it had other than ``rows``
        rows. Blocking: run in a thread."""
        with self._lock:
            self._write(self._drain())  # this worker's own predictions still queued
            self._db.execute("BEGIN IMMEDIATE")
            try:
                found = self._db.execute(
                    "SELECT version, rows, predicted FROM predictions WHERE model = ? AND request_id = ?",
                    (model, request_id),
                ).fetchone()
                if found is not None and found[1] == rows:
                    self._db.execute("DELETE FROM predictions WHERE model = ? AND request_id = ?", (model, request_id))
            finally:
                self._db.execute("COMMIT")
        if found is None:
            return None
        if found[1] != rows:
            raise RowMismatch(int(found[1]))
        return str(found[0]), np.frombuffer(found[2], dtype="<i4").astype(np.int64)

    def _drain(self, first: tuple[str, str, str, bytes, int] | None = None) -> list[tuple[str, str, str, bytes, int]]:
        batch = [] if first is None else [first]
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch
            if item is None:  # close() asked the writer to stop: leave the marker for it
                self._queue.put(None)
                return batch
            batch.append(item)

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            # Let a batch gather: one transaction per request made every request pay for SQLite's write
            # lock (shared by the workers); feedback still finds a prediction (``take`` drains first).
            time.sleep(WRITE_DELAY_S)
            with self._lock:
                self._write(self._drain(item))

    def _write(self, batch: list[tuple[str, str, str, bytes, int]]) -> None:
        """Insert a batch in one transaction, and prune now and then (the caller holds the lock)."""
        if not batch:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO predictions (model, request_id, version, predicted, rows) "
                    "VALUES (?, ?, ?, ?, ?)",
                    batch,
                )
                self._inserted += len(batch)
                if self._inserted >= PRUNE_EVERY:
                    self._inserted = 0
                    self._prune()
            finally:
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:  # locked too long, disk full: these predictions get no feedback
            logger.warning("%d feedback predictions not stored in %s: %s", len(batch), self.path, exc)

    def _prune(self) -> None:
        """Forget all but the newest ``capacity`` requests, and the oldest past ``max_rows`` rows."""
        self._db.execute(
            "DELETE FROM predictions WHERE seq <= (SELECT MAX(seq) FROM predictions) - ?", (self.capacity,)
        )
        self._db.execute(
            "DELETE FROM predictions WHERE seq <= (SELECT MAX(seq) FROM (SELECT seq, SUM(rows) OVER "
            "(ORDER BY seq DESC) AS newer FROM predictions) WHERE newer > ?)",
            (self.max_rows,),
        )

    def close(self, timeout: float = 5.0) -> None:
        """Store what is queued and stop the writer."""
        self._queue.put(None)
        self._writer.join(timeout)
        with self._lock:
            self._db.close()
