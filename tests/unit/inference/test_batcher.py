"""The dynamic batcher with plain Python run functions (no model, no gRPC): what it stacks, when it
waits, what it drops, that closing drains the queue, and what it tells the request's trace."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

from aiaas_services.inference import batcher as batcher_module
from aiaas_services.inference.batcher import Batcher
from aiaas_services.inference.batching import BatchPolicy
from aiaas_services.runtime.errors import DeadlineExceeded, ResourceExhausted, Unavailable
from aiaas_services.runtime.settings import ServiceSettings
from aiaas_services.runtime.tracing import JsonLinesTracerProvider, service_resource


class Recorder:
    """A run function that doubles its input and records every batch's row count; can be held."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def __call__(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.started.set()
        self.gate.wait(10)
        self.batches.append(len(feeds["x"]))
        return [feeds["x"] * 2]


def rows(n: int, value: float = 1.0, width: int = 4) -> dict[str, np.ndarray]:
    return {"x": np.full((n, width), value, np.float32)}


async def busy(
    policy: BatchPolicy, first_value: float = 1.0
) -> tuple[Recorder, Batcher, asyncio.Future[list[np.ndarray]]]:
    """A batcher over one held Recorder, its run started on a first 1-row request (the rest queue)."""
    run = Recorder()
    run.gate.clear()
    batcher = Batcher("m", [run], policy, asyncio.get_running_loop())
    first = batcher.submit(rows(1, first_value), 1, (4,), None)
    await asyncio.to_thread(run.started.wait, 5)
    return run, batcher, first


async def test_a_lone_request_runs_at_once_without_a_window() -> None:
    run = Recorder()
    batcher = Batcher("m", [run], BatchPolicy(max_queue_delay_s=0.0), asyncio.get_running_loop())
    started = time.monotonic()
    (out,) = await batcher.submit(rows(1, 3.0), 1, (4,), None)
    assert time.monotonic() - started < 0.5
    np.testing.assert_array_equal(out, np.full((1, 4), 6.0))
    batcher.close(5)


async def test_queued_compatible_requests_are_stacked_and_split_back() -> None:
    run, batcher, first = await busy(BatchPolicy(max_batch_size=16), first_value=0.0)
    queued = [batcher.submit(rows(2, float(i)), 2, (4,), None) for i in range(1, 6)]
    run.gate.set()
    await first
    results = await asyncio.gather(*queued)
    assert run.batches == [1, 10]
    for i, (out,) in enumerate(results, start=1):
        np.testing.assert_array_equal(out, np.full((2, 4), 2.0 * i))
    assert batcher.stats.executions == 2 and batcher.stats.inferences == 11
    batcher.close(5)


async def test_incompatible_shapes_are_not_mixed_and_max_batch_is_respected() -> None:
    run, batcher, first = await busy(BatchPolicy(max_batch_size=4))
    a = [batcher.submit(rows(1), 1, (4,), None) for _ in range(6)]
    b = batcher.submit(rows(1, width=8), 1, (8,), None)
    run.gate.set()
    await asyncio.gather(first, *a, b)
    assert run.batches == [1, 4, 2, 1]


async def test_preferred_batch_sizes_trim_and_keep_order() -> None:
    run, batcher, first = await busy(BatchPolicy(max_batch_size=32, preferred_batch_sizes=(4, 8)))
    queued = [batcher.submit(rows(1, float(i)), 1, (4,), None) for i in range(11)]
    run.gate.set()
    results = await asyncio.gather(first, *queued)
    assert run.batches == [1, 8, 3]
    assert [float(r[0][0, 0]) for r in results[1:]] == [2.0 * i for i in range(11)]


async def test_batching_off_runs_one_request_per_call() -> None:
    run = Recorder()
    run.gate.clear()
    batcher = Batcher("m", [run], BatchPolicy(enabled=False), asyncio.get_running_loop())
    futures = [batcher.submit(rows(2), 2, (4,), None) for _ in range(3)]
    run.gate.set()
    await asyncio.gather(*futures)
    assert run.batches == [2, 2, 2]


