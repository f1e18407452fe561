"""gRPC server and client interceptors that open a span per RPC and carry ``traceparent`` in metadata."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from aiaas_services.runtime.client_interceptors import CALL_TYPES, per_call_type
from aiaas_services.runtime.interceptors import Behaviour, WrappingInterceptor
from aiaas_services.runtime.tracing.configure import INSTRUMENTATION_NAME, UNTRACED_PREFIXES, tracing_enabled
from aiaas_services.runtime.tracing.light import StaticAttributes


def _split_method(full_method: str) -> tuple[str, str]:
    service, _, method = full_method.lstrip("/").partition("/")
    return service, method


@functools.lru_cache(maxsize=1024)
def _rpc_naming(full_method: str) -> tuple[str, StaticAttributes]:
    """Span name (``pkg.Service/Method``) and semantic-convention attributes, computed once per method.

    Never changed once built: the SDK copies them into its spans, light spans share them (and their JSON).
    """
    service, method = _split_method(full_method)
    attributes = StaticAttributes({"rpc.system": "grpc", "rpc.service": service, "rpc.method": method})
    return full_method.lstrip("/"), attributes


# Semantic conventions: a server span is an error for server-side faults only; a client span for any code.
_SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def _finish(span: trace.Span, code: grpc.StatusCode | None, details: str | None, server: bool) -> None:
    if code is None or code is grpc.StatusCode.OK:
        span.set_attribute("rpc.grpc.status_code", 0)
    else:
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if not server or code in _SERVER_FAULTS:
            span.set_status(Status(StatusCode.ERROR, f"{code.name}: {details or ''}".rstrip(": ")))
    span.end()


_PROPAGATED_KEYS = frozenset({"traceparent", "tracestate", "baggage"})


def _carrier_from_metadata(metadata: Iterable[Any] | None) -> dict[str, str]:
    """The W3C headers among the call's metadata (empty when the caller sent none)."""
    carrier: dict[str, str] = {}
    for item in metadata or ():
        key, value = item[0], item[1]
        if key in _PROPAGATED_KEYS and isinstance(value, str):
            carrier[key] = value
    return carrier


def _failure_code(span: trace.Span, exc: BaseException) -> grpc.StatusCode:
    """The status an exception escaping the handler stands for (grpc sends UNKNOWN; cancellation CANCELLED)."""
    if isinstance(exc, Exception):
        span.record_exception(exc)
        return grpc.StatusCode.UNKNOWN
    return grpc.StatusCode.CANCELLED


def _context_code(context: grpc.aio.ServicerContext) -> grpc.StatusCode | None:
    code = context.code()
    if isinstance(code, int):  # older grpc returns the raw integer
        code = next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    return code


class _ServerSpan:
    """The opening both kinds of traced handler share: the call's SERVER span, ended when the handler is
    done with its status code (and the exception that escaped, if one did)."""

    __slots__ = ("context", "sent", "span", "streaming")

    def __init__(self, span: trace.Span, context: grpc.aio.ServicerContext, streaming: bool) -> None:
        self.span = span
        self.context = context
        self.streaming = streaming
        self.sent = 0  # responses streamed so far (``rpc.messages_sent``, on streaming calls)

    def __enter__(self) -> _ServerSpan:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        failure: grpc.StatusCode | None = None
        if exc is not None and not isinstance(exc, grpc.aio.AbortError):
            failure = _failure_code(self.span, exc)
        if self.streaming:
            self.span.set_attribute("rpc.messages_sent", self.sent)
        _finish(self.span, _context_code(self.context) or failure, self.context.details(), server=True)


