"""What the server and its warm worker processes say to each other (light: no torch here).

The server keeps ``max_concurrent_jobs`` workers alive (``worker_process.py`` runs inside each); a worker
gets ``JobTask``s on its own task queue, reports on a shared event queue as (kind, slot, job_id, payload)
tuples, and watches a per-worker cancel event between batches.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiaas_services.training.paths import JobRequest

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
    # Imported in the child only: torch and the training loop stay out of the server process.
    from aiaas_services.training import worker_process

    worker_process.main(context)
