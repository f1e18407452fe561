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
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from opentelemetry import context as otel_context
from opentelemetry import trace

from aiaas_services.runtime.errors import DeadlineExceeded, ResourceExhausted, Unavailable

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

RunFn = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


class RunControl(Protocol):
    """What a stoppable run takes besides its feeds (``onnxruntime.RunOptions`` has this shape)."""

    terminate: bool


StoppableRunFn = Callable[..., list[np.ndarray]]  # (feeds, control=None): control.terminate stops the run
EMA_WEIGHT = 0.1  # of the newest run in the moving average of run cost that decides inline runs
# Inline runs are priced (``run_clock``, twice per run) one run in this many: a thread CPU clock read is a
# system call that costs more than a cheap model's whole Python overhead; the others are priced as before.
PRICE_EVERY = 8


@dataclass(frozen=True)
class BatchPolicy:
    """How requests are grouped into runs."""

    enabled: bool = True
    max_batch_size: int = 32
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_s: float = 0.0
    queue_limit: int = 1024
    # Run on the event loop itself, skipping the instance threads, while a run costs less than this
    # (measured by the batcher's ``run_clock``): for a model that computes in tens of microseconds, the
    # thread hop costs more than the run. 0 = always use the threads. Needs max_queue_delay_s == 0 (the
    # loop never waits for a batch).
    inline_below_s: float = 0.0
    # Record batch, queue-wait and run spans per batch (off: each request's span carries those figures
    # as attributes).
    trace_spans: bool = False
    # Drop cancelled requests from the queue and stop runs nobody waits for any more (off: every queued
    # request runs, as before; kept switchable so `make bench` can price the checks).
    cancel_checks: bool = True


@dataclass
class BatchStats:
    """Cumulative figures of one model version (read by ModelStatistics and metrics)."""

    executions: int = 0
    inferences: int = 0
    queue_ns: int = 0
    queue_count: int = 0
    compute_ns: int = 0
    batch_sizes: dict[int, list[int]] = field(default_factory=dict)  # rows -> [count, compute ns]
    dropped_deadline: int = 0
    dropped_cancelled: int = 0  # requests whose caller went away while they were queued
    terminated_runs: int = 0  # runs stopped because every request in them had gone
    wasted_runs: int = 0  # runs that finished although every request in them had gone
    wasted_ns: int = 0  # compute spent on runs nobody waited for (terminated or not)
    last_inference_ms: int = 0


class WorkItem:
    """One queued request."""

    __slots__ = ("control", "deadline", "enqueued", "future", "inputs", "key", "rows", "trace_context")

    def __init__(
        self,
        inputs: dict[str, np.ndarray],
        rows: int,
        key: Hashable,
        deadline: float | None,
        future: asyncio.Future[list[np.ndarray]],
    ) -> None:
        self.inputs = inputs
        self.rows = rows
        self.key = key
        self.deadline = deadline
        self.future = future
        self.enqueued = time.monotonic()
        self.trace_context = otel_context.get_current()  # the request's span: batch spans join its trace
        self.control: _Running | None = None  # set by the instance thread while the item's batch runs