class ThreadRecorder(Recorder):
    """A Recorder that also notes which thread ran each batch, and can be made slow."""

    def __init__(self, seconds: float = 0.0) -> None:
        super().__init__()
        self.threads: list[str] = []
        self.seconds = seconds

    def __call__(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.threads.append(threading.current_thread().name)
        time.sleep(self.seconds)
        return super().__call__(feeds)


async def test_cheap_runs_move_onto_the_event_loop_and_still_batch() -> None:
    run = ThreadRecorder()
    batcher = Batcher("m", [run], BatchPolicy(inline_below_s=0.5), asyncio.get_running_loop())
    await batcher.submit(rows(1), 1, (4,), None)  # the first run is measured on an instance thread
    assert run.threads == ["m-instance-0"]
    results = await asyncio.gather(*[batcher.submit(rows(1, float(i)), 1, (4,), None) for i in range(5)])
    assert run.threads[1:] == [threading.current_thread().name]  # one run of 5 rows, on the loop
    assert run.batches == [1, 5]
    assert [float(out[0][0, 0]) for out in results] == [2.0 * i for i in range(5)]
    assert batcher.stats.executions == 2 and batcher.stats.inferences == 6
    batcher.close(5)


async def test_a_lone_cheap_request_runs_at_once_without_a_future() -> None:
    run = ThreadRecorder()
    batcher = Batcher("m", [run], BatchPolicy(inline_below_s=0.5), asyncio.get_running_loop())
    assert batcher.run_alone(rows(1), 1, (4,), None) is None, "run time not measured yet: use submit"
    await batcher.submit(rows(1), 1, (4,), None)
    outputs = batcher.run_alone(rows(1, 3.0), 1, (4,), None)  # answered synchronously, on the loop
    assert outputs is not None
    (out,) = outputs
    np.testing.assert_array_equal(out, np.full((1, 4), 6.0))
    assert run.threads[1:] == [threading.current_thread().name]
    assert batcher.stats.executions == 2 and batcher.stats.inferences == 2
    queued = batcher.submit(rows(1), 1, (4,), None)
    assert batcher.run_alone(rows(1), 1, (4,), None) is None, "another request waits: batch with it instead"
    assert batcher.run_alone(rows(1), 1, (4,), time.monotonic() - 1) is None, "expired: the queue answers it"
    await queued
    batcher.close(5)


async def test_runs_slower_than_the_inline_limit_stay_on_the_instances() -> None:
    run = ThreadRecorder(seconds=0.02)
    batcher = Batcher("m", [run], BatchPolicy(inline_below_s=0.005), asyncio.get_running_loop())
    for _ in range(3):
        await batcher.submit(rows(1), 1, (4,), None)
    assert run.threads == ["m-instance-0"] * 3
    batcher.close(5)


async def test_a_cpu_priced_run_waiting_without_computing_still_runs_inline() -> None:
    """Priced by thread CPU time (ONNX Runtime on the CPU), a run whose wall time is long but whose CPU time
    is not (here it sleeps: as a cheap run does that waits for the GIL, or for a busy machine) stays cheap,
    so the model does not move off the loop; priced by wall time (the default) it would."""
    run = ThreadRecorder(seconds=0.02)
    policy = BatchPolicy(inline_below_s=0.005)
    batcher = Batcher("m", [run], policy, asyncio.get_running_loop(), run_clock=time.thread_time)
    for _ in range(3):
        await batcher.submit(rows(1), 1, (4,), None)
    assert run.threads == ["m-instance-0", threading.current_thread().name, threading.current_thread().name]
    batcher.close(5)


async def test_a_request_submitted_just_before_close_is_refused_not_stranded() -> None:
    batcher = Batcher("m", [Recorder()], BatchPolicy(inline_below_s=0.5), asyncio.get_running_loop())
    late = batcher.submit(rows(1), 1, (4,), None)  # queued for the end of this loop turn
    assert batcher.close(5)  # closed before that turn ends, without stop_accepting()
    with pytest.raises(Unavailable, match="is unloading"):
        await late


async def test_expired_requests_are_dropped_not_run() -> None:
    run, batcher, blocker = await busy(BatchPolicy())
    doomed = batcher.submit(rows(1), 1, (4,), time.monotonic() + 0.01)
    await asyncio.sleep(0.05)
    run.gate.set()
    await blocker
    with pytest.raises(DeadlineExceeded, match="deadline passed while it waited"):
        await doomed
    assert run.batches == [1]
    assert batcher.stats.dropped_deadline == 1


async def test_full_queue_is_resource_exhausted_and_closing_is_unavailable() -> None:
    run, batcher, running = await busy(BatchPolicy(queue_limit=2))
    waiting = [batcher.submit(rows(1), 1, (4,), None) for _ in range(2)]
    with pytest.raises(ResourceExhausted, match="queue is full"):
        batcher.submit(rows(1), 1, (4,), None)
    run.gate.set()
    batcher.stop_accepting()  # on the loop: what this turn submitted is queued, then nothing more
    drained = await asyncio.to_thread(batcher.close, 5)
    assert drained
    await asyncio.gather(running, *waiting)  # everything queued before close still answered
    with pytest.raises(Unavailable):
        batcher.submit(rows(1), 1, (4,), None)


async def test_a_failing_run_fails_its_requests_only() -> None:
    def broken(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise RuntimeError("boom")

    batcher = Batcher("m", [broken], BatchPolicy(), asyncio.get_running_loop())
    with pytest.raises(RuntimeError, match="boom"):
        await batcher.submit(rows(1), 1, (4,), None)
    batcher.close(5)


async def test_queue_delay_waits_for_a_preferred_batch() -> None:
    run = Recorder()
    policy = BatchPolicy(max_batch_size=8, preferred_batch_sizes=(4,), max_queue_delay_s=0.5)
    batcher = Batcher("m", [run], policy, asyncio.get_running_loop())
    futures = []
    for _ in range(4):
        futures.append(batcher.submit(rows(1), 1, (4,), None))
        await asyncio.sleep(0.01)
    await asyncio.gather(*futures)
    assert run.batches == [4]
    batcher.close(5)


def _light_provider(tmp_path: Path) -> JsonLinesTracerProvider:
    return JsonLinesTracerProvider(
        service_resource(ServiceSettings()), ParentBased(ALWAYS_ON), tmp_path / "spans.jsonl", schedule_delay=60
    )


async def test_the_request_span_carries_queue_wait_batch_size_and_run_time(tmp_path: Path) -> None:
    provider = _light_provider(tmp_path)
    tracer = provider.get_tracer("test")
    batcher = Batcher("m", [Recorder()], BatchPolicy(), asyncio.get_running_loop())
    spans = [tracer.start_span(f"request-{i}") for i in range(3)]
    futures = []
    for span in spans:
        with trace.use_span(span):
            futures.append(batcher.submit(rows(2), 2, (4,), None))
    await asyncio.gather(*futures)
    for span in spans:
        span.end()
    provider.shutdown()
    written = [json.loads(line) for line in (tmp_path / "spans.jsonl").read_text().splitlines()]
    assert sorted(s["name"] for s in written) == ["request-0", "request-1", "request-2"], "no per-batch spans"
    for span in written:
        attributes = span["attributes"]
        assert attributes["inference.model"] == "m"
        assert attributes["inference.batch_requests"] == 3 and attributes["inference.batch_rows"] == 6
        assert attributes["inference.queue_wait_us"] >= 0 and attributes["inference.run_us"] >= 0
    batcher.close(5)


async def test_per_batch_spans_when_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = _light_provider(tmp_path)
    tracer = provider.get_tracer("test")
    monkeypatch.setattr(batcher_module, "tracer", tracer)
    batcher = Batcher("m", [Recorder()], BatchPolicy(trace_spans=True), asyncio.get_running_loop())
    with tracer.start_as_current_span("request") as request:
        await batcher.submit(rows(1), 1, (4,), None)
    provider.shutdown()
    written = {s["name"]: s for s in map(json.loads, (tmp_path / "spans.jsonl").read_text().splitlines())}
    assert set(written) == {"request", "inference.batch", "inference.queue_wait", "inference.ort_run"}
    request_id = format(request.get_span_context().span_id, "016x")
    assert written["inference.batch"]["parent_id"] == request_id
    batch_id = written["inference.batch"]["span_id"]
    assert written["inference.queue_wait"]["parent_id"] == written["inference.ort_run"]["parent_id"] == batch_id
    batcher.close(5)
