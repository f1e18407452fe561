"""Registering a proven variant in the registry: the serialization side of the registry's wire types.

The version is created PENDING with its signature, metrics, tags and lineage, its file uploaded, and only
then set READY (proof passed) or REJECTED (with the proof's reason), so a crash leaves PENDING versions,
never a READY one that was not proven.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import onnx

from aiaas.client.registry import RegistryClient
from aiaas.common.v1 import common_pb2
from aiaas.registry.v1 import registry_pb2
from aiaas.wire import ONNX, READY, REJECTED
from aiaas_services.serialization.pipeline import validate
from aiaas_services.serialization.pipeline.proof import Report
from aiaas_services.serialization.records import Ref

MODEL_ARTIFACT = "model.onnx"
ONNX_MEDIA_TYPE = "application/onnx"


class StoppedMeanwhile(Exception):
    """The job stopped (cancelled, failed) while the variant was uploading; it must not turn READY."""


@dataclasses.dataclass(frozen=True)
class Source:
    """What the registry said about the version being exported."""

    model_name: str
    version: int
    format: int  # aiaas.client.registry.ONNX, PYTORCH_CHECKPOINT ...
    ready: bool
    task: str
    training_job_id: str
    dataset_digest: str
    artifacts: tuple[str, ...] = ()  # file names (an HF checkpoint has several)

    @classmethod
    def of(cls, version: registry_pb2.ModelVersion) -> Source:
        return cls(
            version.model_name,
            int(version.version),
            version.format,
            version.status == registry_pb2.VERSION_STATUS_READY,
            version.tags.get("task", ""),
            version.lineage.training_job_id,
            version.lineage.dataset_digest,
            tuple(sorted({a.name for a in version.artifacts} | set(version.required_artifacts))),
        )


@dataclasses.dataclass(frozen=True)
class Lineage:
    """Where a variant came from."""

    source: Source
    export_job_id: str
    training_job_id: str
    dataset_digest: str
    export_settings: dict[str, str]
    trace_id: str


def signature_of(path: Path) -> common_pb2.Signature:
    """The model's inputs and outputs in registry terms."""
    return signature_from(validate.describe(onnx.load(str(path), load_external_data=False)))


def signature_from(info: validate.ModelInfo) -> common_pb2.Signature:
    return common_pb2.Signature(
        inputs=[common_pb2.TensorSpec(name=t.name, datatype=t.datatype, shape=t.shape) for t in info.inputs],
        outputs=[common_pb2.TensorSpec(name=t.name, datatype=t.datatype, shape=t.shape) for t in info.outputs],
    )


async def register_variant(
    client: RegistryClient,
    target: str,
    path: Path,
    report: Report,
    lineage: Lineage,
    task: str,
    created: Callable[[int], None],
    still_running: Callable[[], bool],
) -> Ref:
    """Create, upload, then READY or REJECTED; ``created`` hears the version number as soon as it exists."""
    source = lineage.source
    quantization = {k: v for k, v in report.settings.items() if k not in lineage.export_settings}
    message = registry_pb2.Lineage(
        parent_version=source.version,
        parent_model_name=source.model_name,
        training_job_id=lineage.training_job_id,
        export_job_id=lineage.export_job_id,
        dataset_digest=lineage.dataset_digest,
        export_settings=lineage.export_settings,
        quantization_settings=quantization,
        trace_id=lineage.trace_id,
    )
    tags = {"preferred_provider": report.preferred_provider, "source": f"{source.model_name}:{source.version}"}
    if task:
        tags["task"] = task
    version = await client.create_version(
        target,
        format=ONNX,
        variant=report.variant,
        signature=signature_of(path),
        metrics=report.metrics(),
        tags=tags,
        lineage=message,
        description=f"{report.variant} export of {source.model_name}:{source.version}",
        required_artifacts=[MODEL_ARTIFACT],
    )
    created(version.version)
    await client.upload_file(target, version.version, MODEL_ARTIFACT, path, media_type=ONNX_MEDIA_TYPE)
    if not still_running():
        raise StoppedMeanwhile("the job was stopped before this variant was registered")
    if report.accepted:
        await client.set_status((target, version.version), READY)
    else:
        await client.set_status((target, version.version), REJECTED, report.reason[:1000])
    return Ref(target, int(version.version))
