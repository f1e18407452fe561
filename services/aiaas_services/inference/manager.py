"""Which model versions are served, where they come from, and how they are swapped without a failed request.

A ``ServedModel`` is an immutable snapshot: its loaded versions, the default one and variant names. A
request looks the snapshot up and queues on a version's batcher in one step on the event loop (no await
in between), so replacing the snapshot (one dict assignment) is atomic: every request lands either on
the old or the new version, both fully loaded. Versions that leave the snapshot are drained (their queue
finishes) in a thread, then closed.

Sources: a local model repository (``<repo>/<name>/<version>/model.onnx``, no registry) and the
registry (a model resolved through an alias, ``production`` by default; its READY sibling variants of
the same lineage loaded beside it). The registry is watched; when a served alias moves the model is
resolved again, new files downloaded and digest-verified, sessions built and warmed in a thread, and
the snapshot swapped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnxruntime as ort

from aiaas.wire import ONNX, READY, EventType
from aiaas_services.inference.batching import BatchPolicy
from aiaas_services.inference.cachelock import cache_lock
from aiaas_services.inference.loading import LoadFailure, describe_failure
from aiaas_services.inference.metrics import count_load_failure
from aiaas_services.inference.model import LoadedModel, ModelSource, build_loaded_model
from aiaas_services.inference.providers import CUDA, ProviderConfig, choose_variant
from aiaas_services.runtime.errors import DomainError, FailedPrecondition, InvalidArgument, NotFound, Unavailable

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"


@dataclass(frozen=True)
class ServedModel:
    """A model's loaded versions; replaced whole, never mutated."""

    name: str
    versions: dict[str, LoadedModel]
    default: str
    alias: str = ""

    def by_variant(self, variant: str) -> LoadedModel | None:
        """The loaded version whose variant is ``variant``."""
        for model in self.versions.values():
            if model.source.variant == variant:
                return model
        return None


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the ``models`` setting: ``name``, ``name@alias`` or ``name@<version number>``."""

    name: str
    alias: str = ""
    version: int = 0

    @classmethod
    def parse(cls, text: str, default_alias: str) -> ModelSpec:
        """Read ``name[@alias|@number]``."""
        name, _, selector = text.strip().partition("@")
        if not name:
            raise ValueError(f"models: empty model name in {text!r}")
        if selector.isdigit():
            return cls(name, version=int(selector))
        return cls(name, alias=selector or default_alias)

    @property
    def selector(self) -> str | int:
        """What to resolve in the registry."""
        return self.version or self.alias


LOADING_LOCAL = "loading from the model repository"


def scan_repository(root: Path) -> dict[str, dict[str, Path]]:
    """``<root>/<name>/<version>/model.onnx`` -> {name: {version: path}} (numeric version folders only)."""
    found: dict[str, dict[str, Path]] = {}
    if not root.is_dir():
        return found
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        versions = {
            v.name: v / MODEL_FILE for v in model_dir.iterdir() if v.name.isdigit() and (v / MODEL_FILE).is_file()
        }
        if versions:
            found[model_dir.name] = versions
    return found


def newest(versions: Iterable[str]) -> str:
    """The highest numeric version label."""
    return max(versions, key=int)


@dataclass
class LoadOptions:
    """How sessions are built (from the settings)."""

    config: ProviderConfig
    instances: int
    policy: BatchPolicy
    max_elements: int
    warmup_runs: int
    io_binding: bool = True
    observe_factory: Callable[[str, str], Any] | None = None


@dataclass
class _Pending:
    """A configured model that is not (yet) loaded, and why."""

    reason: str
    spec: ModelSpec | None = None


@dataclass
class ModelManager:
    """The served models, their sources, loading, unloading and hot swaps (no gRPC here)."""

    options: LoadOptions
    repository: Path | None = None
    registry_factory: Callable[[], Any] | None = None  # opens a RegistryClient inside the running loop
    registry: Any = None  # aiaas.client.registry.RegistryClient once started
    specs: list[ModelSpec] = field(default_factory=list)
    cache_dir: Path = Path(".")
    variant_policy: str = "alias"
    load_variants: bool = True
    drain_seconds: float = 30.0
    backoff_max: float = 10.0
    # With a registry and no explicit specs: serve every model that has this alias, found from the events.
    default_alias: str = "production"
    served: dict[str, ServedModel] = field(default_factory=dict)
    pending: dict[str, _Pending] = field(default_factory=dict)
    failed: dict[tuple[str, str], LoadFailure] = field(default_factory=dict)  # (name, version) -> why
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _reloads: dict[str, str] = field(default_factory=dict)
    _watch_task: asyncio.Task[None] | None = None
    _warmup_control: Any = None  # onnxruntime.RunOptions shared by warm-ups; close() terminates them
    _explicit: bool = True
    swaps: int = 0
    started: asyncio.Event = field(default_factory=asyncio.Event)  # set once start() has run

    # ---- lookups (hot path) -------------------------------------------------------------------------

    def resolve(self, name: str, version: str = "", variant: str = "") -> LoadedModel:
        """The loaded version a request goes to: NOT_FOUND for unknown names/versions, UNAVAILABLE if not loaded."""
        served = self.served.get(name)
        if served is None:
            pending = self.pending.get(name)
            if pending is not None:
                raise Unavailable(f"model {name} is not ready: {pending.reason}")
            raise NotFound(f"model {name!r} is not served here; RepositoryIndex lists the models")
        if variant:
            model = served.by_variant(variant)
            if model is None or (version and model.version != version):
                have = sorted(m.source.variant for m in served.versions.values() if m.source.variant)
                raise NotFound(f"model {name}: variant {variant!r} is not loaded (loaded variants: {have or 'none'})")
            return model
        if version:
            found = served.versions.get(version)
            if found is None and (name, version) in self.failed:
                raise Unavailable(f"model {name}: version {version} failed to load: {self.failed[name, version]}")
            if found is None:
                raise NotFound(
                    f"model {name}: version {version!r} is not loaded (loaded: {', '.join(sorted(served.versions))})"
                )
            return found
        return served.versions[served.default]

    def is_ready(self, name: str, version: str = "") -> bool:
        """Whether requests for this model (and version) would be served."""
        served = self.served.get(name)
        return served is not None and (not version or version in served.versions)

    def known(self, name: str) -> bool:
        """Served, pending, or present in the local repository."""
        if name in self.served or name in self.pending:
            return True
        return self.repository is not None and name in scan_repository(self.repository)

    @property
    def discovering(self) -> bool:
        """Whether the served set is every model with the default alias (no explicit list configured)."""
        return self.registry_factory is not None and not self._explicit

    # ---- start / stop -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every local-repository model and every configured registry model; start the watch."""
        try:
            await self._start()
        finally:
            self.started.set()

    async def wait_started(self, deadline: float | None) -> None:
        """Wait until start() has run, or until ``deadline`` (a ``time.monotonic()`` instant)."""
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.started.wait(), timeout)

    async def _start(self) -> None:
        if self.repository is not None:
            names = scan_repository(self.repository)
            for name in names:  # known while loading: a request for one is UNAVAILABLE (retried), not NOT_FOUND
                self.pending.setdefault(name, _Pending(LOADING_LOCAL))
            for name in names:
                try:
                    await self.load_local(name)
                except Exception as exc:  # noqa: BLE001 - recorded with its reason and error id
                    if self.pending.get(name, _Pending(LOADING_LOCAL)).reason == LOADING_LOCAL:  # else recorded
                        self.pending[name] = _Pending(str(describe_failure(exc, None, f"model {name}")))
        if self.registry_factory is not None:
            self._explicit = bool(self.specs)
            self.registry = self.registry_factory()
            for spec in self.specs:
                self.pending.setdefault(spec.name, _Pending("loading from the registry", spec))
            self._watch_task = asyncio.create_task(self._watch(), name="registry-watch")
            for spec in self.specs:
                await self.reload_from_registry(spec)

    async def close(self) -> None:
        """Stop the watch and any warm-up still running, then drain every loaded version."""
        if self._warmup_control is not None:
            self._warmup_control.terminate = True
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch_task
        for task in list(self._tasks):
            task.cancel()
        snapshots = list(self.served.values())
        self.served = {}
        for served in snapshots:
            await self._drain(served.versions.values())

    # ---- local repository ---------------------------------------------------------------------------

    async def load_local(self, name: str) -> ServedModel:
        """(Re)load every version of ``name`` from the local repository and swap in those that load.

        Versions load one by one: one that fails is recorded in ``failed`` (reason and error id, shown by
        RepositoryIndex) and never keeps the others out. FAILED_PRECONDITION when none loads.
        """
        if self.repository is None:
            raise NotFound(f"model {name!r}: no local model repository is configured")
        versions = scan_repository(self.repository).get(name)
        if not versions:
            raise NotFound(f"model {name!r} is not in the model repository {self.repository}")
        async with self._lock(name):
            current = self.served.get(name)
            loaded: dict[str, LoadedModel] = {}
            for key in [key for key in self.failed if key[0] == name]:
                del self.failed[key]
            try:
                for version, path in versions.items():
                    source = ModelSource(name, version, path, variant=_read_variant(path))
                    try:
                        loaded[version] = await self._build(source)
                    except Exception as exc:  # noqa: BLE001 - recorded; the other versions still load
                        self._record_failure(name, version, exc, path)
            except BaseException:
                await self._drain(m for m in loaded.values())
                raise
            if not loaded:
                message = f"model {name}: no version could be loaded: {self._failures(name)}"
                if current is None:
                    self.pending[name] = _Pending(message)
                raise FailedPrecondition(message)
            snapshot = ServedModel(name, loaded, newest(loaded))
            self._install(snapshot, current)
            return snapshot

    async def unload(self, name: str) -> None:
        """Stop serving ``name`` (known models then answer UNAVAILABLE); queued requests still finish."""
        async with self._lock(name):
            current = self.served.pop(name, None)
            if current is None and name not in self.pending:
                raise NotFound(f"model {name!r} is not loaded")
            spec = self.pending[name].spec if name in self.pending else self._spec(name)
            self.pending[name] = _Pending("unloaded (RepositoryModelLoad loads it again)", spec)
        if current is not None:
            await self._drain(current.versions.values())

    async def forget(self, name: str) -> None:
        """Stop serving a discovered model whose alias went away: unknown from now on; queued requests finish."""
        async with self._lock(name):
            self.specs = [s for s in self.specs if s.name != name]
            self.pending.pop(name, None)
            current = self.served.pop(name, None)
        if current is not None:
            logger.info("unloading %s (draining %d version(s))", name, len(current.versions))
            await self._drain(current.versions.values())

    async def load(self, name: str) -> None:
        """Load (or reload) a model from wherever it is configured: registry spec first, else the repository."""
        spec = self._spec(name)
        if spec is not None and self.registry is not None:
            if not await self.reload_from_registry(spec):
                reason = self.pending[name].reason if name in self.pending else "unknown"
                raise Unavailable(f"model {name}: could not load from the registry: {reason}")
            return
        snapshot = await self.load_local(name)
        self.pending.pop(name, None)
        if any(key[0] == name for key in self.failed):
            raise FailedPrecondition(
                f"model {name}: {self._failures(name)}; serving version(s) {', '.join(sorted(snapshot.versions))}"
            )

    def _failures(self, name: str) -> str:
        """'version 2 failed to load: <reason> (error id …)' for each failed version of ``name``."""
        return "; ".join(
            f"version {version} failed to load: {failure}"
            for (model, version), failure in sorted(self.failed.items())
            if model == name
        )

    # ---- registry -----------------------------------------------------------------------------------

    async def reload_from_registry(self, spec: ModelSpec) -> bool:
        """Resolve ``spec`` now; load what changed; swap. Returns False (and keeps serving) on failure."""
        async with self._lock(spec.name):
            if spec not in self.specs:  # forgotten (its alias was deleted) while this reload waited
                return False
            current = self.served.get(spec.name)
            try:
                snapshot = await self._resolve_registry(spec, current)
            except Exception as exc:
                reason = _reason(exc)
                logger.warning(
                    "cannot load %s@%s from the registry: %s",
                    spec.name,
                    spec.selector,
                    reason,
                    exc_info=not _expected(exc),
                )
                fallback = await self._last_good(spec) if current is None else None
                if fallback is not None:
                    self._install(fallback, None)
                elif current is None:
                    self.pending[spec.name] = _Pending(reason, spec)
                return False
            if snapshot is not None:
                self._install(snapshot, current)
                if spec.alias:
                    self._remember(spec, snapshot.default)
            return True

    def _last_good_file(self, spec: ModelSpec) -> Path:
        return self.cache_dir / spec.name / f"last-good@{spec.alias}"

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
        if self.load_variants and head.lineage.parent_version:
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
        stale = [] if keep_failures else [key for key in self.failed if key[0] == spec.name]
        for key in [key for key in stale if key[1] not in wanted]:
            del self.failed[key]
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
                    failure = self._record_failure(spec.name, label, exc, None)
                    if version is head:
                        raise FailedPrecondition(f"{spec.name} version {label} failed to load: {failure}") from exc
                    continue  # a sibling variant that fails never keeps the head out
                self.failed.pop((spec.name, label), None)
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
                    model = await self._build(source)
                except Exception as exc:
                    failure = self._record_failure(spec.name, label, exc, path)
                    if version is head:
                        raise FailedPrecondition(f"{spec.name} version {label} failed to load: {failure}") from exc
                    continue  # a sibling variant that fails never keeps the head out
                fresh.append(model)
                loaded[label] = model
        except BaseException:
            await self._drain(fresh)
            raise
        default = str(head.version)
        if self.variant_policy == "hardware" and head.variant:
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
        folder: Path = self.cache_dir / version.model_name / str(version.version)
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
        names = [] if self.discovering else [spec.name for spec in self.specs]  # [] = every model
        cursor = 0
        backoff = 0.2
        reconnecting = False
        while True:
            try:
                if reconnecting:
                    for spec in self.specs:
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
            backoff = min(backoff * 2, self.backoff_max)

    def request_reload(self, spec: ModelSpec) -> None:
        """Resolve ``spec`` again soon; requests made while one runs fold into one more run."""
        state = self._reloads.get(spec.name)
        if state is not None:
            self._reloads[spec.name] = "again"
            return
        self._reloads[spec.name] = "running"
        self._spawn(self._reload_loop(spec))

    async def _reload_loop(self, spec: ModelSpec) -> None:
        try:
            while True:
                await self.reload_from_registry(spec)
                if self._reloads.get(spec.name) != "again":
                    return
                self._reloads[spec.name] = "running"
        finally:
            self._reloads.pop(spec.name, None)

    def _on_event(self, event: Any) -> None:
        if self.discovering and event.alias == self.default_alias:
            if event.type == EventType.ALIAS_MOVED and self._spec(event.model_name) is None:
                logger.info(
                    "registry event %d: %s@%s exists; serving it", event.sequence, event.model_name, event.alias
                )
                self.specs.append(ModelSpec(event.model_name, alias=self.default_alias))
            elif event.type == EventType.ALIAS_DELETED and self._spec(event.model_name) is not None:
                logger.info(
                    "registry event %d: %s@%s deleted; unloading", event.sequence, event.model_name, event.alias
                )
                self._spawn(self.forget(event.model_name))
                return
        for spec in self.specs:
            if spec.name != event.model_name:
                continue
            relevant = event.type in (
                EventType.ALIAS_MOVED,
                EventType.ALIAS_DELETED,
            ) and (event.alias == spec.alias)
            relevant |= event.type == EventType.VERSION_STATUS_CHANGED and (
                self.load_variants or spec.name in self.pending
            )
            if relevant:
                if spec.name in self.pending and self.pending[spec.name].reason.startswith("unloaded"):
                    continue
                logger.info("registry event %d (%s) for %s: resolving again", event.sequence, event.type, spec.name)
                self.request_reload(spec)

    # ---- helpers ------------------------------------------------------------------------------------

    async def _build(self, source: ModelSource) -> LoadedModel:
        loop = asyncio.get_running_loop()
        opts = self.options
        observe = opts.observe_factory(source.name, source.version) if opts.observe_factory else None
        return await asyncio.to_thread(
            build_loaded_model,
            source,
            opts.config,
            opts.instances,
            opts.policy,
            loop,
            opts.max_elements,
            opts.warmup_runs,
            opts.io_binding,
            observe,
            self._warmup(),
        )

    def _record_failure(self, name: str, version: str, exc: BaseException, path: Path | None) -> LoadFailure:
        """Log a failed load of one version (reason + error id), count it, keep it for RepositoryIndex."""
        failure = describe_failure(exc, path, f"{name} version {version}")
        self.failed[name, version] = failure
        count_load_failure(name, version)
        return failure

    def _warmup(self) -> Any:
        if self._warmup_control is None:
            self._warmup_control = ort.RunOptions()
        return self._warmup_control

    def _install(self, snapshot: ServedModel, previous: ServedModel | None) -> None:
        """Swap the snapshot in (atomic on the loop) and drain versions that left it."""
        self.served[snapshot.name] = snapshot
        self.pending.pop(snapshot.name, None)
        self.swaps += 1
        logger.info(
            "serving %s: default version %s, loaded %s",
            snapshot.name,
            snapshot.default,
            ", ".join(sorted(snapshot.versions, key=int)),
        )
        if previous is not None:
            kept = {id(m) for m in snapshot.versions.values()}
            retired = [m for m in previous.versions.values() if id(m) not in kept]
            if retired:
                self._spawn(self._drain(retired))

    async def _drain(self, models: Iterable[LoadedModel]) -> None:
        retired = list(models)
        for model in retired:
            model.batcher.stop_accepting()
        for model in retired:
            await asyncio.to_thread(model.close, self.drain_seconds)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _spec(self, name: str) -> ModelSpec | None:
        return next((s for s in self.specs if s.name == name), None)

    def index(self) -> list[tuple[str, str, str, str]]:
        """(name, version, state, reason) for every known model version."""
        rows: list[tuple[str, str, str, str]] = []
        names = set(self.served) | set(self.pending)
        local = scan_repository(self.repository) if self.repository is not None else {}
        names |= set(local)
        for name in sorted(names):
            served = self.served.get(name)
            failed = {v: str(f) for (model, v), f in self.failed.items() if model == name}
            if served is not None:
                states = {v: ("READY", "") for v in served.versions}
                states.update({v: ("UNAVAILABLE", reason) for v, reason in failed.items() if v not in served.versions})
                rows += [(name, v, *states[v]) for v in sorted(states, key=int)]
            elif failed:
                rows += [(name, v, "UNAVAILABLE", failed[v]) for v in sorted(failed, key=int)]
            elif name in self.pending:
                rows.append((name, "", "UNAVAILABLE", self.pending[name].reason))
            else:
                rows += [(name, v, "UNAVAILABLE", "not loaded") for v in sorted(local.get(name, {}), key=int)]
        return rows

    def preferred_provider_is_cuda(self) -> bool:
        """Whether CUDA is first in the configured providers."""
        return bool(self.options.config.preferred) and self.options.config.preferred[0] == CUDA


def _artifact_digest(version: Any) -> str:
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


def _read_variant(path: Path) -> str:
    """A local version may name its variant in ``variant.txt`` beside model.onnx."""
    marker = path.parent / "variant.txt"
    return marker.read_text().strip() if marker.is_file() else ""


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
