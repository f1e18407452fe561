"""The body of an export job, run in a ``spawn``-started worker process.

It fetches the source from the registry, rebuilds the module (spec.json + safetensors via the model
zoo; nothing is unpickled), runs the pipeline, and registers each variant: the version is created
PENDING, its file uploaded, and only then set READY (proof passed) or REJECTED (with the proof's
reason). A crash at any point therefore leaves PENDING versions, which the service fails afterwards.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import shutil
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from opentelemetry import propagate, trace

from aiaas.client.registry import RegistryClient, version_ref
from aiaas.common.v1 import common_pb2
from aiaas.registry.v1 import registry_pb2
from aiaas.serialization.v1 import serialization_pb2 as pb
from aiaas.wire import HF, ONNX, PYTORCH_CHECKPOINT, READY, REJECTED
from aiaas_services.runtime.channels import open_channel
from aiaas_services.serialization import options as request_options
from aiaas_services.serialization.pipeline import run as pipeline
from aiaas_services.serialization.pipeline import validate
from aiaas_services.serialization.settings import SerializationSettings
from aiaas_services.serialization.store import JobStore
from aiaas_services.serialization.text import job as text_job

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

MODEL_ARTIFACT = "model.onnx"
ONNX_MEDIA_TYPE = "application/onnx"
RANDOM_PROOF_ROWS = 256


class JobFailure(Exception):
    """A reason to fail the job that is fit to show the user."""


def serve_jobs(settings: SerializationSettings, connection: Connection) -> None:
    """Warm worker process entry point (picklable for ``spawn``): import and warm up once, then run the
    job ids the service sends, answering "done" after each; exits when the pipe closes."""
    import torch

    torch.set_num_threads(max(1, settings.torch_threads))
    logging.basicConfig(level=settings.log_level)
    from aiaas_services.runtime import tracing

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
    import os
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def warm_up() -> None:
    """Pay the import and first-export costs before a job waits for them (torch.onnx, the dynamo
    exporter, quantization tools, scikit-learn's datasets)."""
    import tempfile

    import torch
    from onnxruntime import quantization  # noqa: F401 - imported for its import cost
    from sklearn import datasets  # noqa: F401 - imported for its import cost

    from aiaas_services.serialization.pipeline import export

    with tempfile.TemporaryDirectory() as folder:
        try:
            export.export_fp32(torch.nn.Linear(2, 2), 2, Path(folder))
        except export.ExportError:
            log.warning("warm-up export failed; the first job will pay the exporter's start-up")


def signature_of(path: Path) -> common_pb2.Signature:
    """The model's inputs and outputs in registry terms."""
    info = validate.describe(onnx.load(str(path), load_external_data=False))
    return common_pb2.Signature(
        inputs=[common_pb2.TensorSpec(name=t.name, datatype=t.datatype, shape=t.shape) for t in info.inputs],
        outputs=[common_pb2.TensorSpec(name=t.name, datatype=t.datatype, shape=t.shape) for t in info.outputs],
    )


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
                if _is_rpc_error(exc):
                    self._fail(f"registry call failed while {self.step}: {_rpc_text(exc)}")
                else:
                    log.exception("export job %s failed while %s", self.job_id, self.step)
                    self._fail(f"internal error ({type(exc).__name__}) while {self.step}; see the serialization log")
            finally:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def _fail(self, reason: str) -> None:
        def change(job: pb.ExportJob) -> None:
            job.state = common_pb2.JOB_STATE_FAILED
            job.failure_reason = reason
            job.finished_at.GetCurrentTime()

        self.store.update(
            self.job_id,
            change,
            pb.WatchExportJobResponse(state_changed=reason),
            only_if=(common_pb2.JOB_STATE_RUNNING,),
        )

    def _say(self, message: str) -> None:
        self.step = message
        self.store.note(self.job_id, message)

    async def _export(self, client: RegistryClient, request: pb.StartExportJobRequest) -> None:
        options = request_options.pipeline_options(request.options, self.settings)
        self.step = "reading the source version"
        source = await client.get_version(request.source)
        if source.status != registry_pb2.VERSION_STATUS_READY:
            raise JobFailure(f"source {source.model_name}:{source.version} is not READY")
        pinned = (source.model_name, source.version)

        def resolve(job: pb.ExportJob) -> None:
            job.source.version = source.version

        self.store.update(self.job_id, resolve)
        self.workdir.mkdir(parents=True, exist_ok=True)
        text: tuple[Any, Any] | None = None
        if source.format == PYTORCH_CHECKPOINT:
            prepared, data, digest = await self._from_checkpoint(client, pinned, request, options)
        elif source.format == HF:
            prepared, data, digest, text = await self._from_hf(client, source)
        elif source.format == ONNX:
            prepared, data, digest = await self._from_onnx(client, source, request, options)
        else:
            raise JobFailure(f"source {pinned[0]}:{pinned[1]} is neither a PyTorch checkpoint nor an ONNX model")
        job = self.store.get(self.job_id)
        assert job is not None
        target = job.target_model_name
        metadata = {
            "aiaas.source": f"{pinned[0]}:{pinned[1]}",
            "aiaas.export_job_id": self.job_id,
            "aiaas.trace_id": job.trace_id,
            "aiaas.task": data.task,
        }
        accepted: list[pb.VariantReport] = []
        results = (
            pipeline.make_and_prove(prepared, data, options, self.workdir, metadata, self._say)
            if text is None
            else text_job.make_and_prove(text[0], text[1], options, self.workdir, metadata, self._say)
        )
        for result in results:
            self.step = f"registering {result.variant}"
            message = request_options.report_message(result.report)
            if result.path.stat().st_size:  # an empty file: the variant could not be made, nothing to register
                message.registered.CopyFrom(
                    await self._register(
                        client, target, source, request, result, prepared, data.task, digest, job.trace_id
                    )
                )

            def add(job: pb.ExportJob, message: pb.VariantReport = message) -> None:
                job.reports.append(message)

            self.store.update(self.job_id, add, pb.WatchExportJobResponse(variant=message))
            if message.accepted:
                accepted.append(message)
        if request.options.set_alias:
            await self._set_alias(client, target, request.options.set_alias, accepted)

        def succeed(job: pb.ExportJob) -> None:
            job.state = common_pb2.JOB_STATE_SUCCEEDED
            job.finished_at.GetCurrentTime()

        summary = f"{len(accepted)} of {len(options.variants)} variant(s) accepted"
        self.store.update(
            self.job_id,
            succeed,
            pb.WatchExportJobResponse(state_changed=summary),
            only_if=(common_pb2.JOB_STATE_RUNNING,),
        )

    async def _from_checkpoint(
        self,
        client: RegistryClient,
        pinned: tuple[str, int],
        request: pb.StartExportJobRequest,
        options: pipeline.PipelineOptions,
    ) -> tuple[pipeline.Prepared, pipeline.ProofData, str]:
        import safetensors.torch

        from aiaas_services.datasets import DataError, load_splits
        from aiaas_services.modelzoo import SpecError, build_module, validate_spec

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
        calibration = splits.x_train
        override = await self._calibration_arrays(client, request)
        if override is not None:
            calibration = override[0]
        data = pipeline.ProofData(calibration, splits.x_test, splits.y_test, str(spec["task"]))
        self._say(f"exporting to ONNX (opset {options.opset})")
        prepared = await asyncio.to_thread(
            pipeline.from_module, module, int(spec["num_features"]), data, options, self.workdir
        )
        self._say(f"exported with the {prepared.export_settings['exporter']} exporter, checked and optimized")
        return prepared, data, splits.digest

    async def _from_onnx(
        self,
        client: RegistryClient,
        source: registry_pb2.ModelVersion,
        request: pb.StartExportJobRequest,
        options: pipeline.PipelineOptions,
    ) -> tuple[pipeline.Prepared, pipeline.ProofData, str]:
        self._say("downloading model.onnx")
        path = self.workdir / "source.onnx"
        await client.download_to((source.model_name, source.version), MODEL_ARTIFACT, path)
        info = validate.describe(onnx.load(str(path), load_external_data=False))
        if len(info.inputs) != 1 or info.inputs[0].datatype != "FP32" or len(info.inputs[0].shape) != 2:
            raise JobFailure("only models with one FP32 input of shape [batch, features] can be quantized and proven")
        num_features = info.inputs[0].shape[1]
        task = source.tags.get("task", "")
        arrays = await self._calibration_arrays(client, request)
        if arrays is not None:
            x, y = arrays
            proof_source = "calibration npz"
        elif "int8-static" in options.variants:
            raise JobFailure("int8-static of an imported model needs options.calibration.calibration_data (an .npz)")
        else:
            if num_features <= 0:
                raise JobFailure("the model's feature dimension is dynamic; upload calibration data to prove it")
            x, y = np.random.default_rng(0).standard_normal((RANDOM_PROOF_ROWS, num_features)).astype(np.float32), None
            proof_source = "random normal inputs (no data uploaded)"
        if y is None and task in ("classification", "regression"):
            task = ""  # no labels: errors and agreement only
        data = pipeline.ProofData(x, x, y, task)
        prepared = await asyncio.to_thread(pipeline.from_onnx, path, data, options, self.workdir / "variants")
        prepared.export_settings["proof_data"] = proof_source
        return prepared, data, source.lineage.dataset_digest

    async def _from_hf(
        self, client: RegistryClient, source: registry_pb2.ModelVersion
    ) -> tuple[pipeline.Prepared, pipeline.ProofData, str, tuple[Any, Any]]:
        """Download the HF folder, export it with the tokenizer in the graph, compute the reference."""
        from aiaas_services.serialization.text.folder import FolderRefused

        task = source.tags.get("task", "embedding")
        folder = self.workdir / "hf"
        folder.mkdir()
        names = text_job.artifact_names(source)
        self._say(f"downloading the Hugging Face folder ({len(names)} files)")
        for name in names:
            await client.download_to((source.model_name, source.version), name, folder / name)
        try:
            checked = text_job.checked_folder(folder, names, task)
            model, proof_data = await asyncio.to_thread(text_job.prepare, checked, task, self.workdir, self._say)
        except FolderRefused as exc:
            raise JobFailure(f"{source.model_name}:{source.version} cannot be exported: {exc}") from exc
        prepared = pipeline.Prepared(model.path, proof_data.reference, model.settings())
        empty = np.zeros((0, 1), np.float32)
        data = pipeline.ProofData(empty, empty, None, task)
        return prepared, data, source.lineage.dataset_digest, (model, proof_data)

    async def _calibration_arrays(
        self, client: RegistryClient, request: pb.StartExportJobRequest
    ) -> tuple[np.ndarray, np.ndarray | None] | None:
        calibration = request.options.calibration
        if not calibration.calibration_data.model_name:
            return None
        name = calibration.calibration_artifact or "calibration.npz"
        self._say(f"downloading calibration data {calibration.calibration_data.model_name}/{name}")
        payload = await client.download_bytes(calibration.calibration_data, name)
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
                key = next((k for k in ("x", "input") if k in archive.files), None)
                if key is None:
                    raise JobFailure(
                        f"{name} must hold an array named 'x' (or 'input'); it has {sorted(archive.files)}"
                    )
                x = np.asarray(archive[key], dtype=np.float32)
                y = np.asarray(archive["y"]) if "y" in archive.files else None
        except JobFailure:
            raise
        except Exception as exc:
            raise JobFailure(f"{name} is not a readable .npz of arrays ({type(exc).__name__})") from exc
        if x.ndim != 2 or len(x) == 0:
            raise JobFailure(f"{name}: 'x' must be a non-empty [samples, features] array, got shape {x.shape}")
        return x, y

    async def _register(
        self,
        client: RegistryClient,
        target: str,
        source: registry_pb2.ModelVersion,
        request: pb.StartExportJobRequest,
        result: pipeline.VariantResult,
        prepared: pipeline.Prepared,
        task: str,
        digest: str,
        trace_id: str,
    ) -> common_pb2.VersionRef:
        report = result.report
        quantization = {k: v for k, v in report.settings.items() if k not in prepared.export_settings}
        lineage = registry_pb2.Lineage(
            parent_version=source.version,
            parent_model_name=source.model_name,
            training_job_id=request.training_job_id or source.lineage.training_job_id,
            export_job_id=self.job_id,
            dataset_digest=digest,
            export_settings=prepared.export_settings,
            quantization_settings=quantization,
            trace_id=trace_id,
        )
        tags = {"preferred_provider": report.preferred_provider, "source": f"{source.model_name}:{source.version}"}
        if task:
            tags["task"] = task
        version = await client.create_version(
            target,
            format=ONNX,
            variant=result.variant,
            signature=signature_of(result.path),
            metrics=report.metrics(),
            tags=tags,
            lineage=lineage,
            description=f"{result.variant} export of {source.model_name}:{source.version}",
            required_artifacts=[MODEL_ARTIFACT],
        )
        self.store.record_version(self.job_id, target, version.version)
        await client.upload_file(target, version.version, MODEL_ARTIFACT, result.path, media_type=ONNX_MEDIA_TYPE)
        current = self.store.get(self.job_id)
        if current is None or current.state != common_pb2.JOB_STATE_RUNNING:
            raise JobFailure("the job was stopped before this variant was registered")
        if report.accepted:
            await client.set_status((target, version.version), READY)
        else:
            await client.set_status((target, version.version), REJECTED, report.reason[:1000])
        return common_pb2.VersionRef(model_name=target, version=version.version)

    async def _set_alias(
        self, client: RegistryClient, target: str, alias: str, accepted: list[pb.VariantReport]
    ) -> None:
        cpu = [r for r in accepted if r.preferred_provider == "CPUExecutionProvider"]
        if not cpu:
            self._say(f"no accepted CPU variant; alias {alias!r} left where it was")
            return
        best = min(cpu, key=lambda r: (r.latency_ms_batch32, r.variant != "fp32"))
        await client.set_alias(
            target,
            alias,
            best.registered.version,
            actor="serialization",
            reason=f"export job {self.job_id}: fastest accepted CPU variant ({best.variant})",
        )
        self._say(f"alias {alias!r} -> {target}:{best.registered.version} ({best.variant})")


def _is_rpc_error(exc: BaseException) -> bool:
    import grpc

    return isinstance(exc, grpc.RpcError)


def _rpc_text(exc: Any) -> str:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else ""
    return f"{getattr(code, 'name', 'UNKNOWN')}: {details}"
