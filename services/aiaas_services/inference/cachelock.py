"""A cross-process lock on one cache entry, so processes sharing a model cache download an artifact once.

Worker processes of one server (and replicas sharing a data folder) start together and resolve the same
versions: the first to take ``<file>.lock`` downloads (the client writes ``.part`` and renames only once
the sha256 matches), the others wait, then find the verified file and reuse it. The lock is an advisory
``flock``, released by the kernel when its holder exits, so a crashed downloader blocks no one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from pathlib import Path

POLL_S = 0.05


@contextlib.asynccontextmanager
async def cache_lock(target: Path) -> AsyncIterator[None]:
    """Hold the lock of ``target`` (``<target>.lock``) without blocking the event loop."""
    fd = os.open(target.with_name(target.name + ".lock"), os.O_CREAT | os.O_RDWR, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(POLL_S)
        yield
    finally:
        os.close(fd)  # releases the lock
