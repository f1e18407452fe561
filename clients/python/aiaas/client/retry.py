"""Retries only where they are safe: idempotent calls, on UNAVAILABLE, with jittered exponential backoff.

gRPC's own retry machinery does the work (its backoff is randomised between zero and the current cap,
which is the jitter); we only say which methods may be retried. A method is idempotent when it reads:
its name starts with one of ``READ_PREFIXES``. Writes (create, upload, set alias, start job ...) are never
retried blindly — the ones that must be retry-safe take a client-chosen ``request_id`` instead.

That policy spans about a second and a half at most: gRPC caps ``maxAttempts`` at 5 and draws each backoff
between zero and its cap. A restart of a service (a new process loading its models) takes longer, so the
typed inference clients also call through ``call_across_restart``: on UNAVAILABLE an idempotent call waits
for the channel to connect again and is sent again, until it is answered or ``RESTART_WAIT_S`` (or the
call's own deadline, if sooner) has passed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import grpc
from google.protobuf.descriptor import FileDescriptor

from aiaas.wire import READ_PREFIXES

T = TypeVar("T")

# The longest an idempotent inference call waits out a restart (within its deadline): a process start and
# model load on a busy machine, with room to spare.
RESTART_WAIT_S = 30.0
# Pause between sends while the server is connected but answers UNAVAILABLE (draining, loading): doubles to 1 s.
_FIRST_PAUSE_S = 0.05


def is_idempotent(method_name: str) -> bool:
    """True for reads (safe to retry), false for writes."""
    return method_name.startswith(READ_PREFIXES)


def _our_files() -> list[FileDescriptor]:
    from aiaas.oip.v2 import grpc_service_pb2
    from aiaas.registry.v1 import registry_pb2
    from aiaas.serialization.v1 import serialization_pb2
    from aiaas.training.v1 import training_pb2

    return [registry_pb2.DESCRIPTOR, training_pb2.DESCRIPTOR, serialization_pb2.DESCRIPTOR, grpc_service_pb2.DESCRIPTOR]


def retry_method_config(
    files: Iterable[FileDescriptor] | None = None,
    max_attempts: int = 4,
    initial_backoff_s: float = 0.1,
    max_backoff_s: float = 2.0,
) -> dict[str, Any]:
    """One ``methodConfig`` entry retrying every idempotent method of our services on UNAVAILABLE."""
    names = []
    for file in files if files is not None else _our_files():
        for service in file.services_by_name.values():
            for method in service.methods:
                # Client-streaming calls cannot be replayed safely once data has been sent.
                if is_idempotent(method.name) and not method.client_streaming:
                    names.append({"service": service.full_name, "method": method.name})
    return {
        "name": names,
        "retryPolicy": {
            "maxAttempts": max_attempts,
            "initialBackoff": f"{initial_backoff_s}s",
            "maxBackoff": f"{max_backoff_s}s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }


def retry_service_config(
    files: Iterable[FileDescriptor] | None = None,
    max_attempts: int = 4,
    initial_backoff_s: float = 0.1,
    max_backoff_s: float = 2.0,
) -> str:
    """A gRPC service config (JSON) holding only the retry policy (see aiaas.client.channels for the full one)."""
    method = retry_method_config(files, max_attempts, initial_backoff_s, max_backoff_s)
    return json.dumps({"methodConfig": [method]})


def retry_options() -> list[tuple[str, object]]:
    """Channel options with the shared service config (aiaas.client.channels), without health checking."""
    from aiaas.client.channels import service_config_json  # here: channels imports this module

    return [("grpc.enable_retries", 1), ("grpc.service_config", service_config_json(health_check=False))]


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _give_up_at(deadline: float | None, wait_s: float) -> float:
    end = time.monotonic() + wait_s
    return end if deadline is None else min(end, deadline)


def _wait_end(
    exc: grpc.RpcError,
    code: grpc.StatusCode,
    end: float | None,
    deadline: float | None,
    wait_s: float,
    on_wait: Callable[[grpc.RpcError, float], None] | None,
) -> float | None:
    """When waiting for the server after ``exc`` gives up (``on_wait`` told on the first), or None to raise it."""
    if wait_s <= 0 or code != grpc.StatusCode.UNAVAILABLE:
        return None
    if end is None:
        end = _give_up_at(deadline, wait_s)
        if on_wait is not None:
            on_wait(exc, end - time.monotonic())
    return None if time.monotonic() >= end else end


def call_across_restart(
    call: Callable[..., T],
    request: Any,
    timeout: float | None,
    channel: grpc.Channel,
    wait_s: float = RESTART_WAIT_S,
    on_wait: Callable[[grpc.RpcError, float], None] | None = None,
) -> T:
    """``call(request, timeout=...)`` for an idempotent method, sent again after UNAVAILABLE (see module doc).

    Each send gets what is left of ``timeout``. ``on_wait(error, seconds)`` is told once when waiting
    starts. When the wait runs out, the last UNAVAILABLE is raised (its details say what was unreachable).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    end: float | None = None
    pause = _FIRST_PAUSE_S
    while True:
        try:
            return call(request, timeout=_remaining(deadline))
        except grpc.RpcError as exc:
            end = _wait_end(exc, exc.code(), end, deadline, wait_s, on_wait)  # type: ignore[attr-defined]
            if end is None:
                raise
            ready = grpc.channel_ready_future(channel)
            try:
                ready.result(timeout=max(0.0, end - time.monotonic()))
            except grpc.FutureTimeoutError:
                raise exc from None
            finally:
                ready.cancel()
            time.sleep(max(0.0, min(pause, end - time.monotonic())))
            pause = min(pause * 2, 1.0)


async def call_across_restart_async(
    call: Callable[..., Awaitable[T]],
    request: Any,
    timeout: float | None,
    channel: grpc.aio.Channel,
    wait_s: float = RESTART_WAIT_S,
    on_wait: Callable[[grpc.RpcError, float], None] | None = None,
) -> T:
    """The asyncio twin of ``call_across_restart`` (``channel.channel_ready()`` instead of a future)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    end: float | None = None
    pause = _FIRST_PAUSE_S
    while True:
        try:
            return await call(request, timeout=_remaining(deadline))
        except grpc.aio.AioRpcError as exc:
            end = _wait_end(exc, exc.code(), end, deadline, wait_s, on_wait)
            if end is None:
                raise
            try:
                await asyncio.wait_for(channel.channel_ready(), max(0.0, end - time.monotonic()))
            except TimeoutError:
                raise exc from None
            await asyncio.sleep(max(0.0, min(pause, end - time.monotonic())))
            pause = min(pause * 2, 1.0)
