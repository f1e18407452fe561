"""The training service's pool of warm worker processes (``spawn``ed), and the thread that reads their events.

The job engine decides what runs where; this module only starts, watches and stops the processes and
hands their events and exits to the engine's callbacks on the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import os
import threading
from collections.abc import Callable
from typing import Any

from aiaas_services.training.settings import TrainingSettings
from aiaas_services.training.worker import WorkerContext, worker_main


@dataclasses.dataclass
class Slot:
    """One warm worker process and the job it runs."""

    index: int
    process: Any = None
    tasks: Any = None
    cancel: Any = None
    job_id: str | None = None
    crashes: int = 0  # exits in a row without becoming ready: respawns back off


class WorkerPool:
    """``max_concurrent_jobs`` worker processes; ``on_event(kind, slot, job_id, payload)`` and
    ``on_exit(slot, process)`` are called on the event loop."""

    def __init__(
        self,
        settings: TrainingSettings,
        on_event: Callable[..., None],
        on_exit: Callable[[Slot, Any], None],
    ) -> None:
        self.settings = settings
        self.slots = [Slot(i) for i in range(max(1, settings.max_concurrent_jobs))]
        self._on_event = on_event
        self._on_exit = on_exit
        self._ctx = multiprocessing.get_context("spawn")
        self._events: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: threading.Thread | None = None
        self._closing = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Spawn every worker and start reading their events."""
        self._loop = loop
        # A SimpleQueue: a worker's put pickles and writes on its own thread (a Queue's feeder thread
        # would take the GIL from the training loop for each epoch event).
        self._events = self._ctx.SimpleQueue()
        for slot in self.slots:
            self.spawn(slot)
        self._reader = threading.Thread(target=self._read_events, name="training-events", daemon=True)
        self._reader.start()

    async def close(self) -> None:
        """Stop the workers (a running job is interrupted; it resumes from its checkpoint later)."""
        self._closing = True
        for slot in self.slots:
            if slot.tasks is not None:
                slot.tasks.put(None)
        await asyncio.to_thread(self._stop_workers)
        if self._events is not None:
            # from a daemon thread: a worker killed in the middle of a put leaves the queue's lock taken
            threading.Thread(target=self._events.put, args=(None,), daemon=True).start()
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join, 5)

    def spawn(self, slot: Slot) -> None:
        """Start a fresh worker process in ``slot``."""
        slot.tasks = self._ctx.Queue()
        slot.cancel = self._ctx.Event()
        context = WorkerContext(slot.index, slot.tasks, self._events, slot.cancel, self.settings, os.getpid())
        slot.process = self._ctx.Process(target=worker_main, args=(context,), name=f"training-worker-{slot.index}")
        slot.process.start()
        slot.job_id = None
        threading.Thread(target=self._watch_process, args=(slot, slot.process), daemon=True).start()

    def _stop_workers(self) -> None:
        for slot in self.slots:
            process = slot.process
            if process is None:
                continue
            if slot.job_id is not None and process.is_alive():
                process.terminate()  # interrupt the job; it resumes from its checkpoint later
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)

    def _watch_process(self, slot: Slot, process: Any) -> None:
        process.join()
        if not self._closing and self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_exit, slot, process)

    def _read_events(self) -> None:
        while True:
            try:
                event = self._events.get()
            except (EOFError, OSError):
                return
            if event is None:
                return
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._on_event, *event)
