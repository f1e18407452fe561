"""After training: the checkpoint goes to the registry, and (when asked) to the serialization service.

This is the gRPC edge of the job engine (``publishing.Publisher``): it uses the shared ``RegistryClient``
and the serialization stubs over channels from ``runtime.channels``.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc

from aiaas.client.registry import RegistryClient
from aiaas.common.v1 import common_pb2
from aiaas.registry.v1 import registry_pb2
from aiaas.serialization.v1 import serialization_pb2, serialization_pb2_grpc
from aiaas.wire import FAILED, HF, PENDING, PYTORCH_CHECKPOINT, READY, ModelFormat
from aiaas_services.runtime.channels import open_channel
from aiaas_services.training import codec
from aiaas_services.training.publishing import Published, PublishError, SourceModel
from aiaas_services.training.settings import TrainingSettings
from aiaas_services.training.spec import DatasetRef, ExportRequest, ModelRef
from aiaas_services.training.store import JobRecord

ARTIFACTS = (
    ("weights.safetensors", "application/vnd.safetensors"),
    ("spec.json", "application/json"),
    ("curves.png", "image/png"),
    ("reference.json", "application/json"),  # reference statistics for drift monitoring
)


TEXT_MEDIA_TYPES = {
    ".json": "application/json",
    ".txt": "text/plain",
    ".safetensors": "application/vnd.safetensors",
    ".png": "image/png",
}


def _describe(exc: grpc.aio.AioRpcError) -> str:
    return f"{exc.code().name}: {exc.details() or 'no details'}"


async def _push_version(
    client: RegistryClient,
    job: JobRecord,
    files: dict[str, Path],
    kind: int,
    media_types: dict[str, str],
    signature: common_pb2.Signature,
    tags: dict[str, str],
    lineage: registry_pb2.Lineage,
    description: str,
) -> int:
    """Register a job's files as a new version (the spec's description wins over ``description``)."""
    spec = job.spec
    try:
        version = await client.push(
            spec.model_name,
            files,
            format=kind,
            media_types=media_types,
            signature=signature,
            metrics={k: float(v) for k, v in job.result.get("test_metrics", {}).items()},
            tags=tags,
            lineage=lineage,
            description=spec.description or description,
            create_model=True,
        )
    except grpc.aio.AioRpcError as exc:
        raise PublishError(f"registering a version of {spec.model_name!r}: {_describe(exc)}") from None
    return int(version.version)


class RegistryPublisher:
    """Registers finished jobs and fetches registry datasets; channels open on first use."""

    def __init__(self, settings: TrainingSettings) -> None:
        self.settings = settings
        self._registry_channel: grpc.aio.Channel | None = None
        self._serialization_channel: grpc.aio.Channel | None = None

    def _registry(self) -> RegistryClient:
        if self._registry_channel is None:
            self._registry_channel = open_channel(self.settings.registry_target, self.settings)
        return RegistryClient(self._registry_channel, actor="training", timeout=self.settings.registry_timeout_seconds)

    async def close(self) -> None:
        for channel in (self._registry_channel, self._serialization_channel):
            if channel is not None:
                await channel.close()

    async def fetch_dataset(self, dataset: DatasetRef) -> bytes:
        try:
            return await self._registry().download_bytes(codec.dataset_ref(dataset), dataset.artifact_name)
        except grpc.aio.AioRpcError as exc:
            not_found = exc.code() == grpc.StatusCode.NOT_FOUND
            raise PublishError(f"{dataset.model_name}/{dataset.artifact_name}: {_describe(exc)}", not_found) from None

    async def describe(self, ref: ModelRef) -> SourceModel:
        """The version a text job names (an alias resolved to its number)."""
        try:
            version = await self._registry().get_version(codec.version_ref(ref))
        except grpc.aio.AioRpcError as exc:
            raise PublishError(f"{ref}: {_describe(exc)}", exc.code() == grpc.StatusCode.NOT_FOUND) from None
        try:
            kind = ModelFormat(version.format).text
        except ValueError:
            kind = str(version.format)
        return SourceModel(
            version.model_name, int(version.version), kind, version.tags.get("task", ""), version.status == READY
        )

    async def fetch_folder(self, ref: ModelRef, folder: Path) -> None:
        """Every artifact of a pinned version into ``folder`` (verified downloads)."""
        try:
            await self._registry().pull(codec.version_ref(ref), folder)
        except grpc.aio.AioRpcError as exc:
            raise PublishError(f"downloading {ref}: {_describe(exc)}") from None

    async def publish(self, job: JobRecord, result_dir: Path, after_restart: bool = False) -> Published:
        """Register the checkpoint: one CreateVersion call carries its three artifacts and makes it READY
        (``RegistryClient.push``; a checkpoint over its inline limit is streamed into a PENDING version
        instead). Then ask for the export. After a restart of this service, first settle what an
        interrupted registration left behind."""
        client = self._registry()
        spec = job.spec
        if after_restart:
            kind = HF if spec.text is not None else PYTORCH_CHECKPOINT
            adopted = await self._settle_earlier_attempt(client, job, spec.model_name, kind)
            if adopted is not None:
                published = Published(spec.model_name, adopted)
                published.messages.append(f"version {adopted} was registered before the restart; keeping it")
                if spec.export is not None:  # idempotent: the request id is the job's
                    ref = common_pb2.VersionRef(model_name=spec.model_name, version=adopted)
                    await self._request_export(job, spec.export, ref, published)
                return published
        if spec.text is not None:
            version_number = await self._push_text(client, job, result_dir)
        else:
            version_number = await self._push_checkpoint(client, job, result_dir)
        ref = common_pb2.VersionRef(model_name=spec.model_name, version=version_number)
        published = Published(spec.model_name, version_number)
        if spec.export is not None:
            await self._request_export(job, spec.export, ref, published)
        return published

    async def _push_text(self, client: RegistryClient, job: JobRecord, result_dir: Path) -> int:
        """The text job's HF folder as one version of format HF (READY only once every file is in),
        with lineage to its base or teacher."""
        spec, result = job.spec, job.result
        assert spec.text is not None
        source = result.get("source") or {}
        lineage = registry_pb2.Lineage(
            training_job_id=job.job_id,
            dataset_digest=result.get("dataset_digest", ""),
            hyperparameters={
                **spec.train.hyperparameters(),
                **{f"text.{k}": str(v) for k, v in result.get("text_settings", {}).items()},
            },
            trace_id=job.trace_id,
            parent_model_name=str(source.get("model_name", "")),
            parent_version=int(source.get("version", 0)),
        )
        labels = int(result["num_classes"])
        signature = common_pb2.Signature(
            inputs=[common_pb2.TensorSpec(name="text", datatype="BYTES", shape=[-1])],
            outputs=[
                common_pb2.TensorSpec(name="logits", datatype="FP32", shape=[-1, labels]),
                common_pb2.TensorSpec(name="probabilities", datatype="FP32", shape=[-1, labels]),
                common_pb2.TensorSpec(name="label", datatype="BYTES", shape=[-1]),
            ],
        )
        files = {name: result_dir / name for name in result["artifacts"]}
        media = {name: TEXT_MEDIA_TYPES.get(Path(name).suffix, "application/octet-stream") for name in files}
        tags = {
            **spec.tags,
            "task": spec.text.task,
            "text_job": spec.text.mode,
            "model_type": "bert",
            "architecture": "BertForSequenceClassification",
            "max_positions": str(result.get("max_positions", 512)),
        }
        what = {"finetune": "fine-tuned from", "distill": "distilled from"}.get(spec.text.mode, "trained from scratch")
        origin = f" {source['model_name']}:{source['version']}" if source else ""
        description = f"{what}{origin} by training job {job.job_id}"
        return await _push_version(client, job, files, HF, media, signature, tags, lineage, description)

    async def _push_checkpoint(self, client: RegistryClient, job: JobRecord, result_dir: Path) -> int:
        """A tabular job's checkpoint (weights, spec.json, curves, reference statistics) as one version."""
        spec = job.spec
        result = job.result
        model_spec = json.loads((result_dir / "spec.json").read_text())
        lineage = registry_pb2.Lineage(
            training_job_id=job.job_id,
            dataset_digest=result.get("dataset_digest", ""),
            hyperparameters={
                **spec.train.hyperparameters(),
                "architecture": json.dumps(model_spec["architecture"], sort_keys=True),
                "data": json.dumps(model_spec.get("data", {}), sort_keys=True),
            },
            trace_id=job.trace_id,
        )
        width = int(result.get("output_width") or 1)
        signature = common_pb2.Signature(
            inputs=[common_pb2.TensorSpec(name="input", datatype="FP32", shape=[-1, int(result["num_features"])])],
            outputs=[common_pb2.TensorSpec(name="output", datatype="FP32", shape=[-1, width])],
        )
        tags = {**spec.tags, "task": model_spec["task"], "architecture": model_spec["architecture"]["kind"]}
        files = {name: result_dir / name for name, _ in ARTIFACTS}
        description = f"trained by training job {job.job_id}"
        return await _push_version(
            client, job, files, PYTORCH_CHECKPOINT, dict(ARTIFACTS), signature, tags, lineage, description
        )

    async def _settle_earlier_attempt(
        self, client: RegistryClient, job: JobRecord, model_name: str, kind: int
    ) -> int | None:
        """The versions this job made before the restart (found by their lineage): the READY one, if
        the registration had finished, is the job's; any left PENDING are marked FAILED, so a restart
        never leaves a half-registered version behind."""
        try:
            versions = await client.list_versions(model_name, format=kind)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None  # the model was never created: nothing was registered
            raise PublishError(f"listing versions of {model_name!r}: {_describe(exc)}") from None
        mine = [v for v in versions if v.lineage.training_job_id == job.job_id]
        for version in mine:
            if version.status == PENDING:
                ref = common_pb2.VersionRef(model_name=model_name, version=version.version)
                reason = f"abandoned: the training service restarted while registering job {job.job_id}"
                try:
                    await client.set_status(ref, FAILED, reason)
                except grpc.aio.AioRpcError as exc:
                    what = f"marking {model_name} version {version.version} FAILED"
                    raise PublishError(f"{what}: {_describe(exc)}") from None
        return next((v.version for v in mine if v.status == READY), None)

    async def _request_export(
        self, job: JobRecord, export: ExportRequest, ref: common_pb2.VersionRef, published: Published
    ) -> None:
        """Ask the serialization service for the ONNX variants; a failure is noted, not fatal."""
        if self._serialization_channel is None:
            self._serialization_channel = open_channel(self.settings.serialization_target, self.settings)
        stub = serialization_pb2_grpc.SerializationServiceStub(self._serialization_channel)
        request = serialization_pb2.StartExportJobRequest(
            source=ref,
            options=codec.export_options(export),
            request_id=f"training-{job.job_id}",
            training_job_id=job.job_id,
        )
        try:
            response = await stub.StartExportJob(request, timeout=self.settings.registry_timeout_seconds)
        except grpc.aio.AioRpcError as exc:
            published.messages.append(
                f"export not started: the serialization service at {self.settings.serialization_target} "
                f"answered {_describe(exc)}"
            )
            return
        published.export_job_id = response.job.job_id
        variants = ", ".join(export.variants) or "the default variants"
        published.messages.append(f"export job {response.job.job_id} started for {variants}")
