"""The predictions kept for feedback: in memory for one process, in a shared SQLite file for workers."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from aiaas_services.inference import predictions
from aiaas_services.inference.monitor import DriftMonitor
from aiaas_services.inference.predictions import LocalPredictions, RowMismatch, SharedPredictions
from aiaas_services.runtime.errors import InvalidArgument, NotFound


def stored(path: Path) -> tuple[int, int]:
    """(requests, predicted rows) in a shared file, read as another process would."""
    with sqlite3.connect(str(path)) as db:
        count, rows = db.execute("SELECT COUNT(*), COALESCE(SUM(rows), 0) FROM predictions").fetchone()
    return int(count), int(rows)


def until_stored(path: Path, count: int) -> None:
    deadline = time.monotonic() + 10
    while stored(path)[0] < count:
        assert time.monotonic() < deadline, stored(path)
        time.sleep(0.01)


def test_local_store_takes_once_keeps_on_mismatch_and_forgets_the_oldest() -> None:
    store = LocalPredictions(capacity=3)
    for i in range(4):
        store.remember("m", f"r{i}", "1", np.array([i, i]))
    assert store.take("m", "r0", 2) is None  # the oldest of four, past the capacity of three
    with pytest.raises(RowMismatch) as mismatch:
        store.take("m", "r1", 3)
    assert mismatch.value.rows == 2
    version, predicted = store.take("m", "r1", 2) or ("", np.zeros(0))
    assert version == "1" and predicted.tolist() == [1, 1]
    assert store.take("m", "r1", 2) is None  # taken once


def test_two_workers_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "predictions.sqlite"
    first, second = SharedPredictions(path), SharedPredictions(path)
    try:
        first.remember("digits", "a", "3", np.array([7, 1, 2]))
        until_stored(path, 1)
        with pytest.raises(RowMismatch):  # nothing taken on a mismatch
            second.take("digits", "a", 2)
        assert second.take("other", "a", 3) is None  # ids are per model
        version, predicted = second.take("digits", "a", 3) or ("", np.zeros(0))
        assert version == "3" and predicted.tolist() == [7, 1, 2]
        assert first.take("digits", "a", 3) is None  # the other worker cannot count it again
        second.remember("digits", "b", "3", np.array([4]))
        assert second.take("digits", "b", 1) is not None  # its own queued write is stored before it looks
    finally:
        first.close()
        second.close()


def test_the_shared_file_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(predictions, "PRUNE_EVERY", 50)
    by_count = SharedPredictions(tmp_path / "count.sqlite", capacity=20)
    by_rows = SharedPredictions(tmp_path / "rows.sqlite", max_rows=100)
    try:
        for i in range(50):
            by_count.remember("m", f"r{i}", "1", np.array([1]))
            by_rows.remember("m", f"r{i}", "1", np.ones(30, np.int64))
    finally:
        by_count.close()  # stores what is queued, pruning at the 50th insert
        by_rows.close()
    assert stored(tmp_path / "count.sqlite") == (20, 20)
    assert stored(tmp_path / "rows.sqlite") == (3, 90)
    reopened = SharedPredictions(tmp_path / "count.sqlite")
    try:
        assert reopened.take("m", "r49", 1) is not None and reopened.take("m", "r29", 1) is None
    finally:
        reopened.close()


def test_feedback_reaches_the_prediction_another_worker_made(tmp_path: Path) -> None:
    async def load(model: Any) -> None:
        return None

    async def scenario() -> None:
        workers = [DriftMonitor(load, sample_every=1, capacity=200) for _ in range(2)]
        for index, monitor in enumerate(workers):
            monitor.share_with_workers(tmp_path / "drift", str(index), 1.0)
        model: Any = SimpleNamespace(name="digits", version="2", inputs=None)
        logits = np.eye(3)[[0, 1, 2, 2]]
        workers[0].observe(model, {"input": np.zeros((4, 2), np.float32)}, [logits], request_id="req-1")
        version, correct, totals = await workers[1].record_feedback("digits", "req-1", [0, 1, 2, 0])
        assert (version, correct, totals) == ("2", 3, (3, 4))
        with pytest.raises(NotFound, match="counts once per request"):
            await workers[0].record_feedback("digits", "req-1", [0, 1, 2, 0])
        workers[0].observe(model, {"input": np.zeros((4, 2), np.float32)}, [logits], request_id="req-2")
        with pytest.raises(InvalidArgument, match="had 4 rows but 1 labels"):
            await workers[1].record_feedback("digits", "req-2", [0])
        for monitor in workers:
            await monitor.close()

    asyncio.run(scenario())
