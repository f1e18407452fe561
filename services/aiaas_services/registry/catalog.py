"""The registry's domain operations, one coroutine per RPC: models, versions, aliases, artifacts, watch.

The servicer calls these; they run store calls on the thread pool (``RegistryCore``) and wake the
watchers after each committed change. No gRPC here.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence

from aiaas_services.registry.domain import AliasMove, Event, Model, ModelFormat, Status, Version
from aiaas_services.registry.transfers import ArtifactTransfers
from aiaas_services.runtime.errors import InvalidArgument, Unavailable
from aiaas_services.runtime.names import check_name


class Registry(ArtifactTransfers):
    """Everything the servicer calls; each method is a coroutine."""

    # -- models -----------------------------------------------------------------------------------

    async def create_model(
        self, name: str, description: str, tags: dict[str, str], exist_ok: bool, actor: str
    ) -> Model:
        return await self.mutate(self.store.create_model, name, description, tags, exist_ok, actor)

    async def get_model(self, name: str) -> Model:
        return await self.run(self.store.get_model, name)

    async def list_models(self, page_size: int, page_token: str, name_prefix: str) -> tuple[list[Model], str]:
        return await self.run(self.store.list_models, page_size, page_token, name_prefix)

    async def update_model(
        self, name: str, description: str | None, tags: dict[str, str], remove_tags: list[str], actor: str
    ) -> Model:
        """Change a model's description (None leaves it) and tags."""
        return await self.mutate(self.store.update_model, name, description, tags, remove_tags, actor)

    async def delete_model(self, name: str, force: bool, actor: str) -> int:
        """Delete a model (with ``force``, its versions too); returns how many versions went."""
        return await self.mutate(self.store.delete_model, name, force, actor)

    # -- versions (create_version, with its inline artifacts, is in ArtifactTransfers) -------------

    async def get_version(self, name: str, number: int, alias: str) -> Version:
        return await self.run(self.store.get_version, name, number, alias)

    async def list_versions(
        self,
        name: str,
        page_size: int,
        page_token: str,
        status: Status,
        format: ModelFormat,  # noqa: A002 - the proto's name
        parent_version: int,
    ) -> tuple[list[Version], str]:
        return await self.run(self.store.list_versions, name, page_size, page_token, status, format, parent_version)

    async def update_version(
        self,
        name: str,
        number: int,
        alias: str,
        metrics: dict[str, float],
        tags: dict[str, str],
        description: str | None,
        actor: str,
    ) -> Version:
        return await self.mutate(self.store.update_version, name, number, alias, metrics, tags, description, actor)

    async def set_status(self, name: str, number: int, alias: str, status: Status, reason: str, actor: str) -> Version:
        """Move a version to READY, FAILED or REJECTED."""
        if status not in (Status.READY, Status.FAILED, Status.REJECTED):
            raise InvalidArgument("status must be VERSION_STATUS_READY, _FAILED or _REJECTED")
        return await self.mutate(self.store.set_status, name, number, alias, status, reason, actor)

    # -- aliases ----------------------------------------------------------------------------------

    async def set_alias(self, model_name: str, alias: str, version: int, actor: str, reason: str) -> AliasMove:
        return await self.mutate(self.store.set_alias, model_name, alias, version, actor, reason)

    async def delete_alias(self, model_name: str, alias: str, actor: str) -> AliasMove:
        return await self.mutate(self.store.delete_alias, model_name, alias, actor)

    async def rollback_alias(self, model_name: str, alias: str, actor: str, reason: str) -> AliasMove:
        """Point the alias back where it was before its last move."""
        return await self.mutate(self.store.rollback_alias, model_name, alias, actor, reason)

    async def alias_history(
        self, model_name: str, alias: str, page_size: int, page_token: str
    ) -> tuple[list[AliasMove], str]:
        return await self.run(self.store.alias_history, model_name, alias, page_size, page_token)

    # -- watch ------------------------------------------------------------------------------------

    async def watch(self, after: int, model_names: Sequence[str] = (), batch: int = 500) -> AsyncGenerator[Event, None]:
        """Events with sequence > ``after`` (-1 = only new ones), then live ones, forever."""
        for name in model_names:
            check_name(name)
        cursor = await self.run(self.store.last_sequence) if after < 0 else after
        while True:
            if self.draining:
                raise Unavailable(f"the registry is shutting down; reconnect with after_sequence={cursor}")
            seen = self.notifier.generation
            events = await self.run(self.store.events_after, cursor, list(model_names), batch)
            for event in events:
                yield event
                cursor = event.sequence
            if len(events) < batch:
                await self.notifier.wait_past(seen, self.watch_poll_seconds)
