"""Dynamic batching: one queue per model version, N instance threads that stack compatible requests.

Why this shape: an ONNX Runtime run releases the GIL, so instance threads run in parallel with the
event loop and each other. An idle instance takes whatever is queued at once (a lone request never
waits for a window, unless ``max_queue_delay`` asks for it); under load the queue fills while instances
are busy, so batches form by themselves. A batch's results go back to the event loop in ONE
``call_soon_threadsafe``, so the thread hop is paid per batch, not per request.

For a model whose run takes tens of microseconds (a small MLP), even that hop (a condition wake-up, a
self-pipe write, another loop turn) costs more than the run: with ``inline_below_s`` set and the measured
cost of a run below it, the requests of a loop turn are stacked and run on the event loop itself.

Cancelled and expired work is not done (``BatchPolicy.cancel_checks``): a request whose caller went away
(its future cancelled) or whose deadline passed is dropped from the queue; a run whose requests have all
gone is stopped through the run function's ``terminate`` hook (ONNX Runtime's ``RunOptions.terminate``)
and, where it cannot be stopped (inline runs), its time is counted as wasted. gRPC cancels a call whose
deadline passes, so both cases reach ``infer`` as a cancellation: the common path pays no timer.

The module knows nothing of gRPC: requests are dicts of numpy arrays, answers are lists of arrays.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
from opentelemetry import trace

from aiaas_services.inference import batching
from aiaas_services.inference.batching import BatchPolicy, BatchStats, RunControl, RunFn, Running, WorkItem
from aiaas_services.runtime.errors import ResourceExhausted, Unavailable

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

EMA_WEIGHT = 0.1  # of the newest run in the moving average of run cost that decides inline runs
# Inline runs are priced (``run_clock``, twice per run) one run in this many: a thread CPU clock read is a
# system call that costs more than a cheap model's whole Python overhead; the others are priced as before.
PRICE_EVERY = 8
Observer = Callable[[int, float, Sequence[float]], None]


class Batcher:
    """A request queue served by one thread per instance (``run_fns``: one run function per session)."""

    def __init__(
        self,
        name: str,
        run_fns: Sequence[Callable[..., list[np.ndarray]]],
        policy: BatchPolicy,
        loop: asyncio.AbstractEventLoop,
        observe: Observer | None = None,
        make_control: Callable[[], RunControl] | None = None,
        run_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``make_control``: when given, each run function takes ``(feeds, control)`` and stops early once
        ``control.terminate`` is set (the runners of model.py, with ``onnxruntime.RunOptions``).

        ``run_clock`` prices a run for the inline decision: wall time by default; ``time.thread_time`` for
        runs that compute on the calling thread (ONNX Runtime on the CPU), so that a busy machine or an
        instance thread waiting for the GIL after its run does not make a cheap model look expensive and
        move it off the loop for good (a run waiting for the GIL in a thread is measured as slow again)."""
        self.name = name
        self.policy = policy
        self.stats = BatchStats()
        self._loop = loop
        self._observe = observe
        self._queue: collections.deque[WorkItem] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._stats_lock = threading.Lock()
        self._closing = False
        self._pending: list[WorkItem] = []
        self._flush_scheduled = False
        self._inline_run = run_fns[0] if run_fns else None
        self._make_control = make_control if policy.cancel_checks else None
        self._stoppable = make_control is not None
        self._run_clock = run_clock
        self._compute_ema_s: float | None = None  # recent cost of a run by ``run_clock``; decides inline runs
        self._inline_runs = 0  # counts inline runs, to price one in PRICE_EVERY
        self._wall_offset = time.time() - time.monotonic()  # monotonic -> wall clock, for last_inference_ms
        self._threads = [
            threading.Thread(target=self._serve, args=(fn,), name=f"{name}-instance-{i}", daemon=True)
            for i, fn in enumerate(run_fns)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def queued(self) -> int:
        """Requests waiting now."""
        return len(self._queue) + len(self._pending)

    def submit(
        self, inputs: dict[str, np.ndarray], rows: int, key: Hashable, deadline: float | None
    ) -> asyncio.Future[list[np.ndarray]]:
        """Queue a request (from the event loop); the future gets its outputs in the model's output order.

        Requests submitted during one turn of the event loop reach the instances together, at the end of
        that turn (one lock and one wake-up for all of them, and a natural batch), never later.
        """
        return self._enqueue(inputs, rows, key, deadline).future

    async def infer(
        self, inputs: dict[str, np.ndarray], rows: int, key: Hashable, deadline: float | None
    ) -> list[np.ndarray]:
        """``submit`` and wait; a caller cancelled while its request runs stops that run if it was the last
        one waiting for it (checked only on cancellation, so the common path pays nothing)."""
        item = self._enqueue(inputs, rows, key, deadline)
        try:
            return await item.future
        except asyncio.CancelledError:
            running = item.control
            if running is not None:
                running.stop_if_abandoned()
            raise

    def _enqueue(self, inputs: dict[str, np.ndarray], rows: int, key: Hashable, deadline: float | None) -> WorkItem:
        if self._closing:
            raise Unavailable(f"model {self.name} is unloading; retry")
        if len(self._queue) + len(self._pending) >= self.policy.queue_limit:
            raise ResourceExhausted(
                f"model {self.name}: queue is full ({self.policy.queue_limit} requests waiting); retry later"
            )
        future: asyncio.Future[list[np.ndarray]] = self._loop.create_future()
        item = WorkItem(inputs, rows, key, deadline, future)
        self._pending.append(item)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return item

    def run_alone(
        self, inputs: dict[str, np.ndarray], rows: int, key: Hashable, deadline: float | None
    ) -> list[np.ndarray] | None:
        """Run a lone request now, on the event loop, when runs are inline-cheap and nothing is queued.

        For the caller that knows no other request is in flight: waiting for the end of the loop turn
        (a future, a scheduled flush, another turn to wake the caller) would batch nothing. None when it
        does not apply (the caller then uses ``submit``).
        """
        if self._pending or (deadline is not None and deadline <= time.monotonic()):
            return None
        with self._cond:
            if self._closing or self._queue or not self._runs_inline():
                return None
        future: asyncio.Future[list[np.ndarray]] = self._loop.create_future()
        item = WorkItem(inputs, rows, key, deadline, future)
        self._execute(self._inline_run, [item], inline=True, started=item.enqueued)  # arrived and started at once
        return future.result()  # set by the run, or its exception raised here

    def _flush(self) -> None:
        """Hand this loop turn's requests to the instances, or run them here when runs are that cheap."""
        self._flush_scheduled = False
        items, self._pending = self._pending, []
        if not items:
            return
        batches: list[list[WorkItem]] = []
        with self._cond:
            if not self._closing:
                self._queue.extend(items)
                if not self._runs_inline():
                    self._cond.notify(min(len(items), len(self._threads)))
                    return
                while self._queue and (batch := self._take()):
                    batches.append(batch)
                items = []
        for batch in batches:
            self._execute(self._inline_run, batch, inline=True)
        for item in items:  # close() was called from a thread without stop_accepting(): never strand them
            if not item.future.done():
                item.future.set_exception(Unavailable(f"model {self.name} is unloading; retry"))

    def _runs_inline(self) -> bool:
        """Whether runs are cheap enough to do on the event loop (lock held, so instances are not taking)."""
        policy = self.policy
        ema = self._compute_ema_s
        return (
            policy.inline_below_s > 0
            and policy.max_queue_delay_s <= 0
            and self._inline_run is not None
            and ema is not None
            and ema < policy.inline_below_s
        )

    def stop_accepting(self) -> None:
        """On the event loop, before close(): queue what this turn submitted, then refuse new requests."""
        self._flush()
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def close(self, timeout: float) -> bool:
        """Stop taking requests, let the instances finish what is queued, join them (blocking; call in a thread).

        Call ``stop_accepting()`` on the event loop first, so requests submitted in the current loop turn
        are queued rather than refused. Returns True when everything drained in time.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        drained = not any(t.is_alive() for t in self._threads)
        if not drained:
            logger.warning("%s: instances still busy after %.1fs of draining", self.name, timeout)
        return drained

    # ---- instance threads ----------------------------------------------------------------------------

    def _serve(self, run: RunFn) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                batch = self._take()
            if batch:
                self._execute(run, batch)

    def _take(self) -> list[WorkItem]:
        """Pop a batch (lock held); expired and cancelled requests are dropped and counted."""
        if self.policy.enabled and self.policy.max_queue_delay_s > 0:
            self._wait_for_fill(time.monotonic())
        batch, expired, cancelled = batching.take_batch(self._queue, self.policy, time.monotonic())
        if expired or cancelled:
            with self._stats_lock:
                self.stats.dropped_deadline += len(expired)
                self.stats.dropped_cancelled += cancelled
        if expired:
            self._loop.call_soon_threadsafe(batching.expire, expired, self.name)
        return batch

    def _wait_for_fill(self, now: float) -> None:
        """With a queue delay configured, wait (lock held) until a preferred size is queued or the oldest is due."""
        target = min(self.policy.preferred_batch_sizes or (self.policy.max_batch_size,))
        oldest = self._queue[0].enqueued if self._queue else now
        while not self._closing and sum(item.rows for item in self._queue) < target:
            remaining = oldest + self.policy.max_queue_delay_s - time.monotonic()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _execute(self, run: Any, batch: list[WorkItem], inline: bool = False, started: float | None = None) -> None:
        """Run one batch and answer its requests (``inline``: on the event loop, answering directly;
        ``started``: a ``time.monotonic()`` the caller read just now)."""
        running: Running | None = None
        if self._make_control is not None and not inline:
            running = self._track(batch)
            if running is None:
                return  # everyone left between the take and now
        if started is None:
            started = time.monotonic()
        priced = True
        if inline:
            self._inline_runs += 1
            priced = self._compute_ema_s is None or self._inline_runs % PRICE_EVERY == 0
        cost_started = self._run_clock() if priced else 0.0
        waits = [started - item.enqueued for item in batch]
        rows = sum(item.rows for item in batch)
        fine = self.policy.trace_spans and trace.get_current_span(batch[0].trace_context).is_recording()
        # Only when asked for: batch, queue-wait and run spans (one set per batch). Otherwise each request's
        # own span gets the same facts as attributes (``batching.annotate``), which costs next to nothing.
        with batching.batch_spans(tracer, self.name, batch, rows, max(waits)) if fine else contextlib.nullcontext():
            try:
                feeds = batching.stack_feeds(batch)
                with tracer.start_as_current_span("inference.ort_run") if fine else contextlib.nullcontext():
                    if running is not None:
                        outputs = run(feeds, running.control)
                    elif self._stoppable:
                        outputs = run(feeds, None)
                    else:
                        outputs = run(feeds)
                results = (
                    [outputs] if len(batch) == 1 else batching.split_outputs(outputs, [item.rows for item in batch])
                )
            except Exception as exc:
                if running is not None and running.control.terminate:
                    self._count_waste(time.monotonic() - started, terminated=True)
                    logger.info("%s: stopped a run of %d rows: every request in it had gone", self.name, rows)
                    self._loop.call_soon_threadsafe(batching.expire, batch, self.name)  # the expired, not cancelled
                    return
                logger.exception("%s: run of %d rows failed", self.name, rows)
                if inline:
                    batching.fail(batch, exc)
                else:
                    self._loop.call_soon_threadsafe(batching.fail, batch, exc)
                return
        finished = time.monotonic()
        elapsed = finished - started
        cost = self._run_clock() - cost_started if priced else 0.0
        batching.annotate(batch, self.name, rows, elapsed, started)
        if self.policy.cancel_checks and all(item.future.done() for item in batch):
            self._count_waste(elapsed, terminated=False)
        # Count the batch before answering: a caller that reads statistics right after its response
        # must see the execution that produced it.
        with self._stats_lock:
            stats = self.stats
            stats.executions += 1
            stats.inferences += rows
            stats.queue_ns += int(sum(waits) * 1e9)
            stats.queue_count += len(batch)
            stats.compute_ns += int(elapsed * 1e9)
            entry = stats.batch_sizes.setdefault(rows, [0, 0])
            entry[0] += 1
            entry[1] += int(elapsed * 1e9)
            stats.last_inference_ms = int((finished + self._wall_offset) * 1000)
            if priced:
                ema = self._compute_ema_s
                self._compute_ema_s = cost if ema is None else ema + EMA_WEIGHT * (cost - ema)
        if inline:
            batching.deliver(batch, results)
        else:
            self._loop.call_soon_threadsafe(batching.deliver, batch, results)
        if self._observe is not None:
            self._observe(rows, elapsed, waits)

    def _track(self, batch: list[WorkItem]) -> Running | None:
        """Mark the batch as running under a fresh control; None when all its requests have gone already.

        The control is set on the items before they are checked, so a cancellation that lands in between
        is seen either here or by ``infer`` on the loop, never by neither.
        """
        assert self._make_control is not None
        running = Running(batch, self._make_control())
        for item in batch:
            item.control = running
        if running.abandoned(time.monotonic()):
            with self._stats_lock:
                self.stats.dropped_cancelled += len(batch)
            self._loop.call_soon_threadsafe(batching.expire, batch, self.name)  # answers those that merely expired
            return None
        return running

    def _count_waste(self, seconds: float, terminated: bool) -> None:
        with self._stats_lock:
            self.stats.wasted_ns += int(seconds * 1e9)
            if terminated:
                self.stats.terminated_runs += 1
            else:
                self.stats.wasted_runs += 1
