"""The KServe V2 HTTP/REST protocol as a plain ASGI app over the same data plane as the gRPC servicer.

Plain ASGI (no framework) keeps the per-request cost to a path split and a dict lookup. Inference goes
through ``plane.infer`` exactly as gRPC does; metadata, config, statistics and the repository calls reuse
the servicer's answers (the protocol's messages) rendered as JSON, so both transports say the same.
Errors are ``{"error": "..."}`` with the HTTP status of the gRPC code; never a traceback. Tokens, per-model
scopes, rate limits and quotas are the gRPC door's (rest/auth.py; a refusal past a limit is 429 with
``Retry-After``), and an answered inference is metered per token and model, and sampled for drift, exactly as
the gRPC servicer does, so usage reports and drift windows count both doors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import orjson
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from aiaas.oip.v2 import grpc_service_pb2 as pb
from aiaas_services.inference import plane
from aiaas_services.inference.manager import ModelManager
from aiaas_services.inference.model import LoadedModel
from aiaas_services.inference.rest import codec
from aiaas_services.inference.rest.auth import HttpAuth
from aiaas_services.inference.rest.messages import message_to_dict
from aiaas_services.inference.rest.metrics import observe_request
from aiaas_services.inference.rest.openapi import openapi_document
from aiaas_services.inference.servicer import InferenceServicer
from aiaas_services.runtime import metrics as runtime_metrics
from aiaas_services.runtime.access import RateLimited
from aiaas_services.runtime.auth import current_principal
from aiaas_services.runtime.errors import (
    INTERNAL_MESSAGE,
    DomainError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
    status_for,
)
from aiaas_services.runtime.tracing import INSTRUMENTATION_NAME, tracing_enabled

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
JSON = b"application/json"
# Routes whose first path argument is the model they are about (checked against model-limited scopes).
_MODEL_ROUTES = ("/v2/models/{name}", "/v2/repository/models/{name}")
OCTETS = b"application/octet-stream"
_EMPTY = b"{}"


class TooLarge(ResourceExhausted):
    """The body is over the size limit (HTTP 413)."""


class MethodNotAllowed(InvalidArgument):
    """The path exists but not for this method (HTTP 405)."""


def http_status(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and client-safe message of an exception."""
    if isinstance(exc, TooLarge):
        return 413, str(exc)
    if isinstance(exc, MethodNotAllowed):
        return 405, str(exc)
    code, message = status_for(exc)
    if code == grpc.StatusCode.INTERNAL or code not in HTTP_STATUS:
        return 500, INTERNAL_MESSAGE if code == grpc.StatusCode.INTERNAL else message
    return HTTP_STATUS[code], message


