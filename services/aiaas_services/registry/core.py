"""The registry's shared machinery: its thread pool, the watchers' notifier, and what its operations return.

No gRPC here. Database and file work runs on a small thread pool so the event loop only shuffles
chunks; each mutation wakes the watchers once it has committed, so live events reach them at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiaas_services.registry.blobs import BlobStore
from aiaas_services.registry.domain import Artifact
from aiaas_services.registry.store import RegistryStore

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Notifier:
    """A generation counter watchers can wait on: bumped after every committed mutation."""

    def __init__(self) -> None:
        self.generation = 0
        self._condition = asyncio.Condition()

    async def bump(self) -> None:
        """Wake every waiter."""
        async with self._condition:
            self.generation += 1
            self._condition.notify_all()

    async def wait_past(self, seen: int, timeout: float) -> None:
        """Return once the generation moved past ``seen``, or after ``timeout`` seconds."""
        async with self._condition:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._condition.wait_for(lambda: self.generation != seen), timeout)


@dataclass
class UploadResult:
    """What an upload stored."""

    artifact: Artifact
    deduplicated: bool


@dataclass
class GarbageReport:
    """What a GC run removed (or would)."""

    blobs_deleted: int
    bytes_freed: int


class RegistryCore:
    """The store, the blob store and the thread pool every registry operation runs on."""

    def __init__(
        self,
        store: RegistryStore,
        blobs: BlobStore,
        threads: int = 8,
        watch_poll_seconds: float = 1.0,
        verify_reads: bool = True,
        max_artifact_bytes: int = 0,
    ) -> None:
        self.store = store
        self.max_artifact_bytes = max_artifact_bytes  # 0 = no limit
        self.blobs = blobs
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="registry-io")
        self.notifier = Notifier()
        self.watch_poll_seconds = watch_poll_seconds
        self.verify_reads = verify_reads
        self.draining = False
        # Held by GC for its whole run and by an upload while it commits its blob and its row, so GC
        # never removes a blob an upload is about to reference.
        self._blob_lock = asyncio.Lock()

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking work on the registry's thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    async def mutate(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a writing store call, then wake the watchers."""
        try:
            return await self.run(fn, *args, **kwargs)
        finally:
            await self.notifier.bump()

    async def drain(self) -> None:
        """End every watch stream with UNAVAILABLE (clients reconnect from their last sequence).

        Open watch streams would otherwise hold a graceful stop for its whole grace period.
        """
        self.draining = True
        await self.notifier.bump()

    def close(self) -> None:
        """Stop the thread pool."""
        self.executor.shutdown(wait=True, cancel_futures=True)

    async def clean_start(self) -> int:
        """Remove partial uploads a crash left behind."""
        removed = await self.run(self.blobs.clean_temp)
        if removed:
            logger.info("removed %d partial uploads left from a previous run", removed)
        return removed
