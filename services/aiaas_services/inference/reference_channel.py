"""The registry as the drift monitor's source of reference statistics: a version's ``reference.json``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc


class RegistryReferences:
    """``await references(name, number)``: the bytes of that version's ``reference.json``, or None when it
    has none (NOT_FOUND). The client opens on the first call (inside the running loop: aio channels bind to it)."""

    def __init__(self, registry: Callable[[], Any]) -> None:
        self.registry = registry
        self._client: Any = None

    async def __call__(self, name: str, number: int) -> bytes | None:
        if self._client is None:
            self._client = self.registry()
        try:
            data: bytes = await self._client.download_bytes((name, number), "reference.json")
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return data
