"""The RegistryService servicer: proto in, codec, domain call (``catalog.Registry``), proto out.
Errors are mapped by the runtime."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from aiaas.registry.v1 import registry_pb2, registry_pb2_grpc
from aiaas.wire import ACTOR_METADATA, UPLOAD_ACCEPTED_METADATA
from aiaas_services.registry import codec
from aiaas_services.registry.catalog import Registry
from aiaas_services.registry.idempotency import RequestKeys, fingerprint, run_once


def actor_of(context: grpc.aio.ServicerContext, explicit: str = "") -> str:
    """Who is calling: the request's actor field, else the x-aiaas-actor header, else the peer address."""
    if explicit:
        return explicit[:256]
    for key, value in context.invocation_metadata() or ():
        if key == ACTOR_METADATA and isinstance(value, str) and value:
            return value[:256]
    return str(context.peer() or "unknown")[:256]


Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


class _CallSnapshot:
    """The caller's metadata and peer read while the call is live, for work that outlives it.

    A keyed call runs on after a caller's deadline or cancellation; asking grpc for the peer of a call it
    has finished is not safe, so ``actor_of`` reads this copy. Anything else goes to the real context.
    """

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self._context = context
        self._metadata = tuple(context.invocation_metadata() or ())
        self._peer = context.peer()

    def invocation_metadata(self) -> tuple[Any, ...]:
        return self._metadata

    def peer(self) -> str:
        return str(self._peer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def idempotent(handler: Handler) -> Handler:
    """A mutating call honouring its request's ``request_id`` (see ``registry.idempotency``)."""
    method = handler.__name__
    response_type = getattr(registry_pb2, f"{method}Response")

    @functools.wraps(handler)
    async def call(self: RegistryServicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
        key = request.request_id
        if not key:
            return await handler(self, request, context)
        bare = type(request)()
        bare.CopyFrom(request)
        bare.request_id = ""

        snapshot = _CallSnapshot(context)

        async def work() -> bytes:
            response = await handler(self, request, snapshot)
            return bytes(response.SerializeToString())

        stored = await run_once(
            self.keys, self.registry.run, method, key, fingerprint(bare.SerializeToString(deterministic=True)), work
        )
        return response_type.FromString(stored)

    return call  # type: ignore[return-value]


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    """Thin gRPC layer over ``Registry``."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.keys = RequestKeys(registry.store.engine)

    @idempotent
    async def CreateModel(
        self, request: registry_pb2.CreateModelRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.CreateModelResponse:
        model = await self.registry.create_model(
            request.name,
            request.description,
            dict(request.tags),
            request.exist_ok,
            actor_of(context),
        )
        return registry_pb2.CreateModelResponse(model=codec.model_to_proto(model))

    async def GetModel(
        self, request: registry_pb2.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.GetModelResponse:
        model = await self.registry.get_model(request.name)
        return registry_pb2.GetModelResponse(model=codec.model_to_proto(model))

    async def ListModels(
        self, request: registry_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.ListModelsResponse:
        models, token = await self.registry.list_models(request.page_size, request.page_token, request.name_prefix)
        return registry_pb2.ListModelsResponse(models=[codec.model_to_proto(m) for m in models], next_page_token=token)

    @idempotent
    async def UpdateModel(
        self, request: registry_pb2.UpdateModelRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.UpdateModelResponse:
        model = await self.registry.update_model(
            request.name,
            request.description if request.update_description else None,
            dict(request.tags),
            list(request.remove_tags),
            actor_of(context),
        )
        return registry_pb2.UpdateModelResponse(model=codec.model_to_proto(model))

    @idempotent
    async def DeleteModel(
        self, request: registry_pb2.DeleteModelRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.DeleteModelResponse:
        count = await self.registry.delete_model(request.name, request.force, actor_of(context))
        return registry_pb2.DeleteModelResponse(deleted_versions=count)

    @idempotent
    async def CreateVersion(
        self, request: registry_pb2.CreateVersionRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.CreateVersionResponse:
        version = await self.registry.create_version(
            request.model_name,
            codec.new_version_from_proto(request),
            request.create_model,
            actor_of(context),
            codec.inline_artifacts_from_proto(request.artifacts),
            request.ready,
        )
        return registry_pb2.CreateVersionResponse(version=codec.version_to_proto(version))

    async def GetVersion(
        self, request: registry_pb2.GetVersionRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.GetVersionResponse:
        version = await self.registry.get_version(*codec.ref_from_proto(request.ref))
        return registry_pb2.GetVersionResponse(version=codec.version_to_proto(version))

    async def ListVersions(
        self, request: registry_pb2.ListVersionsRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.ListVersionsResponse:
        versions, token = await self.registry.list_versions(
            request.model_name,
            request.page_size,
            request.page_token,
            codec.status_from_proto(request.status),
            codec.format_from_proto(request.format),
            request.parent_version,
        )
        return registry_pb2.ListVersionsResponse(
            versions=[codec.version_to_proto(v) for v in versions], next_page_token=token
        )

    @idempotent
    async def UpdateVersion(
        self, request: registry_pb2.UpdateVersionRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.UpdateVersionResponse:
        name, number, alias = codec.ref_from_proto(request.ref)
        version = await self.registry.update_version(
            name,
            number,
            alias,
            dict(request.metrics),
            dict(request.tags),
            request.description if request.update_description else None,
            actor_of(context),
        )
        return registry_pb2.UpdateVersionResponse(version=codec.version_to_proto(version))

    @idempotent
    async def SetVersionStatus(
        self, request: registry_pb2.SetVersionStatusRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.SetVersionStatusResponse:
        name, number, alias = codec.ref_from_proto(request.ref)
        status = codec.status_from_proto(request.status)
        version = await self.registry.set_status(name, number, alias, status, request.reason, actor_of(context))
        return registry_pb2.SetVersionStatusResponse(version=codec.version_to_proto(version))

    async def UploadArtifact(
        self, request_iterator: AsyncIterator[registry_pb2.UploadArtifactRequest], context: grpc.aio.ServicerContext
    ) -> registry_pb2.UploadArtifactResponse:
        header, parts = await codec.upload_from_proto(request_iterator)
        result = await self.registry.upload(
            header.model_name,
            header.version,
            header.artifact_name,
            header.media_type,
            header.size_bytes,
            parts,
            actor_of(context),
            accepted=lambda: context.send_initial_metadata(((UPLOAD_ACCEPTED_METADATA, "1"),)),
        )
        return registry_pb2.UploadArtifactResponse(
            artifact=codec.artifact_to_proto(result.artifact), deduplicated=result.deduplicated
        )

    async def DownloadArtifact(
        self, request: registry_pb2.DownloadArtifactRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[registry_pb2.DownloadArtifactResponse]:
        name, number, alias = codec.ref_from_proto(request.ref)
        artifact, resolved, chunks = await self.registry.download(
            name, number, alias, request.artifact_name, request.offset, request.chunk_size
        )
        description = registry_pb2.ArtifactDescription(
            artifact=codec.artifact_to_proto(artifact), version=resolved, offset=request.offset
        )
        yield registry_pb2.DownloadArtifactResponse(description=description)
        async for chunk in chunks:
            yield registry_pb2.DownloadArtifactResponse(chunk=chunk)

    @idempotent
    async def SetAlias(
        self, request: registry_pb2.SetAliasRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.SetAliasResponse:
        move = await self.registry.set_alias(
            request.model_name,
            request.alias,
            request.version,
            actor_of(context, request.actor),
            request.reason,
        )
        return registry_pb2.SetAliasResponse(move=codec.move_to_proto(move))

    @idempotent
    async def DeleteAlias(
        self, request: registry_pb2.DeleteAliasRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.DeleteAliasResponse:
        move = await self.registry.delete_alias(request.model_name, request.alias, actor_of(context, request.actor))
        return registry_pb2.DeleteAliasResponse(move=codec.move_to_proto(move))

    @idempotent
    async def RollbackAlias(
        self, request: registry_pb2.RollbackAliasRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.RollbackAliasResponse:
        move = await self.registry.rollback_alias(
            request.model_name,
            request.alias,
            actor_of(context, request.actor),
            request.reason,
        )
        return registry_pb2.RollbackAliasResponse(move=codec.move_to_proto(move))

    async def ListAliasHistory(
        self, request: registry_pb2.ListAliasHistoryRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.ListAliasHistoryResponse:
        moves, token = await self.registry.alias_history(
            request.model_name, request.alias, request.page_size, request.page_token
        )
        return registry_pb2.ListAliasHistoryResponse(
            moves=[codec.move_to_proto(m) for m in moves], next_page_token=token
        )

    async def WatchEvents(
        self, request: registry_pb2.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[registry_pb2.WatchEventsResponse]:
        async for event in self.registry.watch(request.after_sequence, list(request.model_names)):
            yield registry_pb2.WatchEventsResponse(event=codec.event_to_proto(event))

    async def CollectGarbage(
        self, request: registry_pb2.CollectGarbageRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.CollectGarbageResponse:
        report = await self.registry.collect_garbage(request.dry_run)
        return registry_pb2.CollectGarbageResponse(blobs_deleted=report.blobs_deleted, bytes_freed=report.bytes_freed)
