"""Export jobs: accept, queue, run in spawned worker processes, cancel, and replay/stream their events.

The job database is the single source of truth; a worker writes its progress there and this module
polls it for watchers. Versions a job creates are recorded, so when a job dies (worker crash, cancel,
service restart) its PENDING versions are moved to FAILED and nothing half-made is ever READY.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import time
from collections.abc import AsyncIterator
from multiprocessing.process import BaseProcess

import numpy as np
from opentelemetry import propagate, trace

from aiaas.client.registry import RegistryClient
from aiaas.wire import FAILED as VERSION_FAILED
from aiaas.wire import HF, ONNX, PENDING, PYTORCH_CHECKPOINT
from aiaas_services.modelzoo import SpecError, validate_spec
from aiaas_services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from aiaas_services.serialization import options as request_options
from aiaas_services.serialization.pipeline import inputs, structured
from aiaas_services.serialization.records import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    Calibration,
    EventRecord,
    ExportRequest,
    JobRecord,
    Ref,
)
from aiaas_services.serialization.registration import translate
from aiaas_services.serialization.settings import SerializationSettings
from aiaas_services.serialization.store import JobStore
from aiaas_services.serialization.text import TEXT_VARIANTS
from aiaas_services.serialization.text import calibration as sentences_file
from aiaas_services.serialization.worker import serve_jobs

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

WATCH_POLL_SECONDS = 0.2


class WarmWorker:
    """A spawned worker process that has already imported torch and warmed up the exporter."""

    def __init__(self, settings: SerializationSettings) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process: BaseProcess = context.Process(
            target=serve_jobs, args=(settings, child), name="export-worker", daemon=True
        )
        self.process.start()
        child.close()
        self.job_id = ""
        self._ready = False

    async def run(self, job_id: str) -> bool:
        """Run one job; False when the process died (crash, or terminated by a cancel)."""
        self.job_id = job_id
        try:
            if not self._ready:
                await asyncio.to_thread(self._expect, "ready")
                self._ready = True
            await asyncio.to_thread(self.connection.send, job_id)
            await asyncio.to_thread(self._expect, "done")
            return True
        except (EOFError, OSError, BrokenPipeError):
            return False
        finally:
            self.job_id = ""

    def _expect(self, word: str) -> None:
        if self.connection.recv() != word:
            raise EOFError(f"worker protocol: expected {word!r}")

    def stop(self, kill: bool = False) -> None:
        """Ask the process to exit (or terminate it at once)."""
        if kill or self.job_id:
            self.process.terminate()
        else:
            with contextlib.suppress(OSError, BrokenPipeError):
                self.connection.send(None)

    def reap(self, timeout: float = 10.0) -> None:
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.connection.close()


class ExportJobs:
    """The job side of the serialization service."""

    def __init__(self, settings: SerializationSettings, store: JobStore, registry: RegistryClient) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self._idle: list[WarmWorker] = []
        self._busy: dict[str, WarmWorker] = {}
        self._supervisors: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._scheduler: asyncio.Task[None] | None = None
        self._closing = False

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Fail jobs a previous process left RUNNING (their workers died with it), then schedule."""
        for job_id in await asyncio.to_thread(self.store.ids_in_state, RUNNING):
            await asyncio.to_thread(
                self._finish,
                job_id,
                FAILED,
                "the serialization service stopped while this job ran",
            )
            self._spawn_cleanup(job_id, "the serialization service stopped during the export")
        self._idle = [WarmWorker(self.settings) for _ in range(max(1, self.settings.max_concurrent_jobs))]
        self._scheduler = asyncio.create_task(self._schedule_forever())

    async def close(self) -> None:
        """Stop scheduling; running jobs are stopped and failed (their PENDING versions too)."""
        self._closing = True
        if self._scheduler:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler
        for job_id, worker in list(self._busy.items()):
            await asyncio.to_thread(self._finish, job_id, FAILED, "the serialization service shut down")
            worker.stop(kill=True)
        for task in list(self._supervisors):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=10)
        for worker in self._idle:
            worker.stop()
        await asyncio.gather(*(asyncio.to_thread(w.reap) for w in self._idle))
        self._idle.clear()

    # -- requests --------------------------------------------------------------------------------

    async def start_job(self, request: ExportRequest) -> JobRecord:
        """Validate the request against the registry and queue it."""
        if not request.source.model_name:
            raise InvalidArgument("source.model_name is required (the checkpoint or ONNX model to export)")
        if not request.source.version and not request.source.alias:
            raise InvalidArgument("source needs a version number or an alias")
        options = request_options.pipeline_options(request.spec, self.settings)  # refuses bad options up front
        queued = await asyncio.to_thread(self.store.ids_in_state, QUEUED)
        if len(queued) >= self.settings.max_queued_jobs:
            raise ResourceExhausted(
                f"{len(queued)} export jobs are queued (limit {self.settings.max_queued_jobs}); retry later"
            )
        with translate("reading the source version"):
            source = await self.registry.get_version((request.source.model_name, request.source.selector()))
        if source.format == PYTORCH_CHECKPOINT:
            num_features = await self._check_spec(source.model_name, source.version, request.spec.structured_pruning)
            specs = [inputs.InputSpec("input", np.float32, ("batch", num_features))]
        elif source.format == HF:
            unsupported = [v for v in options.variants if v not in TEXT_VARIANTS]
            if unsupported:
                raise InvalidArgument(
                    f"{', '.join(unsupported)} not offered for text models; choose from {', '.join(TEXT_VARIANTS)}"
                )
            if request.spec.pruning_sparsity or request.spec.structured_pruning:
                raise InvalidArgument("pruning is not offered for text models (HF checkpoints); leave it 0")
            await self._check_sentences(request.spec.calibration)
            specs = []  # proven on built-in sentences against transformers, not on uploaded arrays
        elif source.format == ONNX:
            if request.spec.structured_pruning:
                raise InvalidArgument(
                    "structured pruning needs a model zoo checkpoint (mlp or cnn); "
                    f"{source.model_name}:{source.version} is an ONNX model"
                )
            specs = [inputs.spec_of(t.name, t.datatype, list(t.shape)) for t in source.signature.inputs]
        else:
            raise FailedPrecondition(
                f"{source.model_name}:{source.version} is neither a PyTorch checkpoint, an HF checkpoint nor ONNX"
            )
        await self._check_upload(request.spec.calibration, specs)
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        span_context = trace.get_current_span().get_span_context()
        job = JobRecord(
            job_id="",
            state=QUEUED,
            source=Ref(request.source.model_name, int(source.version)),  # pin an alias to what it meant now
            spec=request.spec,
            training_job_id=request.training_job_id,
            target_model_name=request.target_model_name or f"{source.model_name}-onnx",
            trace_id=format(span_context.trace_id, "032x") if span_context.is_valid else "",
        )
        job, created = await asyncio.to_thread(self.store.create, job, request, carrier)
        if created:
            self._wake.set()
        return job

    async def _check_spec(self, model: str, version: int, structured_pruning: float = 0.0) -> int:
        """The checkpoint's number of input features, once its spec.json is known to build (and, when
        structured pruning is asked for, to describe an architecture that can be pruned that way)."""
        with translate("reading spec.json of the checkpoint"):
            raw = await self.registry.download_bytes((model, version), "spec.json")
        try:
            spec = validate_spec(json.loads(raw))
        except (SpecError, ValueError) as exc:
            raise InvalidArgument(f"{model}:{version} spec.json cannot be built: {exc}") from exc
        why = structured.unsupported_reason(spec) if structured_pruning else ""
        if why:
            raise InvalidArgument(f"{model}:{version}: {why}")
        return int(spec["num_features"])

    async def _check_sentences(self, calibration: Calibration) -> None:
        """A text model's calibration artifact must hold UTF-8 sentences (INVALID_ARGUMENT saying why)."""
        if not calibration.data.model_name:
            return
        name = calibration.artifact or sentences_file.DEFAULT_ARTIFACT
        with translate(f"reading the calibration sentences {name}"):
            payload = await self.registry.download_bytes(
                (calibration.data.model_name, calibration.data.selector()), name
            )
        try:
            sentences_file.parse(payload, name)
        except sentences_file.SentencesRefused as exc:
            raise InvalidArgument(str(exc)) from exc

    async def _check_upload(self, calibration: Calibration, specs: list[inputs.InputSpec]) -> None:
        """An uploaded .npz must hold one array per model input (INVALID_ARGUMENT naming the input)."""
        if not calibration.data.model_name or not specs:
            return
        name = calibration.artifact or "calibration.npz"
        with translate(f"reading the calibration data {name}"):
            payload = await self.registry.download_bytes(
                (calibration.data.model_name, calibration.data.selector()), name
            )
        try:
            inputs.match(inputs.read_npz(payload, name), specs, name)
        except inputs.DataMismatch as exc:
            raise InvalidArgument(str(exc)) from exc

    async def get(self, job_id: str) -> JobRecord:
        job = await asyncio.to_thread(self.store.get, job_id)
        if job is None:
            raise NotFound(f"export job {job_id!r} not found")
        return job

    async def list(self, state: str, page_size: int, page_token: str) -> tuple[list[JobRecord], str]:
        size = page_size or 50
        if not 0 < size <= 1000:
            raise InvalidArgument("page_size must be between 1 and 1000")
        try:
            offset = int(page_token or 0)
        except ValueError as exc:
            raise InvalidArgument("page_token is not one this service issued") from exc
        jobs = await asyncio.to_thread(self.store.list_jobs, state, size + 1, offset)
        token = str(offset + size) if len(jobs) > size else ""
        return jobs[:size], token

    async def cancel(self, job_id: str) -> JobRecord:
        """QUEUED or RUNNING -> CANCELLED (a running worker is terminated); a finished job is returned as is."""
        job = await self.get(job_id)
        if job.state in TERMINAL:
            return job
        await asyncio.to_thread(self._finish, job_id, CANCELLED, "cancelled by a client")
        worker = self._busy.get(job_id)
        if worker is not None:
            worker.stop(kill=True)  # the supervisor fails its PENDING versions and replaces the worker
        return await self.get(job_id)

    async def watch(self, job_id: str, after_sequence: int) -> AsyncIterator[EventRecord]:
        """History after ``after_sequence`` first, then live events, until the job has ended."""
        await self.get(job_id)
        last = after_sequence
        while True:
            job = await asyncio.to_thread(self.store.get, job_id)
            events = await asyncio.to_thread(self.store.events, job_id, last)
            for event in events:
                yield event
                last = event.sequence
            if job is None or (job.state in TERMINAL and not events):
                return
            if not events:
                await asyncio.sleep(WATCH_POLL_SECONDS)

    # -- running ---------------------------------------------------------------------------------

    def _finish(self, job_id: str, state: str, reason: str) -> JobRecord | None:
        def change(job: JobRecord) -> None:
            job.state = state
            if state == FAILED:
                job.failure_reason = reason
            job.finished_at = time.time()

        return self.store.update(job_id, change, ("state_changed", reason), only_if=(QUEUED, RUNNING))

    async def _schedule_forever(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            self._wake.clear()
            try:
                await self._launch_queued()
            except Exception:  # keep scheduling; the next wake retries
                log.exception("export scheduler error")

    async def _launch_queued(self) -> None:
        while self._idle and not self._closing:
            queued = await asyncio.to_thread(self.store.ids_in_state, QUEUED)
            if not queued:
                return
            job_id = queued[0]

            def claim(job: JobRecord) -> None:
                job.state = RUNNING
                job.started_at = time.time()

            claimed = await asyncio.to_thread(self.store.update, job_id, claim, ("state_changed", "running"), (QUEUED,))
            if claimed is None:
                continue
            worker = self._idle.pop()
            self._busy[job_id] = worker
            task = asyncio.create_task(self._supervise(job_id, worker))
            self._supervisors.add(task)
            task.add_done_callback(self._supervisors.discard)

    async def _supervise(self, job_id: str, worker: WarmWorker) -> None:
        alive = False
        try:
            alive = await worker.run(job_id)
            reason = "the worker stopped before finishing the job" if alive else "the worker process died"
            job = await asyncio.to_thread(self._finish, job_id, FAILED, reason)
            final = job or await asyncio.to_thread(self.store.get, job_id)
            if final is not None and final.state != SUCCEEDED:
                await self._fail_pending_versions(job_id, f"export job {job_id} ended JOB_STATE_{final.state}")
        finally:
            self._busy.pop(job_id, None)
            if alive and not self._closing:
                self._idle.append(worker)
            else:
                await asyncio.to_thread(worker.reap)
                if not self._closing:
                    self._idle.append(WarmWorker(self.settings))
            self._wake.set()

    def _spawn_cleanup(self, job_id: str, reason: str) -> None:
        task = asyncio.create_task(self._fail_pending_versions(job_id, reason))
        self._supervisors.add(task)
        task.add_done_callback(self._supervisors.discard)

    async def _fail_pending_versions(self, job_id: str, reason: str) -> None:
        """Move the job's still-PENDING versions to FAILED (best effort: the registry may be down)."""
        for model, version in await asyncio.to_thread(self.store.versions_of, job_id):
            try:
                current = await self.registry.get_version((model, version))
                if current.status == PENDING:
                    await self.registry.set_status((model, version), VERSION_FAILED, reason)
            except Exception as exc:  # noqa: BLE001 - logged, not raised: cleanup must not break the service
                log.warning("could not fail %s:%s after job %s: %s", model, version, job_id, type(exc).__name__)
