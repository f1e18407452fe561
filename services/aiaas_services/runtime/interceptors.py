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


def _is_message(request: Any) -> bool:
    """A single request message, as opposed to the async iterator of a client stream."""
    return not hasattr(request, "__aiter__")


async def abort_with(context: grpc.aio.ServicerContext, exc: BaseException, method: str) -> None:
    """Abort the RPC with the status the error table gives; log what the client must not see."""
    code, message = status_for(exc)
    if isinstance(exc, (DomainError, NotImplementedError)):
        logger.info("%s -> %s: %s", method, code.name, message)
    else:
        logger.exception("%s failed unexpectedly", method, exc_info=exc)
    await context.abort(code, message)


def _wrap_unary_response(
    fn: Callable[..., Awaitable[Any]], method: str, streaming_requests: bool
) -> Callable[..., Awaitable[Any]]:
    if streaming_requests:

        async def stream_in(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            call = deadlines.enter(context)
            try:
                return await fn(_checked_requests(requests), context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:  # noqa: BLE001 - mapped to a status here, once
                await abort_with(context, exc, method)
            finally:
                deadlines.leave(call)

        return stream_in

    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        call = deadlines.enter(context)
        try:
            if request is UNPARSEABLE:
                raise InvalidArgument(UNPARSEABLE_MESSAGE)
            return await fn(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to a status here, once
            await abort_with(context, exc, method)
        finally:
            deadlines.leave(call)

    return handler


def _wrap_stream_response(fn: Callable[..., Any], method: str) -> Callable[..., AsyncIterator[Any]]:
    async def handler(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        call = deadlines.enter(context)
        try:
            if request_or_iterator is UNPARSEABLE:
                raise InvalidArgument(UNPARSEABLE_MESSAGE)
            if not _is_message(request_or_iterator):
                request_or_iterator = _checked_requests(request_or_iterator)
            result = fn(request_or_iterator, context)
            if inspect.isasyncgen(result):
                async for item in result:
                    yield item
            else:
                await result
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001
            await abort_with(context, exc, method)
        finally:
            deadlines.leave(call)

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


class ErrorMappingInterceptor(HandlerInterceptor):
    """Maps DomainError subclasses to their status and anything else to a generic INTERNAL.

    Request bytes that do not parse become INVALID_ARGUMENT with a generic message (never grpc's UNKNOWN
    naming the parser's exception class).

    The wrapped handler of each method is built once and reused (the registered handler of a method is
    the same object on every call), rather than rebuilt for every RPC.
    """

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def wrap(
        self, handler: grpc.RpcMethodHandler, method: str, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        streaming_requests = bool(handler.stream_unary or handler.stream_stream)
        wrapped = wrap_handler(
            handler,
            unary=lambda fn: _wrap_unary_response(fn, method, streaming_requests),
            stream=lambda fn: _wrap_stream_response(fn, method),
            tolerant=True,
        )
        self._wrapped[method] = (handler, wrapped)
        return wrapped
