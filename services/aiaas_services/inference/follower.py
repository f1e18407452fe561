"""Serving models resolved in the registry, and following the registry's events to keep them current.

A model is resolved through an alias (``production`` by default) or a version number; its READY sibling
variants of the same lineage load beside it. When a served alias moves, the model is resolved again, new
files downloaded into the cache and digest-verified, sessions built and warmed (by the manager), and the
snapshot swapped. The watch reconnects with jittered backoff and resumes after the last event seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiaas.wire import ONNX, READY, EventType
from aiaas_services.inference.cachelock import cache_lock
from aiaas_services.inference.model import LoadedModel, ModelSource
from aiaas_services.inference.providers import choose_variant
from aiaas_services.inference.served import MODEL_FILE, ModelSpec, Pending, ServedModel
from aiaas_services.runtime.errors import DomainError, FailedPrecondition, InvalidArgument, Unavailable

if TYPE_CHECKING:  # the manager owns its follower: a runtime import would be circular
    from aiaas_services.inference.manager import ModelManager

logger = logging.getLogger(__name__)


class RegistryFollower:
    """The registry side of a ``ModelManager``: resolve, download and swap its registry specs; watch events."""

    def __init__(self, models: ModelManager, registry: Any) -> None:
        """``registry``: an ``aiaas.client.registry.RegistryClient`` opened inside the running loop."""
        self.models = models
        self.registry = registry
        self._reloads: dict[str, str] = {}
        self._watch_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start following registry events (in a task; ``close`` stops it)."""
        self._watch_task = asyncio.create_task(self._watch(), name="registry-watch")

    async def close(self) -> None:
        """Stop the watch."""
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch_task

    async def reload(self, spec: ModelSpec) -> bool:
        """Resolve ``spec`` now; load what changed; swap. Returns False (and keeps serving) on failure."""
        async with self.models.lock(spec.name):
            if spec not in self.models.specs:  # forgotten (its alias was deleted) while this reload waited
                return False
            current = self.models.served.get(spec.name)
            try:
                snapshot = await self._resolve_registry(spec, current)
            except Exception as exc:
                why = _reason(exc)
                logger.warning(
                    "cannot load %s@%s from the registry: %s",
                    spec.name,
                    spec.selector,
                    why,
                    exc_info=not _expected(exc),
                )
                fallback = await self._last_good(spec) if current is None else None
                if fallback is not None:
                    self.models.install(fallback, None)
                elif current is None:
                    self.models.pending[spec.name] = Pending(why, spec)
                return False
            if snapshot is not None:
                self.models.install(snapshot, current)
                if spec.alias:
                    self._remember(spec, snapshot.default)
            return True

    def _last_good_file(self, spec: ModelSpec) -> Path:
        return self.models.cache_dir / spec.name / f"last-good@{spec.alias}"

    def _remember(self, spec: ModelSpec, version: str) -> None:
        """Note the version served as ``spec``'s alias, for a process that starts while the alias names a
        version that cannot load (a worker or replica restarted during a bad deploy; see ``_last_good``)."""
        target = self._last_good_file(spec)
        with contextlib.suppress(OSError):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
            tmp.write_text(version)
            os.replace(tmp, target)

    async def _last_good(self, spec: ModelSpec) -> ServedModel | None:
        """What this data folder last served as ``spec``'s alias, loaded again, when nothing is served yet.

        Workers and replicas sharing the data folder keep serving the previous version through a deploy
        that cannot load; one that (re)starts meanwhile must not answer UNAVAILABLE while they serve, so
        it loads that version (by number, verified as any download) and follows the alias from there.
        """
        try:
            version = self._last_good_file(spec).read_text().strip()
        except OSError:
            return None
        if not spec.alias or not version.isdigit():
            return None
        try:
            snapshot = await self._resolve_registry(
                ModelSpec(spec.name, version=int(version)), None, keep_failures=True
            )
        except Exception as exc:  # noqa: BLE001 - nothing to fall back to: the alias's failure stands
            logger.warning("cannot load %s version %s either: %s", spec.name, version, _reason(exc))
            return None
        assert snapshot is not None  # nothing was current
        logger.warning(
            "serving %s version %s (what %s@%s named before) until the alias names a version that loads",
            spec.name,
            version,
            spec.name,
            spec.alias,
        )
        return dataclasses.replace(snapshot, alias=spec.alias)

    async def _resolve_registry(
        self, spec: ModelSpec, current: ServedModel | None, keep_failures: bool = False
    ) -> ServedModel | None:
        head = await self.registry.get_version((spec.name, spec.selector))
        if head.format != ONNX:
            raise InvalidArgument(f"{spec.name} version {head.version} is not an ONNX model")
        if head.status != READY:
            raise Unavailable(f"{spec.name} version {head.version} is not READY")
        chosen = [head]
        if self.models.load_variants and head.lineage.parent_version:
            siblings = await self.registry.list_versions(
                spec.name, status=READY, format=ONNX, parent_version=head.lineage.parent_version
            )
            chosen += [
                v
                for v in siblings
                if v.version != head.version
                and v.lineage.parent_model_name == head.lineage.parent_model_name
                and v.variant
                and v.variant not in {c.variant for c in chosen}
            ]
        # Failures of versions the alias no longer names are history (the log and the metric keep them):
        # RepositoryIndex shows what is served and what the alias names now.
        wanted = {str(v.version) for v in chosen}
        stale = [] if keep_failures else [key for key in self.models.failed if key[0] == spec.name]
        for key in [key for key in stale if key[1] not in wanted]:
            del self.models.failed[key]
        existing = {m.version: m for m in (current.versions.values() if current else [])}
        loaded: dict[str, LoadedModel] = {}
        fresh: list[LoadedModel] = []
        try:
            for version in chosen:
                label = str(version.version)
                digest = _artifact_digest(version)
                reuse = existing.get(label)
                if reuse is not None and reuse.source.sha256 == digest:
                    loaded[label] = reuse
                    continue
                try:
                    path = await self._download(version, digest)
                except Exception as exc:
                    failure = self.models.record_failure(spec.name, label, exc, None)
                    if version is head:
                        raise FailedPrecondition(f"{spec.name} version {label} failed to load: {failure}") from exc
                    continue  # a sibling variant that fails never keeps the head out
                self.models.failed.pop((spec.name, label), None)
                source = ModelSource(
                    spec.name,
                    label,
                    path,
                    variant=version.variant,
                    origin="registry",
                    alias=spec.alias,
                    sha256=digest,
                    tags=dict(version.tags),
                )
                try:
                    model = await self.models.build(source)
                except Exception as exc:
                    failure = self.models.record_failure(spec.name, label, exc, path)
                    if version is head:
                        raise FailedPrecondition(f"{spec.name} version {label} failed to load: {failure}") from exc
                    continue  # a sibling variant that fails never keeps the head out
                fresh.append(model)
                loaded[label] = model
        except BaseException:
            await self.models.drain(fresh)
            raise
        default = str(head.version)
        if self.models.variant_policy == "hardware" and head.variant:
            provider = loaded[default].provider
            by_variant = {m.source.variant: m for m in loaded.values() if m.source.variant}
            picked = choose_variant(by_variant, provider)
            if picked is not None:
                default = by_variant[picked].version
        if current is not None and current.default == default and set(current.versions) == set(loaded) and not fresh:
            return None
        return ServedModel(spec.name, loaded, default, spec.alias)

    async def _download(self, version: Any, digest: str) -> Path:
        """model.onnx of a registry version into the cache (verified by the client).

        A cached copy is reused only while it still hashes to its digest: one damaged on disk after it
        was verified is removed and downloaded again, instead of being served or failing every load.
        """
        folder: Path = self.models.cache_dir / version.model_name / str(version.version)
        target = folder / f"{digest or 'unknown'}.onnx"
        if digest and await _cached(target, digest):
            return target
        folder.mkdir(parents=True, exist_ok=True)
        async with cache_lock(target):  # workers/replicas sharing the cache: one downloads, the rest reuse it
            if not (digest and await _cached(target, digest)):
                await self.registry.download_to((version.model_name, version.version), MODEL_FILE, target)
                logger.info("downloaded %s version %s into the cache", version.model_name, version.version)
        return target

    async def _watch(self) -> None:
        """Follow registry events for the served models, reconnecting with jittered exponential backoff.

        The first connection replays the served models' history from sequence 0, which gives the cursor;
        later ones resume after the last sequence seen, so no event is missed however long the registry
        was away. Reloads are coalesced per model, so a replay costs one resolve, not one per event. Each
        reconnect also resolves every model again (the registry may have been restored from a backup).
        """
        names = [] if self.models.discovering else [spec.name for spec in self.models.specs]  # [] = every model
        cursor = 0
        backoff = 0.2
        reconnecting = False
        while True:
            try:
                if reconnecting:
                    for spec in self.models.specs:
                        self.request_reload(spec)
                async for event in self.registry.watch(after_sequence=cursor, model_names=names):
                    backoff = 0.2
                    cursor = event.sequence
                    self._on_event(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning(
                    "registry watch interrupted (%s); reconnecting in %.1fs",
                    _reason(exc),
                    backoff,
                    exc_info=not _expected(exc),
                )
            reconnecting = True
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, self.models.backoff_max)

    def request_reload(self, spec: ModelSpec) -> None:
        """Resolve ``spec`` again soon; requests made while one runs fold into one more run."""
        state = self._reloads.get(spec.name)
        if state is not None:
            self._reloads[spec.name] = "again"
            return
        self._reloads[spec.name] = "running"
        self.models.spawn(self._reload_loop(spec))

    async def _reload_loop(self, spec: ModelSpec) -> None:
        try:
            while True:
                await self.reload(spec)
                if self._reloads.get(spec.name) != "again":
                    return
                self._reloads[spec.name] = "running"
        finally:
            self._reloads.pop(spec.name, None)

    def _on_event(self, event: Any) -> None:
        if self.models.discovering and event.alias == self.models.default_alias:
            if event.type == EventType.ALIAS_MOVED and self.models.spec(event.model_name) is None:
                logger.info(
                    "registry event %d: %s@%s exists; serving it", event.sequence, event.model_name, event.alias
                )
                self.models.specs.append(ModelSpec(event.model_name, alias=self.models.default_alias))
            elif event.type == EventType.ALIAS_DELETED and self.models.spec(event.model_name) is not None:
                logger.info(
                    "registry event %d: %s@%s deleted; unloading", event.sequence, event.model_name, event.alias
                )
                self.models.spawn(self.models.forget(event.model_name))
                return
        for spec in self.models.specs:
            if spec.name != event.model_name:
                continue
            relevant = event.type in (
                EventType.ALIAS_MOVED,
                EventType.ALIAS_DELETED,
            ) and (event.alias == spec.alias)
            relevant |= event.type == EventType.VERSION_STATUS_CHANGED and (
                self.models.load_variants or spec.name in self.models.pending
            )
            if relevant:
                if spec.name in self.models.pending and self.models.pending[spec.name].reason.startswith("unloaded"):
                    continue
                logger.info("registry event %d (%s) for %s: resolving again", event.sequence, event.type, spec.name)
                self.request_reload(spec)


