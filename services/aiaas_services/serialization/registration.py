"""Serialization's calls to the registry: the one place its domain meets the registry's wire types.

A version is created PENDING with its signature, metrics, tags and lineage, its files uploaded, and only
then set READY (proof passed, import uploaded) or REJECTED / FAILED (with the reason), so a crash leaves
PENDING versions, never a READY one that was not proven. Failed registry calls become domain errors here.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import grpc
import onnx

from aiaas.client.registry import RefLike, RegistryClient
from aiaas.common.v1 import common_pb2
from aiaas.registry.v1 import registry_pb2
from aiaas.wire import FAILED, ONNX, READY, REJECTED
from aiaas_services.runtime.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from aiaas_services.runtime.messages import same_named
from aiaas_services.serialization.pipeline import validate
from aiaas_services.serialization.pipeline.proof import Report
from aiaas_services.serialization.records import Ref

MODEL_ARTIFACT = "model.onnx"
ONNX_MEDIA_TYPE = "application/onnx"


_BY_CODE: dict[grpc.StatusCode, type[DomainError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: PermissionDenied,
}


@contextlib.contextmanager
def translate(step: str) -> Iterator[None]:
    """Re-raise a registry RpcError as the matching domain error, naming the step."""
    try:
        yield
    except grpc.RpcError as exc:
        code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        details = exc.details() if hasattr(exc, "details") else ""
        error = _BY_CODE.get(code, Unavailable)
        raise error(f"registry {code.name} while {step}: {details}") from exc


def rpc_failure(exc: BaseException) -> str | None:
    """ "CODE: details" when ``exc`` is a failed registry call, else None."""
    if not isinstance(exc, grpc.RpcError):
        return None
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else ""
    return f"{getattr(code, 'name', 'UNKNOWN')}: {details}"


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
    parent: str = ""  # "model:version" this version was exported from (its ``source`` tag), if any

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
            version.tags.get("source", ""),
        )


async def find_version(client: RegistryClient, ref: RefLike) -> Source:
    """The version ``ref`` names: NotFound / InvalidArgument with the registry's message, else Unavailable."""
    try:
        return Source.of(await client.get_version(ref))
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            raise NotFound(exc.details() or "no such version") from None
        if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
            raise InvalidArgument(exc.details() or "bad version reference") from None
        raise Unavailable(f"the registry did not answer: {exc.code().name}") from None


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
        **same_named(lineage, "training_job_id", "export_job_id", "dataset_digest", "export_settings", "trace_id"),
        parent_version=source.version,
        parent_model_name=source.model_name,
        quantization_settings=quantization,
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


async def register_upload(
    client: RegistryClient,
    model_name: str,
    files: Sequence[tuple[str, Path, str]],
    *,
    format: int,  # noqa: A002 - the registry's name
    variant: str,
    info: validate.ModelInfo,
    tags: Mapping[str, str],
    description: str,
    step: str,
    export_settings: Mapping[str, str] | None = None,
) -> Ref:
    """Register uploaded files (artifact name, path, media type) as one version: PENDING with every file
    required, uploaded, then READY, or FAILED when an upload fails. Registry failures name ``step``."""
    lineage = None if export_settings is None else registry_pb2.Lineage(export_settings=dict(export_settings))
    with translate(step):
        version = await client.create_version(
            model_name,
            format=format,
            variant=variant,
            signature=signature_from(info),
            tags=tags,
            lineage=lineage,
            description=description,
            required_artifacts=[name for name, _, _ in files],
        )
        ref = (model_name, version.version)
        try:
            for name, path, media_type in files:
                await client.upload_file(model_name, version.version, name, path, media_type=media_type)
        except BaseException:
            await client.set_status(ref, FAILED, "import upload failed")
            raise
        await client.set_status(ref, READY)
    return Ref(model_name, int(version.version))
