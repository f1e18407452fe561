"""Server interceptors: the single place where exceptions become gRPC statuses."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc

from aiaas_services.runtime import deadlines
from aiaas_services.runtime.errors import DomainError, InvalidArgument, status_for

logger = logging.getLogger(__name__)

UNPARSEABLE_MESSAGE = (
    "the request message could not be parsed (not valid protobuf for this method, or nested too deeply); "
    "check that the client uses this service's .proto definitions"
)


class _Unparseable:
    """Stands in for a request whose bytes did not parse, so the handler can answer INVALID_ARGUMENT.

    grpc's own handling of a deserializer that raises is UNKNOWN with the exception's class in the
    message; returning this marker instead lets the error interceptor answer with a clean status.
    """

    __slots__ = ()


UNPARSEABLE = _Unparseable()


def tolerant_deserializer(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserialize`` that returns ``UNPARSEABLE`` instead of raising on bytes that do not parse."""
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # noqa: BLE001 - DecodeError, RecursionError, anything: the bytes are the client's
            logger.info("unparseable request message (%d bytes)", len(data))
            return UNPARSEABLE

    return parse


async def _checked_requests(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A request stream that raises InvalidArgument at the first message that did not parse."""
    async for request in requests:
        if request is UNPARSEABLE:
            raise InvalidArgument(UNPARSEABLE_MESSAGE)
        yield request


async def abort_with(context: grpc.aio.ServicerContext, exc: BaseException, method: str) -> None:
    """Abort the RPC with the status the error table gives; log what the client must not see."""
    code, message = status_for(exc)
    if isinstance(exc, (DomainError, NotImplementedError)):
        logger.info("%s -> %s: %s", method, code.name, message)
    else:
        logger.exception("%s failed unexpectedly", method, exc_info=exc)
    await context.abort(code, message)


class _Handled:
    """The opening every error-mapped handler shares: the call's deadline entered (and left when the
    handler is done), and an exception escaping the servicer kept in ``error`` (not raised) for the
    handler to answer with its status. Aborts pass through: their status is set already."""

    __slots__ = ("call", "error")

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self.call = deadlines.enter(context)
        self.error: Exception | None = None

    def __enter__(self) -> _Handled:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> bool:
        deadlines.leave(self.call)
        if isinstance(exc, Exception) and not isinstance(exc, grpc.aio.AbortError):
            self.error = exc
            return True
        return False


def _parsed(request: Any, streaming_requests: bool) -> Any:
    """The request to hand the servicer: a stream checked message by message, or a message that parsed."""
    if streaming_requests:
        return _checked_requests(request)
    if request is UNPARSEABLE:
        raise InvalidArgument(UNPARSEABLE_MESSAGE)
    return request


def _wrap_unary_response(
    fn: Callable[..., Awaitable[Any]], method: str, streaming_requests: bool
) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with _Handled(context) as handled:
            return await fn(_parsed(request, streaming_requests), context)
        if handled.error is not None:
            await abort_with(context, handled.error, method)
        return None

    return handler


def _wrap_stream_response(
    fn: Callable[..., Any], method: str, streaming_requests: bool
) -> Callable[..., AsyncIterator[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        with _Handled(context) as handled:
            result = fn(_parsed(request, streaming_requests), context)
            if inspect.isasyncgen(result):
                async for item in result:
                    yield item
            else:
                await result
        if handled.error is not None:
            await abort_with(context, handled.error, method)

    return handler


Behaviour = Callable[..., Any]


def wrap_handler(
    handler: grpc.RpcMethodHandler,
    unary: Callable[[Behaviour], Behaviour],
    stream: Callable[[Behaviour], Behaviour],
    tolerant: bool = False,
) -> grpc.RpcMethodHandler:
    """The same kind of handler, same serializers, with its behaviour wrapped.

    ``unary`` wraps behaviours that return one response (unary-unary, stream-unary); ``stream`` wraps
    those that yield responses (unary-stream, stream-stream). Interceptors use this instead of spelling
    out the four handler kinds each time. ``tolerant`` swaps in a deserializer that never raises (see
    ``tolerant_deserializer``); the wrapped behaviours must then check for ``UNPARSEABLE``.
    """
    deserializer = handler.request_deserializer
    kwargs = {
        "request_deserializer": tolerant_deserializer(deserializer) if tolerant else deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream), **kwargs)
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(stream(handler.stream_stream), **kwargs)
    return handler


class HandlerInterceptor(grpc.aio.ServerInterceptor):
    """A server interceptor that works on each call's method handler: subclasses implement ``wrap`` and
    return the handler to serve the call with (the same one to leave the call alone).

    Consecutive ones run as one ``HandlerChain`` in a server built by ``runtime.server`` (``fuse``), so
    their number adds a ``wrap`` call per RPC, not another interceptor coroutine and continuation.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method: str = handler_call_details.method
        for link in self._innermost_first:
            handler = link.wrap(handler, method, handler_call_details)
        return handler

    @functools.cached_property
    def _innermost_first(self) -> tuple[HandlerInterceptor, ...]:
        """The interceptors whose ``wrap`` runs on each call, innermost first: this one alone (a chain: its links)."""
        return (self,)

    def wrap(
        self, handler: grpc.RpcMethodHandler, method: str, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        """The handler that serves this call of ``method``."""
        raise NotImplementedError


class HandlerChain(HandlerInterceptor):
    """Several ``HandlerInterceptor``s run as one interceptor: the method handler is looked up once, then
    each one wraps it, the last innermost: the same handler grpc.aio would build running them one by one.

    grpc.aio runs every interceptor of a server as its own coroutine with its own continuation on every
    RPC; a service's four (tracing, metrics, auth, error mapping) cost more than the work most of them
    do per call (a cached handler returned).
    """

    def __init__(self, links: Sequence[HandlerInterceptor]) -> None:
        self.links = tuple(links)
        self._innermost_first = tuple(reversed(self.links))  # intercept_service (inherited) runs them

    def wrap(
        self, handler: grpc.RpcMethodHandler, method: str, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        """Each link's ``wrap``, the last innermost (what ``intercept_service`` does per call)."""
        for link in self._innermost_first:
            handler = link.wrap(handler, method, details)
        return handler


def fuse(interceptors: Sequence[grpc.aio.ServerInterceptor]) -> list[grpc.aio.ServerInterceptor]:
    """``interceptors`` in the same order, each run of consecutive ``HandlerInterceptor``s as one chain."""
    fused: list[grpc.aio.ServerInterceptor] = []
    run: list[HandlerInterceptor] = []
    for interceptor in [*interceptors, None]:
        if isinstance(interceptor, HandlerInterceptor):
            run.append(interceptor)
            continue
        if run:
            fused.append(run[0] if len(run) == 1 else HandlerChain(run))
            run = []
        if interceptor is not None:
            fused.append(interceptor)
    return fused


class WrappingInterceptor(HandlerInterceptor):
    """A ``HandlerInterceptor`` that wraps every call of a method the same way (subclasses give the
    wrappers in ``wrappers``). The wrapped handler is built once per method and reused: a method's
    registered handler is the same object on every call, so the hot path does no wrapping."""

    tolerant = False  # swap in the deserializer that never raises (see ``wrap_handler``)

    def __init__(self) -> None:
        # method -> (handler seen, its wrapped twin)
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def applies(self, method: str) -> bool:
        """Whether calls of ``method`` are wrapped now (asked on every call)."""
        return True

    def wrappers(
        self, handler: grpc.RpcMethodHandler, method: str
    ) -> tuple[Callable[[Behaviour], Behaviour], Callable[[Behaviour], Behaviour]]:
        """How to wrap ``method``'s behaviour: (for one response, for a response stream)."""
        raise NotImplementedError

    def wrap(
        self, handler: grpc.RpcMethodHandler, method: str, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        """The wrapped twin of ``handler`` (built once per method), or ``handler`` where this does not apply."""
        if not self.applies(method):
            return handler
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        unary, stream = self.wrappers(handler, method)
        wrapped = wrap_handler(handler, unary=unary, stream=stream, tolerant=self.tolerant)
        self._wrapped[method] = (handler, wrapped)
        return wrapped


class ErrorMappingInterceptor(WrappingInterceptor):
    """Maps DomainError subclasses to their status and anything else to a generic INTERNAL.

    Request bytes that do not parse become INVALID_ARGUMENT with a generic message (never grpc's UNKNOWN
    naming the parser's exception class).
    """

    tolerant = True

    def wrappers(
        self, handler: grpc.RpcMethodHandler, method: str
    ) -> tuple[Callable[[Behaviour], Behaviour], Callable[[Behaviour], Behaviour]]:
        """Both kinds enter the call's deadline and map what escapes; requests are checked for parsing."""
        streaming = bool(handler.stream_unary or handler.stream_stream)
        return (
            lambda fn: _wrap_unary_response(fn, method, streaming),
            lambda fn: _wrap_stream_response(fn, method, streaming),
        )
