"""``MethodTable``: one lookup serves every method a server registered, with the interceptors run inside it."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from aiaas_services.runtime.interceptors import ErrorMappingInterceptor, HandlerInterceptor, wrap_handler
from aiaas_services.runtime.routing import MethodTable, Registrar, split_links
from aiaas_services.runtime.server import build_server
from aiaas_services.runtime.settings import ServiceSettings

Details = namedtuple("Details", "method invocation_metadata")


class Tagging(HandlerInterceptor):
    """Wraps each unary handler so its answer records this interceptor's tag (outermost tag first)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def wrap(self, handler: grpc.RpcMethodHandler, method: str, details: Any) -> grpc.RpcMethodHandler:
        def unary(fn: Any) -> Any:
            async def tagged(request: Any, context: Any) -> Any:
                return [self.tag, *(await fn(request, context))]

            return tagged

        return wrap_handler(handler, unary=unary, stream=lambda fn: fn)


class Plain(grpc.aio.ServerInterceptor):
    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        return await continuation(details)


def _answering(word: str) -> grpc.RpcMethodHandler:
    async def answer(request: Any, context: Any) -> list[str]:
        return [word]

    return grpc.unary_unary_rpc_method_handler(answer)


async def test_registered_methods_come_first_then_generic_handlers_in_order_each_wrapped_first_link_outermost() -> None:
    table = MethodTable([Tagging("a"), Tagging("b")])
    registrar = Registrar(grpc.aio.server(), table)
    registrar.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler("svc", {"Both": _answering("generic"), "Only": _answering("first")}),
            grpc.method_handlers_generic_handler("svc", {"Only": _answering("second")}),
        ]
    )
    registrar.add_registered_method_handlers("svc", {"Both": _answering("registered")})

    async def answer(method: str) -> Sequence[str] | None:
        handler = table.service(Details(method, ()))
        return None if handler is None else await handler.unary_unary(b"", None)

    assert await answer("/svc/Both") == ["a", "b", "registered"]  # registered wins, as in grpc
    assert await answer("/svc/Only") == ["a", "b", "first"]
    assert await answer("/svc/Missing") is None  # grpc answers UNIMPLEMENTED; nothing is wrapped


def test_only_the_trailing_handler_interceptors_move_into_the_lookup() -> None:
    a, b, plain = Tagging("a"), Tagging("b"), Plain()
    assert split_links([a, plain, b]) == ([a, plain], [b])
    assert split_links([a, b]) == ([], [a, b])
    assert split_links([a, plain]) == ([a, plain], [])


async def test_a_built_server_registers_no_method_with_the_core_and_serves_them_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registered: list[str] = []
    monkeypatch.setattr(
        grpc.aio._server.Server,  # type: ignore[attr-defined]
        "add_registered_method_handlers",
        lambda self, service, handlers: registered.append(service),
    )

    class App:
        def register(self, server: grpc.aio.Server) -> Sequence[str]:
            # What generated add_*Servicer_to_server code does: both kinds of registration.
            handlers = {"Hi": grpc.unary_unary_rpc_method_handler(_hello)}
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.Svc", handlers),))
            server.add_registered_method_handlers("t.Svc", handlers)
            return []

        async def start(self) -> None:
            return None

        async def close(self) -> None:
            return None

    running = await build_server(ServiceSettings(port=0), App(), interceptors=[])
    try:
        # One pending "next call" future in grpc.aio however many methods (see runtime.routing).
        assert registered == []
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            check = channel.unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
            await running.set_serving(True)
            reply = await check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            assert await channel.unary_unary("/t.Svc/Hi")(b"you", timeout=10) == b"hello you"
            missing = channel.unary_unary("/nope.Svc/Nope")
            try:
                await missing(b"", timeout=10)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNIMPLEMENTED
            else:  # pragma: no cover
                raise AssertionError("an unknown method was answered")
    finally:
        await running.server.stop(None)


async def _hello(request: bytes, context: Any) -> bytes:
    return b"hello " + request


def test_error_mapping_is_a_handler_interceptor() -> None:
    # build_server relies on it: the error mapping runs in the lookup, innermost.
    assert isinstance(ErrorMappingInterceptor(), HandlerInterceptor)
