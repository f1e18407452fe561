"""The caller's deadline, carried on to the calls a handler makes to other services.

gRPC Python does not propagate deadlines by itself: a request that arrives with 2 s left would otherwise
call the registry with that client's own (longer) timeout, and keep the registry busy after the caller
gave up. The error interceptor records each incoming call (``enter``); the client interceptors of
``runtime.channels`` shorten every outgoing call made from that handler's task to what it has left.

A deadline binds only while its call is being handled: a background task started by the handler (and
so inheriting its context) is free of it once the call has been answered.
"""

from __future__ import annotations

import contextvars

import grpc

from aiaas_services.runtime.client_interceptors import rewriting_interceptors


class _Call:
    """An incoming call, whose deadline binds while the call is being handled."""

    __slots__ = ("active", "context")

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self.context = context
        self.active = True


_CURRENT: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("aiaas_deadline", default=None)


def enter(context: grpc.aio.ServicerContext) -> _Call:
    """Remember the incoming call for the calls made while handling it; ``leave`` it after.

    Its remaining time is read only when a handler makes an outgoing call (most calls make none).
    """
    call = _Call(context)
    _CURRENT.set(call)
    return call


def leave(call: _Call | None) -> None:
    """The call was answered: tasks it started (and that inherited its context) are no longer bound."""
    if call is not None:
        call.active = False


def remaining() -> float | None:
    """Seconds left of the incoming call being handled, or None (no deadline, or the call has ended)."""
    call = _CURRENT.get()
    if call is None or not call.active:
        return None
    left = call.context.time_remaining()
    return None if left is None else max(0.0, left)


def bounded(timeout: float | None) -> float | None:
    """``timeout`` shortened to what the incoming call has left."""
    left = remaining()
    if left is None:
        return timeout
    return left if timeout is None else min(timeout, left)


def _carried(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    """``details`` with a timeout no longer than the incoming call's remainder."""
    timeout = bounded(details.timeout)
    if timeout == details.timeout:
        return details
    return grpc.aio.ClientCallDetails(
        details.method, timeout, details.metadata, details.credentials, details.wait_for_ready
    )


def carry_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """Client interceptors that bound each outgoing call's timeout by the incoming call's remainder."""
    return rewriting_interceptors(_carried)