class Reply:
    """A response: status, body, content type, an optional binary-header length and extra headers."""

    __slots__ = ("body", "content_type", "extra", "header_length", "status")

    def __init__(self, body: bytes, status: int = 200, content_type: bytes = JSON, header_length: int | None = None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.header_length = header_length
        self.extra: list[tuple[bytes, bytes]] = []


def _json(value: Any, status: int = 200) -> Reply:
    return Reply(orjson.dumps(value), status)


class RestApp:
    """ASGI callable serving ``/v2/...`` over a ModelManager (and the servicer for its messages)."""

    def __init__(self, manager: ModelManager, servicer: InferenceServicer, auth: HttpAuth, max_body_bytes: int) -> None:
        self.manager = manager
        self.servicer = servicer
        self.auth = auth
        self.max_body_bytes = max_body_bytes
        self._tracer: trace.Tracer | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan and websocket are not served
            return
        method: str = scope["method"]
        path: str = scope["path"]
        headers = scope["headers"]
        started = time.perf_counter()
        route = "unknown"
        span = None
        token = None
        try:
            route, handler, args, need = self._route(method, path)
            if tracing_enabled() and need is not None:
                span, token = self._start_span(method, route, path, headers)
            model = args[0] if route.startswith(_MODEL_ROUTES) else ""
            principal = self.auth.check(headers, need, f"{method} {route}", model, route == "/v2")
            current_principal.set(principal)  # this request's own task: the handler meters usage under it
            if need == "write":
                reply = await self._audited(principal, f"{method} {route}", handler, args, headers, receive)
            else:
                reply = await handler(*args, headers, receive)
        except Exception as exc:  # noqa: BLE001 - mapped to a status here, once
            reply = self._error(exc, method, path)
        if span is not None:
            self._end_span(span, token, reply.status)
        await self._send(send, reply)
        if runtime_metrics.metrics_enabled():
            observe_request(method, route, reply.status, time.perf_counter() - started)

    # ---- plumbing ---------------------------------------------------------------------------------------

    def _error(self, exc: BaseException, method: str, path: str) -> Reply:
        status, message = http_status(exc)
        if isinstance(exc, DomainError):
            logger.info("%s %s -> %d: %s", method, path, status, message)
        else:
            logger.exception("%s %s failed unexpectedly", method, path, exc_info=exc)
        reply = Reply(orjson.dumps({"error": message}), status)
        if isinstance(exc, RateLimited):  # as the gRPC door's retry-after metadata: whole seconds, rounded up
            reply.extra.append((b"retry-after", exc.retry_after_header.encode()))
        return reply

    @staticmethod
    async def _send(send: Send, reply: Reply) -> None:
        headers = [(b"content-type", reply.content_type), (b"content-length", str(len(reply.body)).encode())]
        if reply.header_length is not None:
            headers.append((b"inference-header-content-length", str(reply.header_length).encode()))
        if reply.extra:
            headers.extend(reply.extra)
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    async def _body(self, headers: list[tuple[bytes, bytes]], receive: Receive) -> bytes:
        """The whole body, refused with 413 once it passes the limit (by Content-Length or as it arrives)."""
        limit = self.max_body_bytes
        for key, value in headers:
            if key == b"content-length" and value.isdigit() and int(value) > limit:
                raise TooLarge(f"the body is {int(value)} bytes, more than the limit of {limit}; send less per request")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise InvalidArgument("the client went away before sending the whole body")
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"the body is more than the limit of {limit} bytes; send less per request")
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _start_span(self, method: str, route: str, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[Any, Any]:
        carrier = {}
        for key, value in headers:
            if key in (b"traceparent", b"tracestate", b"baggage"):
                carrier[key.decode()] = value.decode("latin-1")
        parent = propagate.extract(carrier) if carrier else otel_context.Context()
        if self._tracer is None:
            self._tracer = trace.get_tracer(INSTRUMENTATION_NAME)
        span = self._tracer.start_span(
            f"{method} {route}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "http.route": route, "url.path": path},
        )
        return span, otel_context.attach(trace.set_span_in_context(span, parent))

    @staticmethod
    def _end_span(span: Any, token: Any, status: int) -> None:
        otel_context.detach(token)
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
        span.end()

    async def _audited(
        self, principal: str, what: str, handler: Any, args: tuple[Any, ...], headers: Any, receive: Any
    ) -> Reply:
        try:
            reply: Reply = await handler(*args, headers, receive)
        except Exception as exc:
            self.auth.audit(principal, what, status_for(exc)[0].name)
            raise
        self.auth.audit(principal, what, "OK")
        return reply

    # ---- routing ----------------------------------------------------------------------------------------

    def _route(self, method: str, path: str) -> tuple[str, Any, tuple[Any, ...], str | None]:
        """(route template, handler, its path arguments, the scope it needs: None = open)."""
        parts = path.strip("/").split("/")
        if not parts or parts[0] != "v2":
            if path in ("/openapi.json", "/v2/openapi.json"):
                return "/openapi.json", self._openapi, (), None
            raise NotFound(f"no such endpoint {path!r}; the API lives under /v2 (GET /v2/openapi.json describes it)")
        rest = parts[1:]
        n = len(rest)
        if n == 0:
            return self._only(method, "GET", "/v2", self._server_metadata, (), "read")
        head = rest[0]
        if head == "health" and n == 2 and rest[1] in ("live", "ready"):
            return self._only(method, "GET", f"/v2/health/{rest[1]}", self._health, (rest[1],), None)
        if head == "openapi.json" and n == 1:
            return self._only(method, "GET", "/v2/openapi.json", self._openapi, (), None)
        if head == "repository":
            if n == 2 and rest[1] == "index":
                return self._only(method, "POST", "/v2/repository/index", self._index, (), "read")
            if n == 4 and rest[1] == "models" and rest[3] in ("load", "unload"):
                route = f"/v2/repository/models/{{name}}/{rest[3]}"
                return self._only(method, "POST", route, self._repository, (rest[2], rest[3]), "write")
        if head == "models":
            if n == 2 and rest[1] == "stats":
                return self._only(method, "GET", "/v2/models/stats", self._stats, ("", ""), "read")
            if n >= 2:
                name = rest[1]
                tail = rest[2:]
                version = ""
                template = "/v2/models/{name}"
                if len(tail) >= 2 and tail[0] == "versions":
                    version = tail[1]
                    tail = tail[2:]
                    template += "/versions/{version}"
                if not tail:
                    return self._only(method, "GET", template, self._model_metadata, (name, version), "read")
                if len(tail) == 1:
                    action = tail[0]
                    if action == "infer":
                        return self._only(method, "POST", template + "/infer", self._infer, (name, version), "read")
                    if action == "ready":
                        return self._only(
                            method, "GET", template + "/ready", self._model_ready, (name, version), "read"
                        )
                    if action == "config":
                        return self._only(method, "GET", template + "/config", self._config, (name, version), "read")
                    if action == "stats":
                        return self._only(method, "GET", template + "/stats", self._stats, (name, version), "read")
        raise NotFound(f"no such endpoint {method} {path}; GET /v2/openapi.json lists the endpoints")

    @staticmethod
    def _only(
        method: str, allowed: str, route: str, handler: Any, args: tuple[Any, ...], need: str | None
    ) -> tuple[str, Any, tuple[Any, ...], str | None]:
        if method != allowed and not (allowed == "GET" and method == "HEAD"):
            raise MethodNotAllowed(f"{route} takes {allowed}, not {method}")
        return route, handler, args, need

    # ---- handlers ---------------------------------------------------------------------------------------

    async def _infer(self, name: str, version: str, headers: list[tuple[bytes, bytes]], receive: Receive) -> Reply:
        body = await self._body(headers, receive)
        header_length = None
        for key, value in headers:
            if key == b"inference-header-content-length":
                header_length = value.decode("latin-1")
            elif key == b"content-encoding" and value.lower() not in (b"identity", b""):
                raise InvalidArgument(
                    f"Content-Encoding {value.decode('latin-1')!r} is not supported; send the body uncompressed"
                )
        request = codec.parse_request(body, header_length)
        timeout = codec.request_timeout_s(request)
        deadline = None if timeout is None else time.monotonic() + timeout
        binary: list[bool] = []

        def decode(model: LoadedModel) -> tuple[dict[str, Any], Any]:
            arrays = codec.decode_inputs(request, model)
            selected, flags = codec.output_selection(request, model)
            binary.extend(flags)
            return arrays, selected

        result = await plane.infer(self.manager, name, version, codec.request_variant(request), decode, deadline)
        servicer = self.servicer
        if servicer.usage is not None:  # as InferenceServicer._infer does: answered calls, per token and model
            servicer.usage.add(current_principal.get(), result.model.name, result.rows, result.elapsed_ns)
        if servicer.monitor is not None:
            servicer.monitor.observe(result.model, result.inputs, result.outputs, request.id)
        payload, length = codec.encode_response(request, result.model, result.outputs, result.selected, binary)
        if length is None:
            return Reply(payload)
        return Reply(payload, content_type=OCTETS, header_length=length)

    async def _health(self, which: str, headers: Any, receive: Receive) -> Reply:
        if which == "live":
            return Reply(_EMPTY)
        if self.servicer.ready.is_set():
            return Reply(_EMPTY)
        return _json({"error": "not ready: models are still loading or the server is draining"}, 503)

    async def _server_metadata(self, headers: Any, receive: Receive) -> Reply:
        reply = await self.servicer.ServerMetadata(pb.ServerMetadataRequest(), None)
        return _json({"name": reply.name, "version": reply.version, "extensions": list(reply.extensions)})

    async def _model_metadata(self, name: str, version: str, headers: Any, receive: Receive) -> Reply:
        reply = await self.servicer.ModelMetadata(pb.ModelMetadataRequest(name=name, version=version), None)
        return _json(message_to_dict(reply))

    async def _model_ready(self, name: str, version: str, headers: Any, receive: Receive) -> Reply:
        if self.manager.is_ready(name, version):
            return Reply(_EMPTY)
        if not self.manager.known(name):
            raise NotFound(f"model {name!r} is not served here; POST /v2/repository/index lists the models")
        raise Unavailable(f"model {name}{' version ' + version if version else ''} is not ready")

    async def _config(self, name: str, version: str, headers: Any, receive: Receive) -> Reply:
        reply = await self.servicer.ModelConfig(pb.ModelConfigRequest(name=name, version=version), None)
        return _json(message_to_dict(reply.config))

    async def _stats(self, name: str, version: str, headers: Any, receive: Receive) -> Reply:
        reply = await self.servicer.ModelStatistics(pb.ModelStatisticsRequest(name=name, version=version), None)
        return _json(message_to_dict(reply))

    async def _index(self, headers: Any, receive: Receive) -> Reply:
        body = await self._body(headers, receive)
        ready = False
        if body.strip():
            try:
                options = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise InvalidArgument(f"the request body is not valid JSON: {exc}") from None
            if not isinstance(options, dict):
                raise InvalidArgument('the body must be a JSON object such as {"ready": true}')
            ready = options.get("ready") is True
        reply = await self.servicer.RepositoryIndex(pb.RepositoryIndexRequest(ready=ready), None)
        return _json([message_to_dict(row) for row in reply.models])

    async def _repository(self, name: str, action: str, headers: Any, receive: Receive) -> Reply:
        await self._body(headers, receive)
        if action == "load":
            await self.servicer.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name=name), None)
        else:
            await self.servicer.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name=name), None)
        return Reply(_EMPTY)

    async def _openapi(self, headers: Any, receive: Receive) -> Reply:
        return _json(openapi_document())