class _Running:
    """A batch being run by an instance thread, and the control that can stop its run."""

    __slots__ = ("batch", "control")

    def __init__(self, batch: list[WorkItem], control: RunControl) -> None:
        self.batch = batch
        self.control = control

    def abandoned(self, now: float) -> bool:
        """Every request of the batch was cancelled, answered elsewhere, or is past its deadline."""
        return all(item.future.done() or (item.deadline is not None and item.deadline <= now) for item in self.batch)

    def stop_if_abandoned(self) -> None:
        """On the event loop: terminate the run when nobody waits for it any more."""
        if not self.control.terminate and self.abandoned(time.monotonic()):
            self.control.terminate = True


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
        """Pop a batch (lock held): expired requests are dropped, then compatible ones stacked in FIFO order."""
        now = time.monotonic()
        policy = self.policy
        batch: list[WorkItem] = []
        expired: list[WorkItem] = []
        cancelled = 0
        checks = self.policy.cancel_checks
        rows = 0
        limit = policy.max_batch_size if policy.enabled else 0
        if policy.enabled and policy.max_queue_delay_s > 0:
            self._wait_for_fill(now)
            now = time.monotonic()
        queue = self._queue
        while queue:
            item = queue[0]
            if item.deadline is not None and item.deadline <= now:
                queue.popleft()
                expired.append(item)
                continue
            if checks and item.future.done():  # cancelled by its caller (a racy read, rechecked on the loop)
                queue.popleft()
                cancelled += 1
                continue
            if batch and (item.key != batch[0].key or item.key is None or rows + item.rows > limit):
                break
            queue.popleft()
            batch.append(item)
            rows += item.rows
            if not policy.enabled or rows >= limit:
                break
        if policy.preferred_batch_sizes and len(batch) > 1:
            batch = self._trim_to_preferred(batch, rows)
        if expired or cancelled:
            with self._stats_lock:
                self.stats.dropped_deadline += len(expired)
                self.stats.dropped_cancelled += cancelled
        if expired:
            self._loop.call_soon_threadsafe(_expire, expired, self.name)
        return batch

    @contextlib.contextmanager
    def _batch_spans(self, batch: list[WorkItem], rows: int, longest_wait: float) -> Iterator[None]:
        """The fine-grained spans: ``inference.batch`` (current while the batch runs) with the oldest request's
        ``inference.queue_wait`` under it. The batch belongs to its first request's trace and links the
        others' (a trace has one parent chain)."""
        links = [trace.Link(trace.get_current_span(item.trace_context).get_span_context()) for item in batch[1:]]
        with tracer.start_as_current_span("inference.batch", context=batch[0].trace_context, links=links) as span:
            now_ns = time.time_ns()
            tracer.start_span("inference.queue_wait", start_time=now_ns - int(longest_wait * 1e9)).end(now_ns)
            span.set_attribute("inference.model", self.name)
            span.set_attribute("inference.batch_requests", len(batch))
            span.set_attribute("inference.batch_rows", rows)
            span.set_attribute("inference.queue_wait_max_ms", longest_wait * 1e3)
            yield

    def _wait_for_fill(self, now: float) -> None:
        """With a queue delay configured, wait (lock held) until a preferred size is queued or the oldest is due."""
        target = min(self.policy.preferred_batch_sizes or (self.policy.max_batch_size,))
        oldest = self._queue[0].enqueued if self._queue else now
        while not self._closing and sum(item.rows for item in self._queue) < target:
            remaining = oldest + self.policy.max_queue_delay_s - time.monotonic()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _trim_to_preferred(self, batch: list[WorkItem], rows: int) -> list[WorkItem]:
        """Keep the largest preferred size that the collected rows reach; the rest goes back first in line."""
        sizes = [size for size in sorted(self.policy.preferred_batch_sizes) if size <= rows]
        if not sizes:
            return batch
        keep: list[WorkItem] = []
        total = 0
        for item in batch:
            if total + item.rows > sizes[-1] and keep:
                break
            keep.append(item)
            total += item.rows
        for item in reversed(batch[len(keep) :]):
            self._queue.appendleft(item)
        return keep

    def _execute(self, run: Any, batch: list[WorkItem], inline: bool = False, started: float | None = None) -> None:
        """Run one batch and answer its requests (``inline``: on the event loop, answering directly;
        ``started``: a ``time.monotonic()`` the caller read just now)."""
        running: _Running | None = None
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
        # own span gets the same facts as attributes (``_annotate``), which costs next to nothing.
        with self._batch_spans(batch, rows, max(waits)) if fine else contextlib.nullcontext():
            try:
                if len(batch) == 1:
                    feeds = batch[0].inputs
                else:
                    feeds = {name: np.concatenate([item.inputs[name] for item in batch]) for name in batch[0].inputs}
                with tracer.start_as_current_span("inference.ort_run") if fine else contextlib.nullcontext():
                    if running is not None:
                        outputs = run(feeds, running.control)
                    elif self._stoppable:
                        outputs = run(feeds, None)
                    else:
                        outputs = run(feeds)
                results = [outputs] if len(batch) == 1 else _split(outputs, [item.rows for item in batch])
            except Exception as exc:
                if running is not None and running.control.terminate:
                    self._count_waste(time.monotonic() - started, terminated=True)
                    logger.info("%s: stopped a run of %d rows: every request in it had gone", self.name, rows)
                    self._loop.call_soon_threadsafe(_expire, batch, self.name)  # the expired, not cancelled
                    return
                logger.exception("%s: run of %d rows failed", self.name, rows)
                if inline:
                    _fail(batch, exc)
                else:
                    self._loop.call_soon_threadsafe(_fail, batch, exc)
                return
        finished = time.monotonic()
        elapsed = finished - started
        cost = self._run_clock() - cost_started if priced else 0.0
        _annotate(batch, self.name, rows, elapsed, started)
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
            _deliver(batch, results)
        else:
            self._loop.call_soon_threadsafe(_deliver, batch, results)
        if self._observe is not None:
            self._observe(rows, elapsed, waits)

    def _track(self, batch: list[WorkItem]) -> _Running | None:
        """Mark the batch as running under a fresh control; None when all its requests have gone already.

        The control is set on the items before they are checked, so a cancellation that lands in between
        is seen either here or by ``infer`` on the loop, never by neither.
        """
        assert self._make_control is not None
        running = _Running(batch, self._make_control())
        for item in batch:
            item.control = running
        if running.abandoned(time.monotonic()):
            with self._stats_lock:
                self.stats.dropped_cancelled += len(batch)
            self._loop.call_soon_threadsafe(_expire, batch, self.name)  # answers those that merely expired
            return None
        return running

    def _count_waste(self, seconds: float, terminated: bool) -> None:
        with self._stats_lock:
            self.stats.wasted_ns += int(seconds * 1e9)
            if terminated:
                self.stats.terminated_runs += 1
            else:
                self.stats.wasted_runs += 1


