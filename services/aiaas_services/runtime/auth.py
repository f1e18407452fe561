"""Bearer-token authentication with read and write scopes, and an audit log of every write.

Tokens come from a JSON file (setting ``auth_tokens_file``)::

    {"<token>": {"principal": "ci-bot", "scopes": ["read", "write"]}}

Scopes may name models (``read:digits-*``) and a token may carry a rate limit and a quota: see
``aiaas_services.runtime.access``, which holds those rules for every door (gRPC here, REST beside it).

When no file is configured, auth is off and every caller is ``anonymous``. Health and reflection stay
open so probes and ``ghz``/``grpcurl`` discovery work. A method is a *read* when its name starts with one
of ``READ_PREFIXES`` (inference calls included), otherwise a *write* (registry mutations, training,
export, import, model load/unload). Every write is appended to ``<home>/audit/<service>.jsonl`` with who,
what, when and the resulting status code.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import grpc

from aiaas.wire import AUTHORIZATION_METADATA, READ_PREFIXES
from aiaas_services.runtime.access import Grant, RateLimited, model_of, parse_grant
from aiaas_services.runtime.errors import DomainError, PermissionDenied, Unauthenticated
from aiaas_services.runtime.interceptors import HandlerInterceptor, wrap_handler

logger = logging.getLogger(__name__)

OPEN_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection")

current_principal: contextvars.ContextVar[str] = contextvars.ContextVar("current_principal", default="anonymous")


# Services whose requests name the model they are about (checked against model-limited scopes), and the
# methods of theirs that are about the server, not a model (open to any token with the scope).
MODEL_SERVICES = (
    "aiaas.registry.v1.RegistryService",
    "inference.GRPCInferenceService",
    "aiaas.monitoring.v1.MonitoringService",
    "aiaas.explain.v1.ExplanationService",
)
SERVER_METHODS = ("ServerLive", "ServerReady", "ServerMetadata")


class TokenTable(dict[str, Grant]):
    """Tokens and their grants, also indexed by each token's SHA-256: a presented token is found with one
    dict lookup of its digest, however many tokens there are. Comparing digests tells an attacker nothing
    useful about the tokens, as timing a byte-by-byte comparison of the tokens themselves could."""

    def __init__(self, grants: Mapping[str, Grant]) -> None:
        super().__init__(grants)
        self.by_digest = {_digest(token): grant for token, grant in self.items()}


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def load_tokens(path: str) -> TokenTable:
    """Read the token file; a malformed file is a start-up error, not an open door."""
    raw = json.loads(Path(path).read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected an object mapping tokens to grants")
    return TokenTable(
        {
            token: parse_grant(
                entry, f"{path}: token of {entry.get('principal', '?') if isinstance(entry, dict) else '?'!r}"
            )
            for token, entry in raw.items()
        }
    )


def authorize(tokens: Mapping[str, Grant], presented: str, method: str, scope: str) -> Grant:
    """The grant of the presented token if it may call ``method`` now (rate and quota counted).

    Raises Unauthenticated, PermissionDenied or RateLimited (``retry_after``), for any door to map.
    A model-limited grant still needs ``check_model`` once the request's model is known.
    """
    if not presented:
        raise Unauthenticated("missing bearer token: send metadata 'authorization: Bearer <token>'")
    grant = _find_grant(tokens, presented)
    if grant is None:
        raise Unauthenticated("unknown bearer token")
    if not grant.has(scope):
        raise PermissionDenied(f"{grant.principal} lacks the '{scope}' scope needed for {method}")
    if grant.restricted(scope) and method.lstrip("/").partition("/")[0] not in MODEL_SERVICES:
        grant.check_model(scope, "", method)
    grant.admit()
    return grant


def required_scope(method: str) -> str | None:
    """The scope a full method name (``/pkg.Service/Method``) needs; None for open services."""
    service, _, name = method.lstrip("/").partition("/")
    if service in OPEN_SERVICES:
        return None
    return "read" if name.startswith(READ_PREFIXES) else "write"


class AuditLog:
    """Append-only JSON lines, one per write RPC."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._handle: TextIO | None = None

    def record(self, principal: str, method: str, code: str) -> None:
        """Append one entry (who, what, when, outcome)."""
        entry = {"time": time.time(), "principal": principal, "method": method, "code": code}
        line = json.dumps(entry) + "\n"
        with self._lock:
            if self._handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = self.path.open("a", buffering=1)  # line-buffered: each entry lands whole
            self._handle.write(line)


def _bearer(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == AUTHORIZATION_METADATA:
            text = value.decode() if isinstance(value, bytes) else value
            if text.lower().startswith("bearer "):
                return str(text[7:].strip())
    return ""


def _find_grant(tokens: Mapping[str, Grant], presented: str) -> Grant | None:
    if isinstance(tokens, TokenTable):
        return tokens.by_digest.get(_digest(presented))
    for token, grant in tokens.items():
        if hmac.compare_digest(token.encode(), presented.encode()):
            return grant
    return None


def _denied(
    code: grpc.StatusCode, message: str, handler: grpc.RpcMethodHandler, trailing: tuple[tuple[str, str], ...] = ()
) -> grpc.RpcMethodHandler:
    async def abort_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message, trailing)

    async def abort_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message, trailing)
        yield  # pragma: no cover - makes this an async generator

    return wrap_handler(handler, unary=lambda _: abort_unary, stream=lambda _: abort_stream)


