"""Warm worker processes (started with ``spawn``) that run training jobs.

The server keeps ``max_concurrent_jobs`` workers alive; each imports torch once and then runs jobs one
after another, so a job does not pay a process start. A worker gets ``JobTask``s on its own task queue,
reports on a shared event queue (``WorkerEvent`` tuples), and watches a per-worker cancel event between
batches. A job with world_size > 1 spawns one process per DDP rank (gloo on CPU, NCCL on CUDA) that meet
through a TCPStore the worker binds on a free loopback port.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import logging
import multiprocessing
import os
import queue
import traceback
from typing import Any

from aiaas_services.training.paths import JobRequest

log = logging.getLogger(__name__)

# Event kinds a worker sends: (kind, slot, job_id, payload)
EPOCH, MESSAGE, STARTED, DONE, FAILED, CANCELLED = "epoch", "message", "started", "done", "failed", "cancelled"
READY = "ready"  # a worker finished its imports: (READY, slot, "", pid)
KNOWN_ERRORS = ("ConfigError", "SpecError", "DataError")


@dataclasses.dataclass(frozen=True)
class JobTask:
    """A job handed to a worker, with the W3C carrier of the request that started it."""

    request: JobRequest
    carrier: dict[str, str]


@dataclasses.dataclass(frozen=True)
class WorkerContext:
    """What a worker process is started with (all picklable)."""

    slot: int
    tasks: Any  # multiprocessing Queue of JobTask | None
    events: Any  # multiprocessing SimpleQueue of (kind, slot, job_id, payload)
    cancel: Any  # multiprocessing Event
    settings: Any  # TrainingSettings, for tracing and logging set-up
    parent_pid: int


def failure_reason(exc: BaseException) -> str:
    """A reason a person can act on: the message of our own errors, the type of anything else."""
    if type(exc).__name__ in KNOWN_ERRORS or isinstance(exc, (ValueError, RuntimeError, FileNotFoundError)):
        return f"{type(exc).__name__}: {exc}"[:500]
    return f"internal error in the training worker ({type(exc).__name__}); see the training service log"


def worker_main(context: WorkerContext) -> None:
    """Entry point of a pooled worker process."""
    from aiaas_services.runtime.logs import configure_logging

    configure_logging("training-worker", context.settings.log_level, context.settings.log_json)
    _warm_up(context.settings.torch_threads)  # before tracing is set up: its spans are not recorded
    from aiaas_services.runtime import tracing

    flush = tracing.setup_worker_tracing(context.settings)
    # Everything imported so far lives as long as the worker: move it out of the collector's reach.
    # A full collection walked these ~350k objects (torch, scikit-learn, gRPC) in 85-165 ms, and one
    # fell inside most jobs; after the freeze it walks only what the job itself keeps.
    gc.collect()
    gc.freeze()
    context.events.put((READY, context.slot, "", os.getpid()))
    while True:
        try:
            task = context.tasks.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != context.parent_pid:
                return  # the server is gone; do not linger as an orphan
            continue
        if task is None:
            return
        try:
            _run_task(context, task)
        finally:
            flush()


def _warm_up(torch_threads: int) -> None:
    """Train a one-epoch model on iris in a throw-away folder, so that the imports, kernels and the PNG
    encoder a job needs are loaded and set up before the first real job, not inside it."""
    import tempfile

    from aiaas.training.v1 import training_pb2
    from aiaas_services.training.job import run_job
    from aiaas_services.training.trainer import Hooks

    spec = training_pb2.TrainingSpec(model_name="warm-up", epochs=1, batch_size=32, seed=1)
    spec.architecture.mlp.hidden_sizes.append(8)
    spec.data.sklearn = "iris"
    try:
        with tempfile.TemporaryDirectory(prefix="aiaas-warm-up-") as folder:
            run_job(JobRequest("warm-up", spec.SerializeToString(), folder, torch_threads=torch_threads), Hooks())
    except Exception:  # noqa: BLE001 - a worker that could not warm up still serves; its first job pays
        log.warning("training worker warm-up failed; continuing cold:\n%s", traceback.format_exc())


def _run_task(context: WorkerContext, task: JobTask) -> None:
    from opentelemetry import trace

    from aiaas_services.runtime import tracing
    from aiaas_services.training.trainer import Cancelled, Hooks

    job_id = task.request.job_id
    events = context.events

    def cancelled() -> bool:
        return bool(context.cancel.is_set()) or os.getppid() != context.parent_pid

    hooks = Hooks(
        on_epoch=lambda record: events.put((EPOCH, context.slot, job_id, record)),
        on_message=lambda text: events.put((MESSAGE, context.slot, job_id, text)),
        cancelled=cancelled,
    )
    tracer = trace.get_tracer(__name__)
    parent = tracing.context_from_carrier(task.carrier)
    with tracer.start_as_current_span("training.job", context=parent) as span:
        span.set_attribute("training.job_id", job_id)
        events.put((STARTED, context.slot, job_id, {"pid": os.getpid()}))
        try:
            world_size = _world_size(task.request)
            if world_size > 1:
                result = _run_distributed(context, task, world_size)
            else:
                from aiaas_services.training.job import run_job

                result = run_job(task.request, hooks)
        except Cancelled:
            events.put((CANCELLED, context.slot, job_id, "cancelled while training"))
            return
        except Exception as exc:  # noqa: BLE001 - the job fails; the worker lives on for the next job
            log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            span.record_exception(exc)
            events.put((FAILED, context.slot, job_id, failure_reason(exc)))
            return
        events.put((DONE, context.slot, job_id, result))


def _world_size(request: JobRequest) -> int:
    from aiaas.training.v1 import training_pb2

    return max(1, training_pb2.TrainingSpec.FromString(request.spec_bytes).world_size)


DDP_TIMEOUT = datetime.timedelta(seconds=60)  # a collective waiting longer than this means a rank is gone


def _backend(request: JobRequest, rank: int) -> str:
    """gloo on the CPU; NCCL when CUDA is there and the job may use it (one GPU per rank)."""
    import torch

    if torch.cuda.is_available() and _spec_device(request) != "cpu":
        torch.cuda.set_device(rank % torch.cuda.device_count())
        return "nccl"
    return "gloo"


def _run_distributed(context: WorkerContext, task: JobTask, world_size: int) -> dict[str, Any]:
    """Rank 0 runs here, in the warm worker; ranks 1..n-1 are spawned and meet it through a TCPStore that
    this process binds on a free loopback port (port 0: no race)."""
    import torch.distributed as dist

    from aiaas_services.training.job import run_job
    from aiaas_services.training.trainer import Distributed, Hooks

    store = dist.TCPStore("127.0.0.1", 0, world_size, is_master=True, timeout=DDP_TIMEOUT, wait_for_workers=False)
    ctx = multiprocessing.get_context("spawn")
    helpers = [
        ctx.Process(
            target=rank_main,
            args=(rank, world_size, store.port, task, context.cancel),
            name=f"training-rank{rank}",
        )
        for rank in range(1, world_size)
    ]
    for process in helpers:
        process.start()
    job_id = task.request.job_id
    hooks = Hooks(
        on_epoch=lambda record: context.events.put((EPOCH, context.slot, job_id, record)),
        on_message=lambda text: context.events.put((MESSAGE, context.slot, job_id, text)),
        cancelled=lambda: bool(context.cancel.is_set()) or os.getppid() != context.parent_pid,
    )
    try:
        dist.init_process_group(
            _backend(task.request, 0), store=store, rank=0, world_size=world_size, timeout=DDP_TIMEOUT
        )
        try:
            result = run_job(task.request, hooks, Distributed(0, world_size))
        finally:
            dist.destroy_process_group()
    except RuntimeError as exc:
        dead = [f"{p.name} (exit code {p.exitcode})" for p in helpers if p.exitcode not in (None, 0)]
        if dead:
            raise RuntimeError(f"distributed training failed: DDP rank process {', '.join(dead)} died") from exc
        raise
    finally:
        for process in helpers:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
    result["world_size"] = world_size
    return result


def rank_main(rank: int, world_size: int, port: int, task: JobTask, cancel: Any) -> None:
    """A helper DDP rank (1..n-1): join the group, train its shard, leave. Rank 0 reports for the job."""
    import torch.distributed as dist

    from aiaas_services.training.job import run_job
    from aiaas_services.training.trainer import Cancelled, Distributed, Hooks

    store = dist.TCPStore("127.0.0.1", port, world_size, is_master=False, timeout=DDP_TIMEOUT)
    dist.init_process_group(
        _backend(task.request, rank), store=store, rank=rank, world_size=world_size, timeout=DDP_TIMEOUT
    )
    try:
        run_job(task.request, Hooks(cancelled=lambda: bool(cancel.is_set())), Distributed(rank, world_size))
    except Cancelled:
        pass  # every rank sees the same cancel flag (all-reduced); rank 0 reports it
    except Exception:
        log.error("rank %s of job %s failed:\n%s", rank, task.request.job_id, traceback.format_exc())
        raise
    finally:
        dist.destroy_process_group()


def _spec_device(request: JobRequest) -> str:
    from aiaas.training.v1 import training_pb2

    return (training_pb2.TrainingSpec.FromString(request.spec_bytes).device or "auto").lower()
