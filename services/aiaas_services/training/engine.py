"""The job engine: queue, state machine, events, cancel, restart recovery.

Runs on the server's event loop but never trains there: jobs go to the warm worker processes of
``pool.py``, whose events come back to the loop.
State lives in SQLite (``store.py``) so jobs survive the client and the server. What happens after
training (registry upload, export request) is done by a ``Publisher`` passed in (``publishing.py``),
so this module knows nothing of gRPC.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from opentelemetry import propagate, trace

from aiaas_services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable
from aiaas_services.training.paths import (
    CHECKPOINT_FILE,
    DATASET_FILE,
    RESULT_DIR,
    SOURCE_DIR,
    TEXT_CHECKPOINT_FILE,
    JobRequest,
)
from aiaas_services.training.pool import Slot, WorkerPool
from aiaas_services.training.publishing import Publisher, PublishError
from aiaas_services.training.settings import TrainingSettings
from aiaas_services.training.spec import ConfigError, JobSpec
from aiaas_services.training.store import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    EventRecord,
    JobRecord,
    JobStore,
)
from aiaas_services.training.text import checks as text_checks
from aiaas_services.training.worker import (
    CANCELLED as W_CANCELLED,
)
from aiaas_services.training.worker import (
    DONE,
    EPOCH,
    MESSAGE,
    READY,
    STARTED,
    JobTask,
)
from aiaas_services.training.worker import (
    FAILED as W_FAILED,
)

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


class JobEngine:
    """Everything about jobs except the wire format."""

    def __init__(self, settings: TrainingSettings, publisher: Publisher) -> None:
        self.settings = settings
        self.publisher = publisher
        self.root = settings.home_path / "training"
        self.store = JobStore(self.root / "jobs.db")
        self._queue: collections.deque[str] = collections.deque()
        self._pool = WorkerPool(settings, self._on_event, self._on_worker_exit)
        self._slots = self._pool.slots
        self._waiters: dict[str, set[asyncio.Event]] = collections.defaultdict(set)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._draining = False
        self._publishing: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- life cycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the worker pool, then resume what a previous run left behind."""
        self._loop = asyncio.get_running_loop()
        self._pool.start(self._loop)
        self._recover()
        self._schedule()

    def drain_watchers(self) -> None:
        """End every open WatchJob stream (UNAVAILABLE; clients resume after their last sequence)."""
        self._draining = True
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.set()

    async def close(self) -> None:
        """Stop the workers. Running jobs stay RUNNING in the database and resume on the next start."""
        self._closing = True
        await self._pool.close()
        for task in list(self._tasks):
            task.cancel()
        self.store.close()

    def _recover(self) -> None:
        """RUNNING jobs of a previous run: publish those that finished training, resume the others from
        their last epoch checkpoint; QUEUED jobs are queued again, in order."""
        for job in self.store.in_states(RUNNING, QUEUED):
            job_dir = self.job_dir(job.job_id)
            if job.state == RUNNING and (job_dir / RESULT_DIR / "result.json").exists():
                self._note(job, "the service restarted after training finished; registering the checkpoint")
                self._start_publish(job, after_restart=True)
                continue
            if job.state == RUNNING:
                checkpoint = job_dir / CHECKPOINT_FILE
                where = f"its checkpoint of epoch {job.current_epoch}" if checkpoint.exists() else "the start"
                self._note(job, f"the service restarted while the job ran; it resumes from {where}")
                self._transition(job, QUEUED, "requeued after a service restart")
            self._queue.append(job.job_id)

    # -- requests -------------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    async def submit(
        self,
        spec: JobSpec,
        request_id: str = "",
        carrier: dict[str, str] | None = None,
        trace_id: str = "",
        request: bytes = b"",
    ) -> JobRecord:
        """Check and queue a job; returns it QUEUED (or the earlier job with the same request_id).
        ``request`` is the request as sent, kept for the API to echo."""
        if request_id:
            earlier = self.store.by_request_id(request_id)
            if earlier is not None:
                return earlier
        try:
            spec.check(max_epochs=self.settings.max_epochs, max_world_size=self.settings.max_world_size)
        except ConfigError as exc:
            raise InvalidArgument(str(exc)) from None
        config = spec.train
        if config.device.startswith("cuda") and not await asyncio.to_thread(_cuda_available):
            raise FailedPrecondition(f"spec.device={config.device!r} but this training service has no CUDA device")
        if self.store.count(QUEUED) >= self.settings.max_queued_jobs:
            raise ResourceExhausted(
                f"the training queue is full ({self.settings.max_queued_jobs} jobs waiting); retry later"
            )
        job_id = uuid.uuid4().hex
        if spec.text is not None:
            spec = await text_checks.check_text_job(spec, self.publisher, self.job_dir(job_id))
        job = JobRecord(
            job_id=job_id,
            state=QUEUED,
            spec=spec,
            request=request,
            created_at=time.time(),
            request_id=request_id or None,
            total_epochs=config.epochs,
            trace_id=trace_id,
            carrier=carrier or {},
        )
        self.store.insert(job)
        self._append(job, "state_changed", "queued")
        self._queue.append(job.job_id)
        self._schedule()
        return job

    def get(self, job_id: str) -> JobRecord:
        job = self.store.get(job_id) if job_id else None
        if job is None:
            raise NotFound(f"training job {job_id!r} does not exist")
        return job

    def history(self, job_id: str) -> list[dict[str, Any]]:
        return [event.payload for event in self.store.events(job_id, kind="epoch")]

    def list_jobs(self, page_size: int, page_token: str, state: str | None) -> tuple[list[JobRecord], str]:
        size = page_size or 50
        if not 1 <= size <= 1000:
            raise InvalidArgument(f"page_size must be between 1 and 1000, got {page_size}")
        try:
            before = int(page_token) if page_token else None
        except ValueError:
            raise InvalidArgument("page_token is not one this service issued") from None
        jobs = self.store.list_jobs(size + 1, before, state)
        next_token = str(jobs[size - 1].seq) if len(jobs) > size else ""
        return jobs[:size], next_token

    async def cancel(self, job_id: str, wait_seconds: float = 15.0) -> JobRecord:
        """Cancel a queued job at once; interrupt a running one between batches and wait for it."""
        job = self.get(job_id)
        if job.state in TERMINAL:
            return job
        if job.state == QUEUED:
            if job_id in self._queue:
                self._queue.remove(job_id)
            self._transition(job, CANCELLED, "cancelled by request while queued")
            return job
        if job_id in self._publishing:
            self._note(job, "cancel requested after training finished; the checkpoint is being registered")
            return job
        slot = next((s for s in self._slots if s.job_id == job_id), None)
        if slot is None:
            self._queue_remove(job_id)
            self._transition(job, CANCELLED, "cancelled by request")
            return job
        slot.cancel.set()
        waiter = asyncio.Event()
        self._waiters[job_id].add(waiter)
        deadline = time.monotonic() + wait_seconds
        try:
            while time.monotonic() < deadline:
                job = self.get(job_id)
                if job.state in TERMINAL:
                    break
                waiter.clear()
                try:
                    await asyncio.wait_for(waiter.wait(), timeout=max(0.01, deadline - time.monotonic()))
                except TimeoutError:
                    break
        finally:
            self._waiters[job_id].discard(waiter)
        return self.get(job_id)

    async def watch(self, job_id: str, after_sequence: int = 0) -> AsyncIterator[EventRecord]:
        """History after ``after_sequence`` first, then live events, until the job has ended."""
        self.get(job_id)
        if after_sequence < 0:
            raise InvalidArgument("after_sequence must not be negative")
        last = after_sequence
        waiter = asyncio.Event()
        self._waiters[job_id].add(waiter)
        try:
            while True:
                waiter.clear()
                for event in self.store.events(job_id, last):
                    yield event
                    last = event.sequence
                if self.get(job_id).state in TERMINAL and not self.store.events(job_id, last):
                    return
                if self._draining:
                    raise Unavailable(f"the training service is shutting down; watch again with after_sequence={last}")
                await waiter.wait()
        finally:
            self._waiters[job_id].discard(waiter)
            if not self._waiters[job_id]:
                del self._waiters[job_id]

    # -- state machine --------------------------------------------------------------------------
    def _append(self, job: JobRecord, kind: str, payload: Any) -> None:
        self.store.append_event(job.job_id, job.state, kind, payload)
        for waiter in self._waiters.get(job.job_id, ()):
            waiter.set()

    def _note(self, job: JobRecord, text: str) -> None:
        self._append(job, "message", text)

    def _transition(self, job: JobRecord, state: str, reason: str = "") -> None:
        job.state = state
        now = time.time()
        if state == RUNNING and job.started_at is None:
            job.started_at = now
        if state in TERMINAL:
            job.finished_at = now
            if state != SUCCEEDED:
                job.failure_reason = reason
        self.store.update(job)
        self._append(job, "state_changed", reason or state.lower())

    def _queue_remove(self, job_id: str) -> None:
        if job_id in self._queue:
            self._queue.remove(job_id)

    def _schedule(self) -> None:
        """Hand queued jobs to idle, live workers."""
        if self._closing:
            return
        for slot in self._slots:
            if not self._queue:
                return
            if slot.job_id is not None or slot.process is None or not slot.process.is_alive():
                continue
            job_id = self._queue.popleft()
            job = self.store.get(job_id)
            if job is None or job.state != QUEUED:
                continue
            slot.job_id = job_id
            slot.cancel.clear()
            self._spawn_task(self._dispatch(slot, job))

    def _spawn_task(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dispatch(self, slot: Slot, job: JobRecord) -> None:
        job_dir = self.job_dir(job.job_id)
        job_dir.mkdir(parents=True, exist_ok=True)
        self._transition(job, RUNNING, "running")
        if job.spec.dataset is not None and not (job_dir / DATASET_FILE).exists():
            try:
                payload = await self.publisher.fetch_dataset(job.spec.dataset)
            except PublishError as exc:
                slot.job_id = None
                self._transition(job, FAILED, f"could not fetch the dataset: {exc}")
                self._schedule()
                return
            await asyncio.to_thread(_write_atomically, job_dir / DATASET_FILE, payload)
        if job.spec.text is not None and job.spec.text.source is not None:
            try:
                await text_checks.fetch_source(job.spec.text.source, self.publisher, job_dir)
            except PublishError as exc:
                slot.job_id = None
                self._transition(job, FAILED, f"could not fetch the {job.spec.text.role}: {exc}")
                self._schedule()
                return
        request = JobRequest(job.job_id, job.spec, str(job_dir), resume=True, torch_threads=self.settings.torch_threads)
        slot.tasks.put(JobTask(request, job.carrier))

    def _slot_of(self, slot_index: int, job_id: str) -> Slot | None:
        slot = self._slots[slot_index]
        return slot if slot.job_id == job_id else None

    def _on_event(self, kind: str, slot_index: int, job_id: str, payload: Any) -> None:
        if kind == READY:
            self._slots[slot_index].crashes = 0
            return
        slot = self._slot_of(slot_index, job_id)
        job = self.store.get(job_id)
        if slot is None or job is None or job.state in TERMINAL:
            return  # a late event of a job that has already ended (e.g. its worker died)
        if kind == STARTED:
            return
        if kind == EPOCH:
            if int(payload["epoch"]) <= job.current_epoch:
                return  # replayed after a resume; already recorded
            job.current_epoch = int(payload["epoch"])
            self.store.update(job)
            self._append(job, "epoch", payload)
            return
        if kind == MESSAGE:
            self._note(job, str(payload))
            return
        slot.job_id = None
        if kind == DONE:
            job.result.update(payload)
            self.store.update(job)
            self._start_publish(job)
        elif kind == W_FAILED:
            self._transition(job, FAILED, str(payload))
        elif kind == W_CANCELLED:
            self._transition(job, CANCELLED, "cancelled by request")
        self._schedule()

    def _on_worker_exit(self, slot: Slot, process: Any) -> None:
        if self._closing or slot.process is not process:
            return
        job_id = slot.job_id
        if job_id is not None:
            job = self.store.get(job_id)
            if job is not None and job.state not in TERMINAL:
                self._transition(job, FAILED, f"the worker process running the job died (exit code {process.exitcode})")
        slot.crashes += 1
        slot.job_id = None
        delay = 0.0 if slot.crashes == 1 else min(30.0, 2.0 ** (slot.crashes - 1))
        log.warning(
            "training worker %s exited with code %s; starting a new one in %.0fs", slot.index, process.exitcode, delay
        )
        slot.process = None
        assert self._loop is not None
        self._loop.call_later(delay, self._respawn, slot)

    def _respawn(self, slot: Slot) -> None:
        if self._closing or slot.process is not None:
            return
        self._pool.spawn(slot)
        self._schedule()

    def _start_publish(self, job: JobRecord, after_restart: bool = False) -> None:
        self._publishing.add(job.job_id)
        self._spawn_task(self._publish(job, after_restart))

    async def _publish(self, job: JobRecord, after_restart: bool = False) -> None:
        result_dir = self.job_dir(job.job_id) / RESULT_DIR
        try:
            if not job.result:
                job.result = json.loads((result_dir / "result.json").read_text())
            self._note(job, "training finished; registering the checkpoint")
            parent = propagate.extract(dict(job.carrier))
            with tracer.start_as_current_span("training.register", context=parent) as span:
                span.set_attribute("training.job_id", job.job_id)
                published = await self.publisher.publish(job, result_dir, after_restart)
        except PublishError as exc:
            self._transition(job, FAILED, f"registering the checkpoint failed: {exc}")
            return
        except Exception:
            log.exception("registering job %s failed", job.job_id)
            self._transition(job, FAILED, "registering the checkpoint failed (internal error; see the service log)")
            return
        finally:
            self._publishing.discard(job.job_id)
        job.result["registered"] = {"model_name": published.model_name, "version": published.version}
        job.result["export_job_id"] = published.export_job_id
        self.store.update(job)
        self._note(job, f"registered {published.model_name} version {published.version}")
        for text in published.messages:
            self._note(job, text)
        self._transition(job, SUCCEEDED, "succeeded")
        checkpoint = self.job_dir(job.job_id) / CHECKPOINT_FILE
        checkpoint.unlink(missing_ok=True)
        if job.spec.text is not None:  # the base/teacher copy and the epoch state are not needed any more
            (self.job_dir(job.job_id) / TEXT_CHECKPOINT_FILE).unlink(missing_ok=True)
            shutil.rmtree(self.job_dir(job.job_id) / SOURCE_DIR, ignore_errors=True)

    def remove_job_files(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)


def _write_atomically(path: Path, payload: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


def _cuda_available() -> bool:
    import torch  # only when a job asks for CUDA: the server does not load torch otherwise

    return bool(torch.cuda.is_available())