class TracingServerInterceptor(WrappingInterceptor):
    """Puts every incoming RPC (except health and reflection) in a SERVER span continuing the caller's trace.

    Unary and streaming, both directions. The span is current while the handler runs, so the service's own
    spans become its children; status code and semantic-convention attributes are set when it ends.
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        super().__init__()
        self._tracer_provider = tracer_provider
        self._tracer: trace.Tracer | None = None

    def applies(self, method: str) -> bool:
        """While tracing is on, every method but health checks and reflection."""
        return (self._tracer_provider is not None or tracing_enabled()) and not method.startswith(UNTRACED_PREFIXES)

    def tracer(self) -> trace.Tracer:
        """The tracer (resolved on first use, after set-up installed the provider)."""
        if self._tracer is None:
            self._tracer = trace.get_tracer(INSTRUMENTATION_NAME, tracer_provider=self._tracer_provider)
        return self._tracer

    def wrappers(
        self, handler: grpc.RpcMethodHandler, method: str
    ) -> tuple[Callable[[Behaviour], Behaviour], Callable[[Behaviour], Behaviour]]:
        """Both kinds run the behaviour in the call's SERVER span."""
        return (lambda fn: self._unary(fn, method), lambda fn: self._streaming(fn, method))

    def _start(self, method: str, context: grpc.aio.ServicerContext, streaming: bool) -> tuple[_ServerSpan, Context]:
        """The SERVER span, and the context to run the handler in (the span plus the caller's baggage)."""
        carrier = _carrier_from_metadata(context.invocation_metadata())
        parent = propagate.extract(carrier) if carrier else Context()  # a root span: skip the propagators
        name, attributes = _rpc_naming(method)
        span = self.tracer().start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)
        return _ServerSpan(span, context, streaming), trace.set_span_in_context(span, parent)

    def _unary(self, behavior: Callable[..., Any], method: str) -> Callable[..., Awaitable[Any]]:
        async def handler(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
            server_span, span_context = self._start(method, context, streaming=False)
            with server_span:
                token = otel_context.attach(span_context)
                try:
                    return await behavior(request_or_iterator, context)
                finally:
                    otel_context.detach(token)

        return handler

    def _streaming(self, behavior: Callable[..., Any], method: str) -> Callable[..., AsyncIterator[Any]]:
        async def handler(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            server_span, span_context = self._start(method, context, streaming=True)
            with server_span:
                result = behavior(request_or_iterator, context)
                if not hasattr(result, "__anext__"):  # a handler that writes with context.write()
                    token = otel_context.attach(span_context)
                    try:
                        await result
                    finally:
                        otel_context.detach(token)
                    return
                # Attach around each step only: the generator may be closed from another context.
                while True:
                    token = otel_context.attach(span_context)
                    try:
                        item = await result.__anext__()
                    except StopAsyncIteration:
                        break
                    finally:
                        otel_context.detach(token)
                    server_span.sent += 1
                    yield item

        return handler


class _TracingClientBase:
    """Shared parts of the four client interceptor kinds."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer_provider = tracer_provider
        self._tracer: trace.Tracer | None = None

    def _skip(self, details: grpc.aio.ClientCallDetails) -> bool:
        if self._tracer_provider is None and not tracing_enabled():
            return True
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        return method.startswith(UNTRACED_PREFIXES)

    def _start(self, details: grpc.aio.ClientCallDetails) -> tuple[trace.Span, grpc.aio.ClientCallDetails]:
        if self._tracer is None:
            self._tracer = trace.get_tracer(INSTRUMENTATION_NAME, tracer_provider=self._tracer_provider)
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        name, attributes = _rpc_naming(method)
        span = self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        metadata = grpc.aio.Metadata(*tuple(details.metadata or ()))
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        for key, value in carrier.items():
            metadata[key] = value
        new_details = grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )
        return span, new_details

    @staticmethod
    async def _await_unary(span: trace.Span, call: Any) -> Any:
        try:
            code = await call.code()
            details = await call.details()
        except BaseException as exc:
            span.record_exception(exc)
            _finish(span, grpc.StatusCode.CANCELLED, str(type(exc).__name__), server=False)
            raise
        _finish(span, code, details, server=False)
        return call

    @staticmethod
    def _end_when_done(span: trace.Span, call: Any) -> Any:
        """For client or response streams: end the span when the call completes, keeping the call intact."""

        def done(finished: Any) -> None:
            end_ns = time.time_ns()

            async def record() -> None:
                try:
                    code, details = await finished.code(), await finished.details()
                except BaseException:  # noqa: BLE001 - cancelled while reading the status
                    code, details = grpc.StatusCode.CANCELLED, ""
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                if code != grpc.StatusCode.OK:
                    span.set_status(Status(StatusCode.ERROR, f"{code.name}: {details or ''}"))
                span.end(end_time=end_ns)

            try:
                asyncio.get_running_loop().create_task(record())
            except RuntimeError:  # no loop any more (interpreter shutting down)
                span.end(end_time=end_ns)

        call.add_done_callback(done)
        return call


class _UnaryUnary(_TracingClientBase, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        if self._skip(client_call_details):
            return await continuation(client_call_details, request)
        span, details = self._start(client_call_details)
        return await self._await_unary(span, await continuation(details, request))


class _StreamingCall(_TracingClientBase):
    async def intercept(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        """Start the span and hand the call back at once; the span ends with the call.

        Not awaited here: a caller using ``call.write()`` waits for this interceptor to hand the call back.
        """
        if self._skip(details):
            return await continuation(details, request)
        span, traced = self._start(details)
        return self._end_when_done(span, await continuation(traced, request))


_STREAMING_CALLS = per_call_type(_StreamingCall, CALL_TYPES[1:])  # unary-stream, stream-unary, stream-stream


def server_interceptors(tracer_provider: trace.TracerProvider | None = None) -> list[grpc.aio.ServerInterceptor]:
    """Interceptors that put each incoming RPC in a span; they pass calls through while tracing is off."""
    return [TracingServerInterceptor(tracer_provider)]


def client_interceptors(tracer_provider: trace.TracerProvider | None = None) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors that put each outgoing RPC in a CLIENT span and send ``traceparent``/``baggage`` along."""
    return [_UnaryUnary(tracer_provider), *(kind(tracer_provider) for kind in _STREAMING_CALLS)]
