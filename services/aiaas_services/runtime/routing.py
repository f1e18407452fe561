"""One method table per server: each call's handler found with one dict lookup, interceptors run in that lookup.

Why not grpc.aio's own routing: the generated ``add_*Servicer_to_server`` functions *register* every method
with the core, and grpc.aio then keeps one pending "next call of this method" future per registered method
and waits on all of them with ``asyncio.wait`` for every batch of incoming calls — that wait adds and
removes a callback on each of those futures, so a service's twenty methods (inference, monitoring, health,
reflection) cost every call far more than the call's own routing. Served here as one generic handler,
there is one pending future whatever the number of methods. And grpc.aio runs each server interceptor as
a coroutine with its own continuation per call; the ``HandlerInterceptor``s (tracing, metrics, auth, error
mapping) only ever swap the handler, so the table runs their ``wrap`` inline while it looks the handler up:
the same handler grpc.aio would build, without a coroutine per interceptor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc

from aiaas_services.runtime.interceptors import HandlerInterceptor


class MethodTable(grpc.GenericRpcHandler):
    """Every method a server serves, by full name, wrapped on each call by ``links`` (the first outermost).

    Registered methods are looked up first, then the generic handlers in the order added (grpc's order).
    """

    def __init__(self, links: Sequence[HandlerInterceptor] = ()) -> None:
        self.methods: dict[str, grpc.RpcMethodHandler] = {}
        self.generic: list[grpc.GenericRpcHandler] = []
        self._innermost_first = tuple(reversed(links))

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        """The handler that serves this call, wrapped by the interceptors; None for an unknown method."""
        method: str = handler_call_details.method
        handler = self.methods.get(method)
        if handler is None:
            for generic in self.generic:
                handler = generic.service(handler_call_details)
                if handler is not None:
                    break
            else:
                return None
        for link in self._innermost_first:
            handler = link.wrap(handler, method, handler_call_details)
        return handler


class Registrar:
    """Stands in for the server while services register: their handlers go to the table, anything else to
    the server (``add_*Servicer_to_server`` calls both ``add_generic_rpc_handlers`` and
    ``add_registered_method_handlers``; the table takes both, the core registers neither)."""

    def __init__(self, server: grpc.aio.Server, table: MethodTable) -> None:
        self._server = server
        self._table = table

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        """Generic handlers, asked in order after the registered methods."""
        self._table.generic.extend(generic_rpc_handlers)

    def add_registered_method_handlers(self, service_name: str, method_handlers: Mapping[str, Any]) -> None:
        """Methods of one service, found by their full name ``/service/method``."""
        for name, handler in method_handlers.items():
            self._table.methods[f"/{service_name}/{name}"] = handler

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


def split_links(
    interceptors: Sequence[grpc.aio.ServerInterceptor],
) -> tuple[list[grpc.aio.ServerInterceptor], list[HandlerInterceptor]]:
    """``interceptors`` as (those grpc.aio must run, the trailing ``HandlerInterceptor``s the table runs).

    Only the trailing run can move into the lookup: the lookup happens after every grpc.aio interceptor.
    """
    cut = len(interceptors)
    while cut > 0 and isinstance(interceptors[cut - 1], HandlerInterceptor):
        cut -= 1
    outer = list(interceptors[:cut])
    links = [i for i in interceptors[cut:] if isinstance(i, HandlerInterceptor)]
    return outer, links
