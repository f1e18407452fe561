"""Which model versions are served, where they come from, and how they are swapped without a failed request.

A ``ServedModel`` is an immutable snapshot: its loaded versions, the default one and variant names. A
request looks the snapshot up and queues on a version's batcher in one step on the event loop (no await
in between), so replacing the snapshot (one dict assignment) is atomic: every request lands either on
the old or the new version, both fully loaded. Versions that leave the snapshot are drained (their queue
finishes) in a thread, then closed.

Sources: a local model repository (``served.py`` has its layout; no registry) and the registry
(``follower.py``: models resolved through an alias, their variants, and the watch that swaps them when
the alias moves). Both load through this manager's bookkeeping: builds in a thread, failures recorded
per version (reason and error id, shown by RepositoryIndex), snapshots installed and drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnxruntime as ort

from aiaas_services.inference.follower import RegistryFollower
from aiaas_services.inference.loading import LoadFailure, describe_failure
from aiaas_services.inference.metrics import count_load_failure
from aiaas_services.inference.model import LoadedModel, ModelSource, build_loaded_model
from aiaas_services.inference.providers import CUDA
from aiaas_services.inference.served import (
    LOADING_LOCAL,
    LoadOptions,
    ModelSpec,
    Pending,
    ServedModel,
    newest,
    read_variant,
    scan_repository,
)
from aiaas_services.runtime.errors import FailedPrecondition, NotFound, Unavailable

logger = logging.getLogger(__name__)


@dataclass
class ModelManager:
    """The served models, their sources, loading, unloading and hot swaps (no gRPC here)."""

    options: LoadOptions
    repository: Path | None = None
    registry_factory: Callable[[], Any] | None = None  # opens a RegistryClient inside the running loop
    specs: list[ModelSpec] = field(default_factory=list)
    cache_dir: Path = Path(".")
    variant_policy: str = "alias"
    load_variants: bool = True
    drain_seconds: float = 30.0
    backoff_max: float = 10.0
    # With a registry and no explicit specs: serve every model that has this alias, found from the events.
    default_alias: str = "production"
    served: dict[str, ServedModel] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)
    failed: dict[tuple[str, str], LoadFailure] = field(default_factory=dict)  # (name, version) -> why
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    follower: RegistryFollower | None = None  # the registry side, once started with a registry
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
                self.pending.setdefault(name, Pending(LOADING_LOCAL))
            for name in names:
                try:
                    await self.load_local(name)
                except Exception as exc:  # noqa: BLE001 - recorded with its reason and error id
                    if self.pending.get(name, Pending(LOADING_LOCAL)).reason == LOADING_LOCAL:  # else recorded
                        self.pending[name] = Pending(str(describe_failure(exc, None, f"model {name}")))
        if self.registry_factory is not None:
            self._explicit = bool(self.specs)
            self.follower = RegistryFollower(self, self.registry_factory())
            for spec in self.specs:
                self.pending.setdefault(spec.name, Pending("loading from the registry", spec))
            self.follower.start()
            for spec in self.specs:
                await self.follower.reload(spec)

    async def close(self) -> None:
        """Stop the watch and any warm-up still running, then drain every loaded version."""
        if self._warmup_control is not None:
            self._warmup_control.terminate = True
        if self.follower is not None:
            await self.follower.close()
        for task in list(self._tasks):
            task.cancel()
        snapshots = list(self.served.values())
        self.served = {}
        for served in snapshots:
            await self.drain(served.versions.values())

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
        async with self.lock(name):
            current = self.served.get(name)
            loaded: dict[str, LoadedModel] = {}
            for key in [key for key in self.failed if key[0] == name]:
                del self.failed[key]
            try:
                for version, path in versions.items():
                    source = ModelSource(name, version, path, variant=read_variant(path))
                    try:
                        loaded[version] = await self.build(source)
                    except Exception as exc:  # noqa: BLE001 - recorded; the other versions still load
                        self.record_failure(name, version, exc, path)
            except BaseException:
                await self.drain(m for m in loaded.values())
                raise
            if not loaded:
                message = f"model {name}: no version could be loaded: {self._failures(name)}"
                if current is None:
                    self.pending[name] = Pending(message)
                raise FailedPrecondition(message)
            snapshot = ServedModel(name, loaded, newest(loaded))
            self.install(snapshot, current)
            return snapshot

    async def unload(self, name: str) -> None:
        """Stop serving ``name`` (known models then answer UNAVAILABLE); queued requests still finish."""
        async with self.lock(name):
            current = self.served.pop(name, None)
            if current is None and name not in self.pending:
                raise NotFound(f"model {name!r} is not loaded")
            spec = self.pending[name].spec if name in self.pending else self.spec(name)
            self.pending[name] = Pending("unloaded (RepositoryModelLoad loads it again)", spec)
        if current is not None:
            await self.drain(current.versions.values())

    async def forget(self, name: str) -> None:
        """Stop serving a discovered model whose alias went away: unknown from now on; queued requests finish."""
        async with self.lock(name):
            self.specs = [s for s in self.specs if s.name != name]
            self.pending.pop(name, None)
            current = self.served.pop(name, None)
        if current is not None:
            logger.info("unloading %s (draining %d version(s))", name, len(current.versions))
            await self.drain(current.versions.values())

    async def load(self, name: str) -> None:
        """Load (or reload) a model from wherever it is configured: registry spec first, else the repository."""
        spec = self.spec(name)
        if spec is not None and self.follower is not None:
            if not await self.follower.reload(spec):
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

    # ---- bookkeeping (also the registry follower's) ------------------------------------------------

    async def build(self, source: ModelSource) -> LoadedModel:
        """Sessions, batcher and warm-up for one version, built in a thread."""
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

    def record_failure(self, name: str, version: str, exc: BaseException, path: Path | None) -> LoadFailure:
        """Log a failed load of one version (reason + error id), count it, keep it for RepositoryIndex."""
        failure = describe_failure(exc, path, f"{name} version {version}")
        self.failed[name, version] = failure
        count_load_failure(name, version)
        return failure

    def _warmup(self) -> Any:
        if self._warmup_control is None:
            self._warmup_control = ort.RunOptions()
        return self._warmup_control

    def install(self, snapshot: ServedModel, previous: ServedModel | None) -> None:
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
                self.spawn(self.drain(retired))

    async def drain(self, models: Iterable[LoadedModel]) -> None:
        """Refuse new requests to these versions, let their queues finish, close them."""
        retired = list(models)
        for model in retired:
            model.batcher.stop_accepting()
        for model in retired:
            await asyncio.to_thread(model.close, self.drain_seconds)

    def spawn(self, coro: Any) -> None:
        """Run ``coro`` in a task that ``close`` cancels."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def lock(self, name: str) -> asyncio.Lock:
        """The lock that serialises loads and swaps of one model."""
        return self._locks.setdefault(name, asyncio.Lock())

    def spec(self, name: str) -> ModelSpec | None:
        """The registry spec configured (or discovered) for ``name``."""
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
