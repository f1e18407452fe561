"""Client interceptors: one body serving the four call types, and those that only rewrite a call's details.

grpc.aio files an interceptor under the first call type it implements, so one body takes one interceptor
class per call type: ``per_call_type`` makes them from a single ``intercept`` method, and
``rewriting_interceptors`` uses it for interceptors that change an outgoing call's details (its metadata,
its timeout) and send it on.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from typing import Any

import grpc

Rewrite = Callable[[grpc.aio.ClientCallDetails], grpc.aio.ClientCallDetails]

CALL_TYPES: tuple[tuple[type, str], ...] = (
    (grpc.aio.UnaryUnaryClientInterceptor, "intercept_unary_unary"),
    (grpc.aio.UnaryStreamClientInterceptor, "intercept_unary_stream"),
    (grpc.aio.StreamUnaryClientInterceptor, "intercept_stream_unary"),
    (grpc.aio.StreamStreamClientInterceptor, "intercept_stream_stream"),
)


def per_call_type(base: type[Any], call_types: Sequence[tuple[type, str]] = CALL_TYPES) -> list[type]:
    """One interceptor class per call type, each serving its calls with ``base.intercept(continuation,
    details, request_or_iterator)``."""

    def made(kind: type, method: str) -> type:
        name = f"{base.__name__.lstrip('_')}{kind.__name__.removesuffix('ClientInterceptor')}"
        return types.new_class(
            name, (base, kind), exec_body=lambda namespace: namespace.update({method: base.intercept})
        )

    return [made(kind, method) for kind, method in call_types]


class _Rewriting:
    def __init__(self, rewrite: Rewrite) -> None:
        self.rewrite = rewrite

    async def intercept(self, continuation: Any, details: Any, request_or_iterator: Any) -> Any:
        """Send the call on with its details rewritten."""
        return await continuation(self.rewrite(details), request_or_iterator)


_REWRITING = per_call_type(_Rewriting)


def rewriting_interceptors(rewrite: Rewrite) -> list[grpc.aio.ClientInterceptor]:
    """One interceptor per call type, each sending the call on with ``rewrite(details)``."""
    return [kind(rewrite) for kind in _REWRITING]
