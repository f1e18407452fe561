"""The batcher's cancellation and deadline checks with plain run functions: a cancelled queued request
never runs, a run whose callers all left is told to stop, and an expired request is answered, not lost."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from aiaas_services.inference.batcher import Batcher
from aiaas_services.inference.batching import BatchPolicy
from aiaas_services.runtime.errors import DeadlineExceeded


class Control:
    """Stands in for onnxruntime.RunOptions."""

    def __init__(self) -> None:
        self.terminate = False


class StoppableRun:
    """Runs until released, or until its control says terminate (then fails, as ONNX Runtime does)."""

    def __init__(self) -> None:
        self.runs = 0
        self.release = threading.Event()
        self.started = threading.Event()

    def __call__(self, feeds: dict[str, np.ndarray], control: Any) -> list[np.ndarray]:
        self.runs += 1
        self.started.set()
        while not self.release.is_set():
            if control is not None and control.terminate:
                raise RuntimeError("Exiting due to terminate flag being set to true.")
            time.sleep(0.005)
        return [feeds["x"] * 2]


def rows(n: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.ones((n, 4), np.float32)}


def batcher(run: StoppableRun, checks: bool = True) -> Batcher:
    policy = BatchPolicy(enabled=False, cancel_checks=checks)
    return Batcher("m", [run], policy, asyncio.get_running_loop(), make_control=Control)


async def running() -> tuple[StoppableRun, Batcher, asyncio.Future[list[np.ndarray]]]:
    """A batcher (cancel checks on) whose one instance has started a first request's run."""
    run = StoppableRun()
    b = batcher(run)
    first = asyncio.ensure_future(b.infer(rows(), 1, None, None))
    await asyncio.to_thread(run.started.wait, 5)
    return run, b, first


async def test_a_cancelled_queued_request_never_runs() -> None:
    run, b, first = await running()
    queued = asyncio.ensure_future(b.infer(rows(), 1, None, None))
    await asyncio.sleep(0.05)
    queued.cancel()
    await asyncio.sleep(0.01)
    run.release.set()
    await first
    await asyncio.sleep(0.1)
    assert run.runs == 1 and b.stats.dropped_cancelled == 1
    assert b.close(5)


async def test_with_checks_off_a_cancelled_request_still_runs() -> None:
    run = StoppableRun()
    run.release.set()
    b = batcher(run, checks=False)
    b.submit(rows(), 1, None, None)  # a plain future that nobody cancels
    queued = asyncio.ensure_future(b.infer(rows(), 1, None, None))
    await asyncio.sleep(0)  # queued now
    queued.cancel()
    await asyncio.sleep(0.2)
    assert run.runs == 2
    assert b.close(5)


async def test_a_run_whose_only_caller_left_is_stopped() -> None:
    _, b, call = await running()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    for _ in range(200):
        if b.stats.terminated_runs:
            break
        await asyncio.sleep(0.01)
    assert b.stats.terminated_runs == 1 and b.stats.wasted_ns > 0 and b.stats.executions == 0
    assert b.close(5)


async def test_a_request_that_expires_before_its_run_is_answered_with_deadline_exceeded() -> None:
    run, b, blocker = await running()
    doomed = b.submit(rows(), 1, None, time.monotonic() + 0.02)
    await asyncio.sleep(0.1)
    run.release.set()
    await blocker
    with pytest.raises(DeadlineExceeded):
        await asyncio.wait_for(doomed, 5)
    assert b.close(5)
