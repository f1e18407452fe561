"""Inside a warm training worker process: warm up, then run the jobs the server hands over.

Each worker imports torch once and then runs jobs one after another, so a job does not pay a process
start. A job with world_size > 1 spawns one process per DDP rank (gloo on CPU, NCCL on CUDA) that meet
through a TCPStore the worker binds on a free loopback port.
"""

from __future__ import annotations

import datetime
import gc
import logging
import multiprocessing
import os
import queue
import tempfile
import traceback
from typing import Any

import torch
import torch.distributed as dist
from opentelemetry import trace

from aiaas_services.runtime import tracing
from aiaas_services.runtime.logs import configure_logging
from aiaas_services.training.job import run_job
from aiaas_services.training.paths import JobRequest
from aiaas_services.training.spec import JobSpec, TrainConfig
from aiaas_services.training.trainer import Cancelled, Distributed, Hooks
from aiaas_services.training.worker import (
    CANCELLED,
    DONE,
    EPOCH,
    FAILED,
    MESSAGE,
    READY,
    STARTED,
    JobTask,
    WorkerContext,
    failure_reason,
)

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


def main(context: WorkerContext) -> None:
    """Run a pooled worker until the server sends None or goes away."""
    configure_logging("training-worker", context.settings.log_level, context.settings.log_json)
    _warm_up(context.settings.torch_threads)  # before tracing is set up: its spans are not recorded
    flush = tracing.setup_worker_tracing(context.settings)
    # Everything imported so far lives as long as the worker: move it out of the collector's reach, so
    # a full collection inside a job walks only what the job itself keeps.
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
    spec = JobSpec(
        model_name="warm-up",
        architecture={"kind": "mlp", "hidden_sizes": [8], "activation": "relu", "dropout": 0.0},
        data={"sklearn": "iris"},
        train=TrainConfig(epochs=1, batch_size=32, seed=1),
    )
    try:
        with tempfile.TemporaryDirectory(prefix="aiaas-warm-up-") as folder:
            run_job(JobRequest("warm-up", spec, folder, torch_threads=torch_threads), Hooks())
    except Exception:  # noqa: BLE001 - a worker that could not warm up still serves; its first job pays
        log.warning("training worker warm-up failed; continuing cold:\n%s", traceback.format_exc())


def _run_task(context: WorkerContext, task: JobTask) -> None:
    job_id = task.request.job_id
    events = context.events

    def cancelled() -> bool:
        return bool(context.cancel.is_set()) or os.getppid() != context.parent_pid

    hooks = Hooks(
        on_epoch=lambda record: events.put((EPOCH, context.slot, job_id, record)),
        on_message=lambda text: events.put((MESSAGE, context.slot, job_id, text)),
        cancelled=cancelled,
    )
    parent = tracing.context_from_carrier(task.carrier)
    with tracer.start_as_current_span("training.job", context=parent) as span:
        span.set_attribute("training.job_id", job_id)
        events.put((STARTED, context.slot, job_id, {"pid": os.getpid()}))
        try:
            world_size = task.request.spec.train.world_size
            result = _run_distributed(context, task, world_size) if world_size > 1 else run_job(task.request, hooks)
        except Cancelled:
            events.put((CANCELLED, context.slot, job_id, "cancelled while training"))
            return
        except Exception as exc:  # noqa: BLE001 - the job fails; the worker lives on for the next job
            log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            span.record_exception(exc)
            events.put((FAILED, context.slot, job_id, failure_reason(exc)))
            return
        events.put((DONE, context.slot, job_id, result))


DDP_TIMEOUT = datetime.timedelta(seconds=60)  # a collective waiting longer than this means a rank is gone


def _backend(request: JobRequest, rank: int) -> str:
    """gloo on the CPU; NCCL when CUDA is there and the job may use it (one GPU per rank)."""
    if torch.cuda.is_available() and request.spec.train.device != "cpu":
        torch.cuda.set_device(rank % torch.cuda.device_count())
        return "nccl"
    return "gloo"


def _run_distributed(context: WorkerContext, task: JobTask, world_size: int) -> dict[str, Any]:
    """Rank 0 runs here, in the warm worker; ranks 1..n-1 are spawned and meet it through a TCPStore that
    this process binds on a free loopback port (port 0: no race)."""
    store = dist.TCPStore(  # type: ignore[attr-defined]
        "127.0.0.1", 0, world_size, is_master=True, timeout=DDP_TIMEOUT, wait_for_workers=False
    )
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
    store = dist.TCPStore(  # type: ignore[attr-defined]
        "127.0.0.1", port, world_size, is_master=False, timeout=DDP_TIMEOUT
    )
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
