"""Helpers the inference integration tests share: a registry call from sync test code, and load that runs
in a thread of its own while a test restarts or redeploys things."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from aiaas.client.registry import RegistryClient

T = TypeVar("T")


def registry_call(address: str, work: Callable[[RegistryClient], Awaitable[T]]) -> T:
    """``await work(client)`` on an asyncio RegistryClient (actor "test") to ``address``, from sync code."""

    async def run() -> T:
        async with grpc.aio.insecure_channel(address) as channel:
            return await work(RegistryClient(channel, actor="test"))

    return asyncio.run(run())


class BackgroundLoad:
    """A context manager that runs the subclass's ``_run`` coroutine on its own thread and event loop until
    the block ends (``_stop`` is set then; ``_run`` must watch it)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self: Any) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)
