"""The body of an export job, run in a ``spawn``-started worker process.

It fetches the source from the registry, rebuilds the module (spec.json + safetensors via the model
zoo; nothing is unpickled), runs the pipeline, and registers each variant: the version is created
PENDING, its file uploaded, and only then set READY (proof passed) or REJECTED (with the proof's
reason). A crash at any point therefore leaves PENDING versions, which the service fails afterwards.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from opentelemetry import propagate, trace

from aiaas.client.registry import RegistryClient, version_ref
from aiaas.wire import HF, ONNX, PYTORCH_CHECKPOINT
from aiaas_services.datasets import DataError, load_splits
from aiaas_services.modelzoo import SpecError, build_module, validate_spec
from aiaas_services.runtime import tracing
from aiaas_services.runtime.channels import open_channel
from aiaas_services.serialization import options as request_options
from aiaas_services.serialization import proofdata, registration
from aiaas_services.serialization.pipeline import export, inputs, structured
from aiaas_services.serialization.pipeline import run as pipeline
from aiaas_services.serialization.records import (
    FAILED,
    RUNNING,
    SUCCEEDED,
    ExportRequest,
    JobRecord,
    Ref,
    VariantRecord,
)
from aiaas_services.serialization.settings import SerializationSettings
from aiaas_services.serialization.store import JobStore
from aiaas_services.serialization.text import calibration as sentences_file
from aiaas_services.serialization.text import job as text_job
from aiaas_services.textmodel.folder import FolderRefused

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

MODEL_ARTIFACT = registration.MODEL_ARTIFACT


class JobFailure(Exception):
    """A reason to fail the job that is fit to show the user."""


def serve_jobs(settings: SerializationSettings, connection: Connection) -> None:
    """Warm worker process entry point (picklable for ``spawn``): import and warm up once, then run the
    job ids the service sends, answering "done" after each; exits when the pipe closes."""
    torch.set_num_threads(max(1, settings.torch_threads))
    logging.basicConfig(level=settings.log_level)

    setup = getattr(tracing, "setup_worker_tracing", None)
    _exit_with_parent()
    warm_up()
    connection.send("ready")
    while True:
        try:
            job_id = connection.recv()
        except (EOFError, OSError):
            return
        if job_id is None:
            return
        flush = setup(settings) if setup else None
        try:
            asyncio.run(ExportJobRunner(settings, job_id).run())
        finally:
            if flush:
                flush()
        connection.send("done")


def _exit_with_parent() -> None:
    """Die when the service process dies (even by SIGKILL): an orphaned worker must not go on
    registering versions for a job the restarted service has already failed."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def warm_up() -> None:
    """Pay the import and first-export costs before a job waits for them (torch.onnx, the dynamo
    exporter, quantization tools, scikit-learn's datasets)."""
    # imported here, in the worker only, for their import cost (the service process never needs them)
    from onnxruntime import quantization  # noqa: F401
    from sklearn import datasets  # noqa: F401

    with tempfile.TemporaryDirectory() as folder:
        try:
            export.export_fp32(torch.nn.Linear(2, 2), 2, Path(folder))
        except export.ExportError:
            log.warning("warm-up export failed; the first job will pay the exporter's start-up")