def _refused(exc: DomainError, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    trailing: tuple[tuple[str, str], ...] = ()
    if isinstance(exc, RateLimited):
        # HTTP's Retry-After in whole seconds, and gRPC's own pushback hint in milliseconds.
        trailing = (
            ("retry-after", exc.retry_after_header),
            ("grpc-retry-pushback-ms", str(int(exc.retry_after * 1000))),
        )
    return _denied(exc.code, str(exc), handler, trailing)


def _model_checked(handler: grpc.RpcMethodHandler, grant: Grant, scope: str, method: str) -> grpc.RpcMethodHandler:
    """Check each request's model against a model-limited scope before the servicer sees it."""

    def check(request: Any) -> None:
        grant.check_model(scope, model_of(request), method)

    async def check_or_abort(request: Any, context: grpc.aio.ServicerContext) -> None:
        # Outside the error-mapping interceptor's wrapper, so the refusal is turned into a status here.
        try:
            check(request)
        except DomainError as exc:
            await context.abort(exc.code, str(exc))

    async def checked_stream(requests: Any) -> Any:
        # The first message must name an allowed model; later ones are checked when they name one (an
        # upload's chunks follow its header and name none).
        first = True
        async for request in requests:
            model = model_of(request)
            if model or first:
                grant.check_model(scope, model, method)
            first = False
            yield request

    streaming_requests = bool(handler.stream_unary or handler.stream_stream)

    def wrap_unary(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if streaming_requests:
                return await fn(checked_stream(request), context)
            try:  # inline, not a coroutine of its own: this runs on every call of a model-limited token
                check(request)
            except DomainError as exc:
                await context.abort(exc.code, str(exc))
            return await fn(request, context)

        return call

    def wrap_stream(fn: Callable[..., Any]) -> Callable[..., Any]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if streaming_requests:
                request = checked_stream(request)
            else:
                await check_or_abort(request, context)
            async for item in fn(request, context):
                yield item

        return call

    return wrap_handler(handler, unary=wrap_unary, stream=wrap_stream)


def _audited(handler: grpc.RpcMethodHandler, audit: AuditLog, principal: str, method: str) -> grpc.RpcMethodHandler:
    """Wrap a write handler so its outcome is recorded and the principal is visible to domain code."""

    def code_of(context: grpc.aio.ServicerContext) -> str:
        code = context.code()
        return code.name if isinstance(code, grpc.StatusCode) else "OK"

    @contextlib.contextmanager
    def audited(context: grpc.aio.ServicerContext) -> Iterator[None]:
        token = current_principal.set(principal)
        try:
            yield
        except BaseException:
            audit.record(principal, method, code_of(context) if context.code() else "ERROR")
            raise
        finally:
            current_principal.reset(token)
        audit.record(principal, method, code_of(context))

    def wrap_unary(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with audited(context):
                return await fn(request, context)

        return call

    def wrap_stream(fn: Callable[..., Any]) -> Callable[..., Any]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with audited(context):
                async for item in fn(request, context):
                    yield item

        return call

    return wrap_handler(handler, unary=wrap_unary, stream=wrap_stream)


class AuthInterceptor(HandlerInterceptor):
    """Checks the bearer token's scope for each RPC and audits writes."""

    def __init__(self, tokens: Mapping[str, Grant] | None, audit: AuditLog | None) -> None:
        self.tokens = TokenTable(tokens) if tokens else None
        self.audit = audit
        self._scopes: dict[str, str | None] = {}  # method -> required scope, worked out once
        # A method's registered handler is the same object on every call, so its model-checked wrapper
        # is built once per (method, grant) and reused: the hot path then does the checks, not the wrapping.
        self._checked: dict[tuple[str, int], tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def _model_checked(
        self, handler: grpc.RpcMethodHandler, grant: Grant, scope: str, method: str
    ) -> grpc.RpcMethodHandler:
        key = (method, id(grant))
        cached = self._checked.get(key)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = _model_checked(handler, grant, scope, method)
        if len(self._checked) < 4096:  # bounded by tokens x methods; never grows on made-up names
            self._checked[key] = (handler, wrapped)
        return wrapped

    def wrap(
        self, handler: grpc.RpcMethodHandler, method: str, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        scopes = self._scopes
        scope = scopes[method] if method in scopes else scopes.setdefault(method, required_scope(method))
        if scope is None or (scope == "read" and self.tokens is None):
            return handler  # auth off: a read goes through untouched (only writes are audited)
        principal = "anonymous"
        if self.tokens is not None:
            presented = _bearer(details.invocation_metadata)
            try:
                grant = authorize(self.tokens, presented, method, scope)
            except DomainError as exc:
                return _refused(exc, handler)
            principal = grant.principal
            # Task-local: the RPC runs in this task, so domain code (usage metering) sees who calls.
            current_principal.set(principal)
            if grant.restricted(scope) and method.rpartition("/")[2] not in SERVER_METHODS:
                handler = self._model_checked(handler, grant, scope, method)
        if scope == "write" and self.audit is not None:
            return _audited(handler, self.audit, principal, method)
        return handler


def auth_interceptor(tokens_file: str, audit_path: Path | None) -> AuthInterceptor:
    """Build the interceptor from settings (tokens_file empty = authentication off, audit still on)."""
    tokens = load_tokens(tokens_file) if tokens_file else None
    if tokens is not None:
        logger.info("bearer-token auth on: %d tokens", len(tokens))
    return AuthInterceptor(tokens, AuditLog(audit_path) if audit_path else None)
