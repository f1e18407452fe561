"""Session fixtures' clients and stubs on an insecure channel to a test service, closed at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc

T = TypeVar("T")


def on_channel(address: str, make: Callable[[grpc.Channel], T]) -> Iterator[T]:
    """Yield ``make(channel)`` for a channel to ``address``; the channel closes when the fixture ends."""
    with grpc.insecure_channel(address) as channel:
        yield make(channel)
