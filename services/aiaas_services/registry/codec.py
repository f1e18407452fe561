"""Conversions between the registry's protos and its domain types."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

from google.protobuf import json_format, timestamp_pb2

from aiaas.common.v1 import common_pb2
from aiaas.registry.v1 import registry_pb2
from aiaas_services.registry.domain import (
    AliasMove,
    Artifact,
    Event,
    InlineArtifact,
    Model,
    ModelFormat,
    NewVersion,
    Status,
    Version,
)
from aiaas_services.runtime.errors import InvalidArgument
from aiaas_services.runtime.messages import same_named


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp:
    """A datetime as a protobuf Timestamp (unset when None)."""
    stamp = timestamp_pb2.Timestamp()
    if value is not None:
        stamp.FromDatetime(value)
    return stamp


def model_to_proto(model: Model) -> registry_pb2.RegisteredModel:
    """A domain model as a RegisteredModel."""
    return registry_pb2.RegisteredModel(
        **same_named(model, "name", "description", "tags", "aliases", "latest_version"),
        created_at=timestamp(model.created_at),
        updated_at=timestamp(model.updated_at),
    )


def artifact_to_proto(artifact: Artifact) -> registry_pb2.Artifact:
    """A domain artifact as its proto."""
    return registry_pb2.Artifact(**same_named(artifact, "name", "sha256", "size_bytes", "media_type"))


def new_version_from_proto(request: registry_pb2.CreateVersionRequest) -> NewVersion:
    """What a CreateVersion request says, as JSON-ready domain data."""
    return NewVersion(
        format=ModelFormat(request.format) if request.format in ModelFormat._value2member_map_ else ModelFormat(0),
        variant=request.variant,
        signature=json_format.MessageToDict(request.signature, preserving_proto_field_name=True),
        metrics=dict(request.metrics),
        tags=dict(request.tags),
        lineage=json_format.MessageToDict(request.lineage, preserving_proto_field_name=True),
        description=request.description,
        required_artifacts=list(request.required_artifacts),
    )


def _parse(data: dict[str, Any], message: Any) -> Any:
    json_format.ParseDict(data, message, ignore_unknown_fields=True)
    return message


# ModelVersion fields that are the domain Version's own, unconverted.
_VERSION_FIELDS = [
    "model_name",
    "variant",
    "status_reason",
    "metrics",
    "tags",
    "description",
    "created_by",
    "aliases",
    "required_artifacts",
]


def version_to_proto(version: Version) -> registry_pb2.ModelVersion:
    """A domain version as a ModelVersion."""
    return registry_pb2.ModelVersion(
        **same_named(version, *_VERSION_FIELDS),
        version=version.number,
        format=int(version.format),  # type: ignore[arg-type]
        status=int(version.status),  # type: ignore[arg-type]
        signature=_parse(version.signature, common_pb2.Signature()),
        lineage=_parse(version.lineage, registry_pb2.Lineage()),
        artifacts=[artifact_to_proto(a) for a in version.artifacts],
        created_at=timestamp(version.created_at),
        updated_at=timestamp(version.updated_at),
    )


def move_to_proto(move: AliasMove) -> registry_pb2.AliasMove:
    """A domain alias move as its proto."""
    return registry_pb2.AliasMove(
        **same_named(move, "model_name", "alias", "from_version", "to_version", "actor", "reason"),
        moved_at=timestamp(move.moved_at),
    )


def event_to_proto(event: Event) -> registry_pb2.Event:
    """A domain event as its proto."""
    return registry_pb2.Event(
        sequence=event.sequence,
        type=int(event.type),  # type: ignore[arg-type]
        model_name=event.model_name,
        version=event.version,
        alias=event.alias,
        from_version=event.from_version,
        status=int(event.status),  # type: ignore[arg-type]
        time=timestamp(event.time),
        actor=event.actor,
    )


def ref_from_proto(ref: common_pb2.VersionRef) -> tuple[str, int, str]:
    """(model, number, alias) of a VersionRef; INVALID_ARGUMENT when it selects nothing."""
    selector = ref.WhichOneof("selector")
    if selector is None:
        raise InvalidArgument("ref needs a version number or an alias")
    return ref.model_name, ref.version if selector == "version" else 0, ref.alias if selector == "alias" else ""


def status_from_proto(value: int) -> Status:
    """A VersionStatus number as the domain's enum (an unknown number is UNSPECIFIED)."""
    return Status(value) if value in Status._value2member_map_ else Status.UNSPECIFIED


def format_from_proto(value: int) -> ModelFormat:
    """A ModelFormat number as the domain's enum (an unknown number is UNSPECIFIED)."""
    return ModelFormat(value) if value in ModelFormat._value2member_map_ else ModelFormat.UNSPECIFIED


def inline_artifacts_from_proto(artifacts: Iterable[registry_pb2.InlineArtifact]) -> list[InlineArtifact]:
    """CreateVersion's inline artifacts."""
    return [InlineArtifact(a.name, a.media_type, a.content, a.sha256) for a in artifacts]


async def upload_from_proto(
    requests: AsyncIterator[registry_pb2.UploadArtifactRequest],
) -> tuple[registry_pb2.UploadHeader, AsyncIterator[bytes | str]]:
    """An upload stream as its header and its parts: byte chunks, then the sha256 hex string."""
    first = await anext(aiter(requests), None)
    if first is None or first.WhichOneof("part") != "header":
        raise InvalidArgument("an upload starts with an UploadHeader message")

    async def parts() -> AsyncIterator[bytes | str]:
        async for message in requests:
            kind = message.WhichOneof("part")
            if kind == "chunk":
                yield message.chunk
            elif kind == "sha256":
                yield message.sha256
            else:
                raise InvalidArgument("only one UploadHeader is allowed, as the first message")

    return first.header, parts()
