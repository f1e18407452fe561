"""The tracing and metrics interceptors on a real grpc.aio server and channel (loopback, in-process).

An echo service registered through a generic handler covers all four RPC shapes plus failures; spans go
to an in-memory exporter of a private tracer provider handed to the interceptors.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY

from aiaas_services.runtime import metrics
from aiaas_services.runtime.errors import NotFound
from aiaas_services.runtime.server import build_server
from aiaas_services.runtime.settings import ServiceSettings
from aiaas_services.runtime.tracing import TracingServerInterceptor, client_interceptors, tracing_enabled

SERVICE = "test.Echo"


def _ident(data: bytes) -> bytes:
    return data


class EchoApp:
    """Four RPC shapes; each handler opens a child span so we can check it nests under the server span."""

    def __init__(self, provider: TracerProvider) -> None:
        self.tracer = provider.get_tracer("test.echo.handler")
        self.seen_baggage: list[object] = []

    async def unary(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        with self.tracer.start_as_current_span("echo.work"):
            self.seen_baggage.append(baggage.get_baggage("tenant"))
            if request == b"missing":
                raise NotFound("no such thing")
            if request == b"boom":
                raise RuntimeError("secret internals")
            return request

    async def server_stream(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        for index in range(3):
            with self.tracer.start_as_current_span("echo.chunk"):
                yield request + bytes([index])

    async def client_stream(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
        parts = [part async for part in requests]
        with self.tracer.start_as_current_span("echo.join"):
            return b"".join(parts)

    async def bidi(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        async for part in requests:
            with self.tracer.start_as_current_span("echo.chunk"):
                yield part.upper()

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        kwargs: dict[str, Any] = {"request_deserializer": _ident, "response_serializer": _ident}
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(self.unary, **kwargs),
            "ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream, **kwargs),
            "ClientStream": grpc.stream_unary_rpc_method_handler(self.client_stream, **kwargs),
            "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi, **kwargs),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        return []

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
async def echo(spans: tuple[TracerProvider, InMemorySpanExporter]) -> AsyncIterator[tuple[grpc.aio.Channel, EchoApp]]:
    provider, _ = spans
    app = EchoApp(provider)
    interceptors = [TracingServerInterceptor(provider), metrics.RpcMetricsInterceptor(always=True)]
    running = await build_server(ServiceSettings(port=0), app, interceptors=interceptors)
    await running.set_serving(True)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}", interceptors=client_interceptors(provider))
    yield channel, app
    await channel.close()
    await running.server.stop(None)


def _unary(channel: grpc.aio.Channel, name: str) -> Any:
    return channel.unary_unary(f"/{SERVICE}/{name}", request_serializer=_ident, response_deserializer=_ident)


def parent(span: ReadableSpan) -> trace.SpanContext:
    assert span.parent is not None, f"{span.name} has no parent"
    return span.parent


def attrs(span: ReadableSpan) -> Mapping[str, Any]:
    return span.attributes or {}


def ended(span: ReadableSpan) -> int:
    assert span.end_time is not None, f"{span.name} has not ended"
    return span.end_time


def by_name(finished: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in finished if s.name == name]


def only(finished: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    matches = by_name(finished, name)
    assert len(matches) == 1, [s.name for s in finished]
    return matches[0]


async def test_unary_call_chains_root_client_server_and_handler_spans(echo, spans) -> None:
    channel, app = echo
    provider, exporter = spans
    root_tracer = provider.get_tracer("test")
    with root_tracer.start_as_current_span("test.root"):
        token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
        try:
            assert await _unary(channel, "Unary")(b"hi") == b"hi"
        finally:
            otel_context.detach(token)
    finished = exporter.get_finished_spans()
    root = only(finished, "test.root")
    client = next(s for s in by_name(finished, f"{SERVICE}/Unary") if s.kind == SpanKind.CLIENT)
    server = next(s for s in by_name(finished, f"{SERVICE}/Unary") if s.kind == SpanKind.SERVER)
    work = only(finished, "echo.work")
    assert {s.context.trace_id for s in (root, client, server, work)} == {root.context.trace_id}
    assert parent(client).span_id == root.context.span_id
    assert parent(server).span_id == client.context.span_id
    assert parent(server).is_remote
    assert parent(work).span_id == server.context.span_id
    assert attrs(server)["rpc.system"] == "grpc"
    assert attrs(server)["rpc.service"] == SERVICE
    assert attrs(server)["rpc.method"] == "Unary"
    assert attrs(server)["rpc.grpc.status_code"] == 0
    assert attrs(client)["rpc.grpc.status_code"] == 0
    assert app.seen_baggage == ["acme"], "baggage travels in metadata"


async def _failed_call(echo: Any, spans: Any, payload: bytes) -> tuple[grpc.aio.AioRpcError, Any]:
    """Call Unary with ``payload``, which must fail: the error, and the span exporter."""
    channel, _ = echo
    _, exporter = spans
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await _unary(channel, "Unary")(payload)
    return failure.value, exporter


async def test_domain_error_sets_code_and_client_error_status(echo, spans) -> None:
    error, exporter = await _failed_call(echo, spans, b"missing")
    assert error.code() == grpc.StatusCode.NOT_FOUND
    finished = exporter.get_finished_spans()
    client = next(s for s in finished if s.kind == SpanKind.CLIENT)
    server = next(s for s in finished if s.kind == SpanKind.SERVER)
    assert attrs(server)["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert attrs(client)["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    # A client error (NOT_FOUND) is the caller's fault: error on the client span, unset on the server's.
    assert client.status.status_code == StatusCode.ERROR
    assert server.status.status_code == StatusCode.UNSET


async def test_unexpected_error_is_internal_and_marks_server_span(echo, spans) -> None:
    error, exporter = await _failed_call(echo, spans, b"boom")
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in (error.details() or "")
    server = next(s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER)
    assert attrs(server)["rpc.grpc.status_code"] == grpc.StatusCode.INTERNAL.value[0]
    assert server.status.status_code == StatusCode.ERROR


async def test_server_streaming_keeps_call_object_and_nests_chunks(echo, spans) -> None:
    channel, _ = echo
    _, exporter = spans
    call = channel.unary_stream(f"/{SERVICE}/ServerStream", request_serializer=_ident, response_deserializer=_ident)(
        b"x"
    )
    received = [item async for item in call]
    assert received == [b"x\x00", b"x\x01", b"x\x02"]
    assert await call.code() == grpc.StatusCode.OK  # still the real call object, not a generator
    await _client_spans_ended(exporter)
    finished = exporter.get_finished_spans()
    server = next(s for s in by_name(finished, f"{SERVICE}/ServerStream") if s.kind == SpanKind.SERVER)
    client = next(s for s in by_name(finished, f"{SERVICE}/ServerStream") if s.kind == SpanKind.CLIENT)
    chunks = by_name(finished, "echo.chunk")
    assert len(chunks) == 3
    assert all(parent(c).span_id == server.context.span_id for c in chunks)
    assert parent(server).span_id == client.context.span_id
    assert attrs(server)["rpc.messages_sent"] == 3
    assert attrs(client)["rpc.grpc.status_code"] == 0
    assert ended(client) >= ended(server)


async def test_client_and_bidi_streaming(echo, spans) -> None:
    channel, _ = echo
    _, exporter = spans

    async def parts() -> AsyncIterator[bytes]:
        for part in (b"a", b"b", b"c"):
            yield part

    joined = await channel.stream_unary(
        f"/{SERVICE}/ClientStream", request_serializer=_ident, response_deserializer=_ident
    )(parts())
    assert joined == b"abc"
    call = channel.stream_stream(f"/{SERVICE}/Bidi", request_serializer=_ident, response_deserializer=_ident)(parts())
    assert [item async for item in call] == [b"A", b"B", b"C"]
    await _client_spans_ended(exporter, 2)
    finished = exporter.get_finished_spans()
    for method in ("ClientStream", "Bidi"):
        kinds = {s.kind for s in by_name(finished, f"{SERVICE}/{method}")}
        assert kinds == {SpanKind.CLIENT, SpanKind.SERVER}, method
    bidi_server = next(s for s in by_name(finished, f"{SERVICE}/Bidi") if s.kind == SpanKind.SERVER)
    assert all(parent(c).span_id == bidi_server.context.span_id for c in by_name(finished, "echo.chunk"))
    join = only(finished, "echo.join")
    join_server = next(s for s in by_name(finished, f"{SERVICE}/ClientStream") if s.kind == SpanKind.SERVER)
    assert parent(join).span_id == join_server.context.span_id


async def test_cancelled_stream_ends_spans(echo, spans) -> None:
    channel, _ = echo
    _, exporter = spans
    call = channel.unary_stream(f"/{SERVICE}/ServerStream", request_serializer=_ident, response_deserializer=_ident)(
        b"x"
    )
    await call.read()
    call.cancel()
    await _client_spans_ended(exporter)
    client = next(
        s for s in by_name(exporter.get_finished_spans(), f"{SERVICE}/ServerStream") if s.kind == SpanKind.CLIENT
    )
    assert attrs(client)["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]


async def test_health_checks_are_not_traced(echo, spans) -> None:
    channel, _ = echo
    _, exporter = spans
    response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    assert exporter.get_finished_spans() == ()


async def test_rpc_metrics_count_by_method_and_code(echo) -> None:
    channel, _ = echo
    method = f"/{SERVICE}/Unary"

    def count(code: str) -> float:
        labels = {"method": method, "code": code}
        return REGISTRY.get_sample_value("aiaas_rpc_server_duration_seconds_count", labels) or 0.0

    ok_before, missing_before = count("OK"), count("NOT_FOUND")
    await _unary(channel, "Unary")(b"hi")
    with pytest.raises(grpc.aio.AioRpcError):
        await _unary(channel, "Unary")(b"missing")
    assert count("OK") == ok_before + 1
    assert count("NOT_FOUND") == missing_before + 1


async def test_untraced_when_tracing_is_off() -> None:
    """Without a provider handed in and without set-up, the interceptors pass calls through (no spans)."""
    assert not tracing_enabled()
    assert trace.get_current_span() is trace.INVALID_SPAN


async def _client_spans_ended(exporter: InMemorySpanExporter, count: int = 1, timeout: float = 10.0) -> None:
    """Client spans of streaming calls end from a done-callback task: wait until ``count`` have (busy CI)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if sum(s.kind == SpanKind.CLIENT for s in exporter.get_finished_spans()) >= count:
            return
        await asyncio.sleep(0.01)


async def test_write_api_for_client_streams(echo, spans) -> None:
    """Callers that use call.write()/done_writing() instead of a request iterator work through the interceptors."""
    channel, _ = echo
    _, exporter = spans
    upload = channel.stream_unary(f"/{SERVICE}/ClientStream", request_serializer=_ident, response_deserializer=_ident)()
    for part in (b"x", b"y"):
        await upload.write(part)
    await upload.done_writing()
    assert await asyncio.wait_for(upload, 5) == b"xy"
    bidi = channel.stream_stream(f"/{SERVICE}/Bidi", request_serializer=_ident, response_deserializer=_ident)()
    await bidi.write(b"q")
    assert await asyncio.wait_for(bidi.read(), 5) == b"Q"
    await bidi.done_writing()
    assert await asyncio.wait_for(bidi.read(), 5) == grpc.aio.EOF
    await _client_spans_ended(exporter, 2)
    client_spans = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert sorted(s.name for s in client_spans) == [f"{SERVICE}/Bidi", f"{SERVICE}/ClientStream"]
    assert all(attrs(s)["rpc.grpc.status_code"] == 0 for s in client_spans)