def _annotate(batch: list[WorkItem], model: str, rows: int, elapsed: float, started: float) -> None:
    """Put queue wait, batch size and run time on each sampled request's span (its SERVER span)."""
    shared: dict[str, Any] | None = None
    for item in batch:
        if not item.trace_context:  # nothing current when the request came in: tracing is off
            continue
        span = trace.get_current_span(item.trace_context)
        if not span.is_recording():
            continue
        if shared is None:  # whole microseconds: an int is several times cheaper to encode than a float
            shared = {
                "inference.model": model,
                "inference.batch_requests": len(batch),
                "inference.batch_rows": rows,
                "inference.run_us": int(elapsed * 1e6),
            }
        span.set_attributes({**shared, "inference.queue_wait_us": int((started - item.enqueued) * 1e6)})


def _split(outputs: list[np.ndarray], rows: list[int]) -> list[list[np.ndarray]]:
    """Split each batched output back along axis 0 into per-request views (slices: no copies)."""
    results: list[list[np.ndarray]] = []
    start = 0
    for count in rows:
        stop = start + count
        results.append([output[start:stop] for output in outputs])
        start = stop
    return results


def _deliver(batch: list[WorkItem], results: list[list[np.ndarray]]) -> None:
    for item, result in zip(batch, results, strict=True):
        if not item.future.done():
            item.future.set_result(result)


def _fail(batch: list[WorkItem], exc: Exception) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(exc)


def _expire(items: list[WorkItem], name: str) -> None:
    for item in items:
        if not item.future.done():
            item.future.set_exception(
                DeadlineExceeded(f"model {name}: the request's deadline passed while it waited in the queue")
            )
