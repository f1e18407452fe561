"""``fuse``: consecutive HandlerInterceptors run as one chain that builds the same handler, in the same order."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import grpc

from aiaas_services.runtime.interceptors import HandlerChain, HandlerInterceptor, fuse, wrap_handler

Details = namedtuple("Details", "method invocation_metadata")


class Tagging(HandlerInterceptor):
    """Wraps each unary handler so its answer records this interceptor's tag (outermost tag first)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.calls = 0

    def wrap(self, handler: grpc.RpcMethodHandler, method: str, details: Any) -> grpc.RpcMethodHandler:
        self.calls += 1

        def unary(fn: Any) -> Any:
            async def tagged(request: Any, context: Any) -> Any:
                return [self.tag, *(await fn(request, context))]

            return tagged

        return wrap_handler(handler, unary=unary, stream=lambda fn: fn)


class Plain(grpc.aio.ServerInterceptor):
    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        return await continuation(details)


async def _inner(request: Any, context: Any) -> list[str]:
    return ["handler"]


def test_fuse_groups_runs_of_handler_interceptors_and_keeps_the_order() -> None:
    a, b, c = Tagging("a"), Tagging("b"), Tagging("c")
    plain = Plain()
    fused = fuse([a, b, plain, c])
    assert [type(i) for i in fused] == [HandlerChain, Plain, Tagging]
    assert isinstance(fused[0], HandlerChain) and fused[0].links == (a, b)
    assert fused[2] is c
    assert fuse([]) == []


async def test_a_chain_builds_the_handler_grpc_would_build_one_interceptor_at_a_time() -> None:
    a, b, c = Tagging("a"), Tagging("b"), Tagging("c")
    handler = grpc.unary_unary_rpc_method_handler(_inner)

    async def lookup(details: Any) -> grpc.RpcMethodHandler:
        return handler

    async def missing(details: Any) -> None:
        return None

    chain = HandlerChain([a, b, c])
    details = Details("/svc/Method", ())
    built = await chain.intercept_service(lookup, details)
    assert await built.unary_unary(b"x", None) == ["a", "b", "c", "handler"]  # the first listed is outermost
    assert await chain.intercept_service(missing, details) is None  # unknown method: nothing wraps it
    assert (a.calls, b.calls, c.calls) == (1, 1, 1)
