"""Client interceptors that only rewrite an outgoing call's details (its metadata, its timeout).

grpc.aio files an interceptor under the first call type it implements, so one rewrite takes one
interceptor per call type: ``rewriting_interceptors`` makes the four from a single function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

Rewrite = Callable[[grpc.aio.ClientCallDetails], grpc.aio.ClientCallDetails]


class _Rewriting:
    def __init__(self, rewrite: Rewrite) -> None:
        self.rewrite = rewrite


class _UnaryUnary(_Rewriting, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self.rewrite(details), request)


class _UnaryStream(_Rewriting, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self.rewrite(details), request)


class _StreamUnary(_Rewriting, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await continuation(self.rewrite(details), request_iterator)


class _StreamStream(_Rewriting, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await continuation(self.rewrite(details), request_iterator)


def rewriting_interceptors(rewrite: Rewrite) -> list[grpc.aio.ClientInterceptor]:
    """One interceptor per call type, each sending the call on with ``rewrite(details)``."""
    return [kind(rewrite) for kind in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)]
