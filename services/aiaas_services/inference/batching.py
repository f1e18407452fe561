"""What the batcher queues and answers: its policy and figures, one queued request, and how a batch is
assembled from the queue (expired and cancelled requests dropped, compatible ones stacked, preferred sizes kept)
and answered (outputs split back per request, spans annotated).

Plain bookkeeping on the queue's data; ``batcher.py`` owns the threads, the lock and when runs happen, and
calls ``take_batch`` with its lock held. Knows nothing of gRPC.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from opentelemetry import context as otel_context
from opentelemetry import trace

from aiaas_services.runtime.errors import DeadlineExceeded

RunFn = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


class RunControl(Protocol):
    """What a stoppable run takes besides its feeds (``onnxruntime.RunOptions`` has this shape)."""

    terminate: bool


StoppableRunFn = Callable[..., list[np.ndarray]]  # (feeds, control=None): control.terminate stops the run


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
        self.control: Running | None = None  # set by the instance thread while the item's batch runs


class Running:
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


def take_batch(
    queue: collections.deque[WorkItem], policy: BatchPolicy, now: float
) -> tuple[list[WorkItem], list[WorkItem], int]:
    """Pop the next batch off ``queue`` (its lock held): (batch, expired requests, number cancelled).

    Requests past their deadline, and with ``cancel_checks`` those whose caller went away, are dropped on
    the way; then requests with the same key are stacked in FIFO order up to ``max_batch_size`` rows and
    trimmed to the largest preferred size they reach.
    """
    batch: list[WorkItem] = []
    expired: list[WorkItem] = []
    cancelled = 0
    rows = 0
    limit = policy.max_batch_size if policy.enabled else 0
    while queue:
        item = queue[0]
        if item.deadline is not None and item.deadline <= now:
            queue.popleft()
            expired.append(item)
            continue
        if policy.cancel_checks and item.future.done():  # cancelled by its caller (a racy read, rechecked on the loop)
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
        batch = _trim_to_preferred(queue, batch, rows, policy.preferred_batch_sizes)
    return batch, expired, cancelled


def _trim_to_preferred(
    queue: collections.deque[WorkItem], batch: list[WorkItem], rows: int, preferred: tuple[int, ...]
) -> list[WorkItem]:
    """Keep the largest preferred size that the collected rows reach; the rest goes back first in line."""
    sizes = [size for size in sorted(preferred) if size <= rows]
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
        queue.appendleft(item)
    return keep


def stack_feeds(batch: list[WorkItem]) -> dict[str, np.ndarray]:
    """One feed per input: the lone request's own arrays, or every request's rows concatenated."""
    if len(batch) == 1:
        return batch[0].inputs
    return {name: np.concatenate([item.inputs[name] for item in batch]) for name in batch[0].inputs}


@contextlib.contextmanager
def batch_spans(
    tracer: trace.Tracer, model: str, batch: list[WorkItem], rows: int, longest_wait: float
) -> Iterator[None]:
    """The fine-grained spans: ``inference.batch`` (current while the batch runs) with the oldest request's
    ``inference.queue_wait`` under it. The batch belongs to its first request's trace and links the
    others' (a trace has one parent chain)."""
    links = [trace.Link(trace.get_current_span(item.trace_context).get_span_context()) for item in batch[1:]]
    with tracer.start_as_current_span("inference.batch", context=batch[0].trace_context, links=links) as span:
        now_ns = time.time_ns()
        tracer.start_span("inference.queue_wait", start_time=now_ns - int(longest_wait * 1e9)).end(now_ns)
        span.set_attribute("inference.model", model)
        span.set_attribute("inference.batch_requests", len(batch))
        span.set_attribute("inference.batch_rows", rows)
        span.set_attribute("inference.queue_wait_max_ms", longest_wait * 1e3)
        yield


def annotate(batch: list[WorkItem], model: str, rows: int, elapsed: float, started: float) -> None:
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


def split_outputs(outputs: list[np.ndarray], rows: list[int]) -> list[list[np.ndarray]]:
    """Split each batched output back along axis 0 into per-request views (slices: no copies)."""
    results: list[list[np.ndarray]] = []
    start = 0
    for count in rows:
        stop = start + count
        results.append([output[start:stop] for output in outputs])
        start = stop
    return results


def deliver(batch: list[WorkItem], results: list[list[np.ndarray]]) -> None:
    """Answer each request still waiting with its outputs."""
    for item, result in zip(batch, results, strict=True):
        if not item.future.done():
            item.future.set_result(result)


def fail(batch: list[WorkItem], exc: Exception) -> None:
    """Answer each request still waiting with the run's error."""
    for item in batch:
        if not item.future.done():
            item.future.set_exception(exc)


def expire(items: list[WorkItem], name: str) -> None:
    """Answer each request still waiting with DEADLINE_EXCEEDED."""
    for item in items:
        if not item.future.done():
            item.future.set_exception(
                DeadlineExceeded(f"model {name}: the request's deadline passed while it waited in the queue")
            )