class ExportJobRunner:
    """One export job from QUEUED-and-claimed to SUCCEEDED or FAILED."""

    def __init__(self, settings: SerializationSettings, job_id: str) -> None:
        self.settings = settings
        self.job_id = job_id
        self.store = JobStore(settings.data_dir / "jobs.db")
        self.workdir = settings.data_dir / "work" / job_id
        self.step = "starting"

    async def run(self) -> None:
        request, carrier = self.store.request_of(self.job_id)
        context = propagate.extract(carrier)
        with tracer.start_as_current_span("serialization.export_job", context=context) as span:
            span.set_attribute("aiaas.export_job_id", self.job_id)
            try:
                async with open_channel(self.settings.registry_target, self.settings) as channel:
                    client = RegistryClient(
                        channel, actor="serialization", timeout=self.settings.registry_timeout_seconds
                    )
                    await self._export(client, request)
            except JobFailure as exc:
                self._fail(str(exc))
            except Exception as exc:
                failure = registration.rpc_failure(exc)
                if failure is not None:
                    self._fail(f"registry call failed while {self.step}: {failure}")
                else:
                    log.exception("export job %s failed while %s", self.job_id, self.step)
                    self._fail(f"internal error ({type(exc).__name__}) while {self.step}; see the serialization log")
            finally:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def _fail(self, reason: str) -> None:
        def change(job: JobRecord) -> None:
            job.state = FAILED
            job.failure_reason = reason
            job.finished_at = time.time()

        self.store.update(self.job_id, change, ("state_changed", reason), only_if=(RUNNING,))

    def _say(self, message: str) -> None:
        self.step = message
        self.store.note(self.job_id, message)

    async def _export(self, client: RegistryClient, request: ExportRequest) -> None:
        options = request_options.pipeline_options(request.spec, self.settings)
        self.step = "reading the source version"
        source = registration.Source.of(
            await client.get_version((request.source.model_name, request.source.selector()))
        )
        if not source.ready:
            raise JobFailure(f"source {source.model_name}:{source.version} is not READY")
        pinned = (source.model_name, source.version)

        def resolve(job: JobRecord) -> None:
            job.source = Ref(source.model_name, source.version)

        self.store.update(self.job_id, resolve)
        self.workdir.mkdir(parents=True, exist_ok=True)
        text: tuple[text_job.TextModel, text_job.TextProof] | None = None
        if source.format == PYTORCH_CHECKPOINT:
            prepared, data, digest = await self._from_checkpoint(client, pinned, request, options)
        elif source.format == HF:
            prepared, data, digest, text = await self._from_hf(client, source, request)
        elif source.format == ONNX:
            prepared, data, digest = await self._from_onnx(client, source, request, options)
        else:
            raise JobFailure(f"source {pinned[0]}:{pinned[1]} is neither a PyTorch checkpoint nor an ONNX model")
        job = self.store.get(self.job_id)
        assert job is not None
        metadata = {
            "aiaas.source": f"{pinned[0]}:{pinned[1]}",
            "aiaas.export_job_id": self.job_id,
            "aiaas.trace_id": job.trace_id,
            "aiaas.task": data.task,
        }
        lineage = registration.Lineage(
            source,
            self.job_id,
            request.training_job_id or source.training_job_id,
            digest,
            prepared.export_settings,
            job.trace_id,
        )
        accepted: list[VariantRecord] = []
        results = (
            pipeline.make_and_prove(prepared, data, options, self.workdir, metadata, self._say)
            if text is None
            else text_job.make_and_prove(text[0], text[1], options, self.workdir, metadata, self._say)
        )
        for result in results:
            self.step = f"registering {result.variant}"
            variant = VariantRecord(result.report)
            if result.path is not None:
                variant.registered = await self._register(client, job.target_model_name, result, lineage, data.task)

            def add(job: JobRecord, variant: VariantRecord = variant) -> None:
                job.reports.append(variant)

            self.store.update(self.job_id, add, variant)
            if result.report.accepted:
                accepted.append(variant)
        if request.spec.set_alias:
            await self._set_alias(client, job.target_model_name, request.spec.set_alias, accepted)

        def succeed(job: JobRecord) -> None:
            job.state = SUCCEEDED
            job.finished_at = time.time()

        summary = f"{len(accepted)} of {len(options.variants)} variant(s) accepted"
        if len(accepted) < len(options.variants):
            summary += " (see each variant's reason)"
        self.store.update(self.job_id, succeed, ("state_changed", summary), only_if=(RUNNING,))

    async def _from_checkpoint(
        self,
        client: RegistryClient,
        pinned: tuple[str, int],
        request: ExportRequest,
        options: pipeline.PipelineOptions,
    ) -> tuple[pipeline.Prepared, pipeline.ProofData, str]:
        self._say("rebuilding the module from spec.json and weights.safetensors")
        try:
            spec = validate_spec(json.loads(await client.download_bytes(pinned, "spec.json")))
        except (SpecError, ValueError) as exc:
            raise JobFailure(f"spec.json of {pinned[0]}:{pinned[1]} cannot be built: {exc}") from exc
        weights = safetensors.torch.load(await client.download_bytes(pinned, "weights.safetensors"))
        module = build_module(spec)
        try:
            module.load_state_dict(weights, strict=True)
        except RuntimeError as exc:
            raise JobFailure(f"weights.safetensors does not fit spec.json: {str(exc).splitlines()[0][:300]}") from exc
        self._say("loading the held-out data")
        data_spec = dict(spec.get("data") or {})
        payload = None
        if "registry" in data_spec:
            block = dict(data_spec["registry"] or {})
            ref = dict(block.get("ref") or {})
            selector: Any = ref.get("version") or ref.get("alias")
            payload = await client.download_bytes(
                version_ref((str(ref.get("model_name", "")), selector)), str(block.get("artifact_name") or "data.npz")
            )
        try:
            splits = load_splits(data_spec, int(spec.get("seed") or 0), payload)
        except DataError as exc:
            raise JobFailure(f"the checkpoint's data cannot be loaded: {exc}") from exc
        upload = await self._uploaded_arrays(client, request)
        try:
            data = proofdata.from_split(
                splits.x_train,
                splits.x_test,
                splits.y_test,
                str(spec["task"]),
                upload[1] if upload else None,
                int(spec["num_features"]),
                upload[0] if upload else "",
            )
        except inputs.DataMismatch as exc:
            raise JobFailure(str(exc)) from exc
        if options.structured_pruning:
            self._say(f"removing {options.structured_pruning:g} of each hidden layer's units (structured pruning)")
        self._say(f"exporting to ONNX (opset {options.opset})")
        try:
            prepared = await asyncio.to_thread(
                pipeline.from_module, module, int(spec["num_features"]), data, options, self.workdir
            )
        except structured.Unsupported as exc:  # refused up front too; the spec may have changed in between
            raise JobFailure(str(exc)) from exc
        self._say(f"exported with the {prepared.export_settings['exporter']} exporter, checked and optimized")
        return prepared, data, splits.digest

    async def _from_onnx(
        self,
        client: RegistryClient,
        source: registration.Source,
        request: ExportRequest,
        options: pipeline.PipelineOptions,
    ) -> tuple[pipeline.Prepared, pipeline.ProofData, str]:
        self._say("downloading model.onnx")
        path = self.workdir / "source.onnx"
        await client.download_to((source.model_name, source.version), MODEL_ARTIFACT, path)
        specs = inputs.signature_of(path)
        task = source.task
        upload = await self._uploaded_arrays(client, request)
        try:
            if upload is None:
                data = proofdata.generated(specs, task)
            else:
                data = proofdata.from_upload(upload[1], specs, task, options.quantization.num_samples, upload[0])
        except inputs.DataMismatch as exc:
            raise JobFailure(str(exc)) from exc
        self._say(f"proof data: {data.source}")
        prepared = await asyncio.to_thread(pipeline.from_onnx, path, data, options, self.workdir / "variants")
        return prepared, data, source.dataset_digest

    async def _from_hf(
        self, client: RegistryClient, source: registration.Source, request: ExportRequest
    ) -> tuple[pipeline.Prepared, pipeline.ProofData, str, tuple[text_job.TextModel, text_job.TextProof]]:
        """Download the HF folder (and the request's calibration sentences), export it with the tokenizer
        in the graph, compute the reference."""
        sentences = None
        chosen = request.spec.calibration
        if chosen.data.model_name:
            name = chosen.artifact or sentences_file.DEFAULT_ARTIFACT
            self._say(f"downloading calibration sentences {chosen.data.model_name}/{name}")
            payload = await client.download_bytes((chosen.data.model_name, chosen.data.selector()), name)
            try:
                texts = sentences_file.parse(payload, name)
            except sentences_file.SentencesRefused as exc:
                raise JobFailure(str(exc)) from exc
            sentences = (texts, f"{name} ({len(texts)} sentences)")

        task = source.task or "embedding"
        folder = self.workdir / "hf"
        folder.mkdir()
        names = list(source.artifacts)
        self._say(f"downloading the Hugging Face folder ({len(names)} files)")
        for name in names:
            await client.download_to((source.model_name, source.version), name, folder / name)
        try:
            checked = text_job.checked_folder(folder, names, task)
            model, proof_data = await asyncio.to_thread(
                text_job.prepare, checked, task, self.workdir, self._say, sentences
            )
        except FolderRefused as exc:
            raise JobFailure(f"{source.model_name}:{source.version} cannot be exported: {exc}") from exc
        prepared = pipeline.Prepared(model.path, {text_job.output_of(task): proof_data.reference}, model.settings())
        data = pipeline.ProofData({}, {}, None, task, True, text_job.PROOF_SOURCE)
        return prepared, data, source.dataset_digest, (model, proof_data)

    async def _uploaded_arrays(
        self, client: RegistryClient, request: ExportRequest
    ) -> tuple[str, dict[str, np.ndarray]] | None:
        """(what, arrays) of the request's calibration .npz, or None when it names none."""
        calibration = request.spec.calibration
        if not calibration.data.model_name:
            return None
        name = calibration.artifact or "calibration.npz"
        self._say(f"downloading calibration data {calibration.data.model_name}/{name}")
        payload = await client.download_bytes((calibration.data.model_name, calibration.data.selector()), name)
        try:
            return name, inputs.read_npz(payload, name)
        except inputs.DataMismatch as exc:
            raise JobFailure(str(exc)) from exc

    async def _register(
        self,
        client: RegistryClient,
        target: str,
        result: pipeline.VariantResult,
        lineage: registration.Lineage,
        task: str,
    ) -> Ref:
        assert result.path is not None

        def running() -> bool:
            current = self.store.get(self.job_id)
            return current is not None and current.state == RUNNING

        try:
            return await registration.register_variant(
                client,
                target,
                result.path,
                result.report,
                lineage,
                task,
                lambda version: self.store.record_version(self.job_id, target, version),
                running,
            )
        except registration.StoppedMeanwhile as exc:
            raise JobFailure(str(exc)) from exc

    async def _set_alias(self, client: RegistryClient, target: str, alias: str, accepted: list[VariantRecord]) -> None:
        cpu = [v for v in accepted if v.report.preferred_provider == "CPUExecutionProvider"]
        if not cpu:
            self._say(f"no accepted CPU variant; alias {alias!r} left where it was")
            return
        chosen = min(cpu, key=lambda v: (v.report.latency_ms_batch32, v.report.variant != "fp32"))
        best = chosen.report
        await client.set_alias(
            target,
            alias,
            chosen.registered.version,
            actor="serialization",
            reason=f"export job {self.job_id}: fastest accepted CPU variant ({best.variant})",
        )
        self._say(f"alias {alias!r} -> {target}:{chosen.registered.version} ({best.variant})")