def _artifact_digest(version: Any) -> str:
    """The sha256 the registry recorded for a version's model.onnx."""
    for artifact in version.artifacts:
        if artifact.name == MODEL_FILE:
            return str(artifact.sha256)
    raise Unavailable(f"{version.model_name} version {version.version} has no {MODEL_FILE} artifact")


async def _cached(target: Path, digest: str) -> bool:
    """Whether ``target`` exists and hashes to ``digest``; a copy that does not is removed (and logged)."""
    if not target.is_file():
        return False

    def sha256() -> str:
        with target.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()

    if await asyncio.to_thread(sha256) == digest:
        return True
    logger.warning(
        "cached %s no longer matches its sha256 (damaged on disk); removing it to download again", target.name
    )
    target.unlink(missing_ok=True)
    return False


def _expected(exc: BaseException) -> bool:
    """A domain error or an RPC status (no traceback worth logging), as opposed to a bug."""
    return isinstance(exc, DomainError) or callable(getattr(exc, "details", None))


def _reason(exc: BaseException) -> str:
    """A short, client-safe description of a load failure."""
    details = getattr(exc, "details", None)
    if callable(details):
        code = exc.code().name if hasattr(exc, "code") else "ERROR"
        return f"registry said {code}: {details()}"
    if isinstance(exc, DomainError):
        return str(exc)
    return "unexpected error (the server log has the traceback)"
