"""Idempotent calls wait out a restart: sent again after UNAVAILABLE within their deadline, never past it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from aiaas.client.retry import call_across_restart, call_across_restart_async


class Refused(grpc.RpcError):
    """An RpcError with a code, as a stub raises it."""

    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        super().__init__(details)
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def failing(*codes: grpc.StatusCode) -> tuple[Any, list[float | None]]:
    """A call that raises the given codes in turn (then answers "ok"), recording the timeout of each send."""
    timeouts: list[float | None] = []
    left = list(codes)

    def call(request: Any, timeout: float | None = None) -> str:
        timeouts.append(timeout)
        if left:
            raise Refused(left.pop(0), "failed to connect to all addresses")
        return "ok"

    return call, timeouts


@pytest.fixture
def server() -> Iterator[tuple[grpc.Server, grpc.Channel]]:
    """A live server (so the channel connects) and a plain channel to it."""
    server = grpc.server(ThreadPoolExecutor(2))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield server, channel
    settle_and_close(channel)
    server.stop(0)


def settle_and_close(channel: grpc.Channel) -> None:
    """Close once grpc's connectivity-polling thread has seen the wait end (it polls every 0.2 s and, closed
    under it, prints a 'Channel closed' traceback from its thread)."""
    time.sleep(0.3)
    channel.close()


def test_a_refusal_other_than_unavailable_is_raised_at_once(server: tuple[grpc.Server, grpc.Channel]) -> None:
    call, sends = failing(grpc.StatusCode.NOT_FOUND)
    with pytest.raises(Refused) as caught:
        call_across_restart(call, None, 5.0, server[1])
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND and len(sends) == 1


def test_unavailable_answers_are_sent_again_within_the_deadline(server: tuple[grpc.Server, grpc.Channel]) -> None:
    told: list[float] = []
    call, sends = failing(grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE)
    assert call_across_restart(call, None, 5.0, server[1], on_wait=lambda e, s: told.append(s)) == "ok"
    assert len(sends) == 3 and len(told) == 1 and 4.0 < told[0] <= 5.0
    timeouts = [t for t in sends if t is not None]
    assert len(timeouts) == 3 and max(timeouts) <= 5.0 and timeouts[2] < timeouts[0]  # each send gets what is left


def test_nothing_listening_gives_up_with_the_unavailable_at_the_deadline() -> None:
    channel = grpc.insecure_channel("127.0.0.1:1")
    call, sends = failing(*[grpc.StatusCode.UNAVAILABLE] * 100)
    started = time.monotonic()
    with pytest.raises(Refused) as caught:
        call_across_restart(call, None, 0.6, channel)
    took = time.monotonic() - started
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and "connect" in caught.value.details()
    assert len(sends) == 1  # it waited for the channel instead of sending in a loop
    assert 0.5 <= took < 3.0, took
    settle_and_close(channel)


def test_waiting_is_bounded_by_wait_s_and_off_at_zero() -> None:
    channel = grpc.insecure_channel("127.0.0.1:1")
    call, sends = failing(*[grpc.StatusCode.UNAVAILABLE] * 100)
    started = time.monotonic()
    with pytest.raises(Refused):
        call_across_restart(call, None, None, channel, wait_s=0.4)  # no deadline: the wait still ends
    assert time.monotonic() - started < 3.0
    call, sends = failing(grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(Refused):
        call_across_restart(call, None, 5.0, channel, wait_s=0)
    assert len(sends) == 1
    settle_and_close(channel)


async def test_the_async_twin_sends_again_and_gives_up_at_the_deadline() -> None:
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    left = [grpc.StatusCode.UNAVAILABLE] * 2

    async def call(request: Any, timeout: float | None = None) -> str:
        if left:
            raise grpc.aio.AioRpcError(left.pop(0), grpc.aio.Metadata(), grpc.aio.Metadata(), "draining")
        return "ok"

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        assert await call_across_restart_async(call, None, 5.0, channel) == "ok" and not left
    await server.stop(0)

    async def down(request: Any, timeout: float | None = None) -> str:
        raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "gone")

    async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:
        started = asyncio.get_running_loop().time()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call_across_restart_async(down, None, 0.5, channel)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert 0.4 <= asyncio.get_running_loop().time() - started < 3.0
