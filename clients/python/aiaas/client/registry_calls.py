"""The registry's unary RPCs and its event stream as coroutines: models, versions, aliases, GC, watch.

``RegistryClient`` (``registry.py``) adds the artifact transfers on top.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import grpc

from aiaas.client.refs import RefLike, default_actor, version_ref
from aiaas.common.v1 import common_pb2
from aiaas.registry.v1 import registry_pb2, registry_pb2_grpc
from aiaas.wire import ACTOR_METADATA


class RegistryCalls:
    """The unary RPCs and watch of ``aiaas.registry.v1.RegistryService`` over a ``grpc.aio`` channel."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        actor: str | None = None,
        timeout: float | None = 30.0,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.stub = registry_pb2_grpc.RegistryServiceStub(channel)
        self.actor = actor if actor is not None else default_actor()
        self.timeout = timeout
        self._metadata = ((ACTOR_METADATA, self.actor), *metadata)

    async def _call(self, method: Any, request: Any) -> Any:
        return await method(request, timeout=self.timeout, metadata=self._metadata)

    async def _all_pages(self, method: Any, request: Any, field: str) -> list[Any]:
        """Every item of a paged List call: ``request`` goes again with each next page token."""
        items: list[Any] = []
        while True:
            page = await self._call(method, request)
            items.extend(getattr(page, field))
            if not page.next_page_token:
                return items
            request.page_token = page.next_page_token

    # -- models -----------------------------------------------------------------------------------

    async def create_model(
        self, name: str, description: str = "", tags: Mapping[str, str] | None = None, exist_ok: bool = False
    ) -> registry_pb2.RegisteredModel:
        """Register a model (ALREADY_EXISTS unless ``exist_ok``)."""
        request = registry_pb2.CreateModelRequest(name=name, description=description, tags=tags, exist_ok=exist_ok)
        return (await self._call(self.stub.CreateModel, request)).model

    async def get_model(self, name: str) -> registry_pb2.RegisteredModel:
        """One model."""
        return (await self._call(self.stub.GetModel, registry_pb2.GetModelRequest(name=name))).model

    async def list_models(self, name_prefix: str = "", page_size: int = 200) -> list[registry_pb2.RegisteredModel]:
        """Every model (all pages), by name."""
        request = registry_pb2.ListModelsRequest(page_size=page_size, name_prefix=name_prefix)
        return await self._all_pages(self.stub.ListModels, request, "models")

    async def update_model(
        self,
        name: str,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        remove_tags: Sequence[str] = (),
    ) -> registry_pb2.RegisteredModel:
        """Change a model's description and tags."""
        request = registry_pb2.UpdateModelRequest(
            name=name,
            description=description or "",
            update_description=description is not None,
            tags=tags,
            remove_tags=list(remove_tags),
        )
        return (await self._call(self.stub.UpdateModel, request)).model

    async def delete_model(self, name: str, force: bool = False) -> int:
        """Delete a model and its versions; returns how many versions were deleted."""
        request = registry_pb2.DeleteModelRequest(name=name, force=force)
        return int((await self._call(self.stub.DeleteModel, request)).deleted_versions)

    # -- versions ---------------------------------------------------------------------------------

    async def create_version(
        self,
        model_name: str,
        format: int = registry_pb2.MODEL_FORMAT_UNSPECIFIED,  # noqa: A002 - the proto's name
        variant: str = "",
        signature: common_pb2.Signature | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        lineage: registry_pb2.Lineage | None = None,
        description: str = "",
        create_model: bool = True,
        required_artifacts: Sequence[str] = (),
        artifacts: Sequence[registry_pb2.InlineArtifact] = (),
        ready: bool = False,
        request_id: str = "",
    ) -> registry_pb2.ModelVersion:
        """Create the next (PENDING) version of a model, creating the model too by default.

        ``artifacts`` (see ``inline_artifact``) are stored in the same call; with ``ready`` as well, the
        version comes back READY, or nothing is created. Pass the same ``request_id`` when retrying a
        call whose outcome is unknown (a deadline, a dropped connection): the registry answers it with
        the first call's version instead of creating another."""
        request = registry_pb2.CreateVersionRequest(
            model_name=model_name,
            format=format,  # type: ignore[arg-type]
            variant=variant,
            signature=signature,
            metrics=metrics,
            tags=tags,
            lineage=lineage,
            description=description,
            create_model=create_model,
            required_artifacts=list(required_artifacts),
            artifacts=list(artifacts),
            ready=ready,
            request_id=request_id,
        )
        return (await self._call(self.stub.CreateVersion, request)).version

    async def get_version(self, ref: RefLike) -> registry_pb2.ModelVersion:
        """One version by number or alias."""
        request = registry_pb2.GetVersionRequest(ref=version_ref(ref))
        return (await self._call(self.stub.GetVersion, request)).version

    async def list_versions(
        self,
        model_name: str,
        status: int = registry_pb2.VERSION_STATUS_UNSPECIFIED,
        format: int = registry_pb2.MODEL_FORMAT_UNSPECIFIED,  # noqa: A002 - the proto's name
        parent_version: int = 0,
        page_size: int = 200,
    ) -> list[registry_pb2.ModelVersion]:
        """Every version of a model (all pages), newest first."""
        request = registry_pb2.ListVersionsRequest(
            model_name=model_name,
            page_size=page_size,
            status=status,  # type: ignore[arg-type]
            format=format,  # type: ignore[arg-type]
            parent_version=parent_version,
        )
        return await self._all_pages(self.stub.ListVersions, request, "versions")

    versions = list_versions

    async def update_version(
        self,
        ref: RefLike,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        description: str | None = None,
    ) -> registry_pb2.ModelVersion:
        """Merge metrics and tags into a version, or set its description."""
        request = registry_pb2.UpdateVersionRequest(
            ref=version_ref(ref),
            metrics=metrics,
            tags=tags,
            description=description or "",
            update_description=description is not None,
        )
        return (await self._call(self.stub.UpdateVersion, request)).version

    async def set_status(self, ref: RefLike, status: int, reason: str = "") -> registry_pb2.ModelVersion:
        """Move a version to READY, FAILED or REJECTED."""
        request = registry_pb2.SetVersionStatusRequest(ref=version_ref(ref), status=status, reason=reason)  # type: ignore[arg-type]
        return (await self._call(self.stub.SetVersionStatus, request)).version

    async def collect_garbage(self, dry_run: bool = False) -> registry_pb2.CollectGarbageResponse:
        """Delete blobs no version references."""
        return await self._call(self.stub.CollectGarbage, registry_pb2.CollectGarbageRequest(dry_run=dry_run))

    # -- aliases ----------------------------------------------------------------------------------

    async def set_alias(
        self, model_name: str, alias: str, version: int, actor: str = "", reason: str = "", request_id: str = ""
    ) -> registry_pb2.AliasMove:
        """Point an alias at a READY version (a deploy); ``request_id`` makes a retry return the first move."""
        request = registry_pb2.SetAliasRequest(
            model_name=model_name,
            alias=alias,
            version=version,
            actor=actor or self.actor,
            reason=reason,
            request_id=request_id,
        )
        return (await self._call(self.stub.SetAlias, request)).move

    async def delete_alias(self, model_name: str, alias: str, actor: str = "") -> registry_pb2.AliasMove:
        """Remove an alias."""
        request = registry_pb2.DeleteAliasRequest(model_name=model_name, alias=alias, actor=actor or self.actor)
        return (await self._call(self.stub.DeleteAlias, request)).move

    async def rollback(self, model_name: str, alias: str, actor: str = "", reason: str = "") -> registry_pb2.AliasMove:
        """Move an alias back to where it pointed before its last move."""
        request = registry_pb2.RollbackAliasRequest(
            model_name=model_name, alias=alias, actor=actor or self.actor, reason=reason
        )
        return (await self._call(self.stub.RollbackAlias, request)).move

    async def alias_history(
        self, model_name: str, alias: str = "", page_size: int = 200
    ) -> list[registry_pb2.AliasMove]:
        """Every move of an alias (or of all the model's aliases), newest first."""
        request = registry_pb2.ListAliasHistoryRequest(model_name=model_name, alias=alias, page_size=page_size)
        return await self._all_pages(self.stub.ListAliasHistory, request, "moves")

    # -- events -----------------------------------------------------------------------------------

    async def watch(
        self,
        after_sequence: int = 0,
        model_names: Sequence[str] = (),
        reconnect: bool = False,
        retry_seconds: float = 1.0,
    ) -> AsyncGenerator[registry_pb2.Event, None]:
        """Events after ``after_sequence`` (-1 = only new ones), then live ones.

        With ``reconnect``, a stream the registry ended (restart: UNAVAILABLE or CANCELLED) is reopened
        from the last sequence seen, so no event is missed or repeated.
        """
        cursor = after_sequence
        while True:
            request = registry_pb2.WatchEventsRequest(after_sequence=cursor, model_names=list(model_names))
            call = self.stub.WatchEvents(request, metadata=self._metadata)
            try:
                async for response in call:
                    cursor = response.event.sequence
                    yield response.event
                return
            except grpc.aio.AioRpcError as exc:
                # A registry restarting ends streams with UNAVAILABLE (or CANCELLED when its grace ran out).
                if not reconnect or exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                    raise
                await asyncio.sleep(retry_seconds)
            finally:
                call.cancel()
