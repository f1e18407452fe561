"""Bearer-token authentication with read and write scopes, and an audit log of every write.

Tokens come from a JSON file (setting ``auth_tokens_file``)::

    {"<token>": {"principal": "ci-bot", "scopes": ["read", "write"]}}

When no file is configured, auth is off and every caller is ``anonymous``. Health and reflection stay
open so probes and ``ghz``/``grpcurl`` discovery work. A method is a *read* when its name starts with one
of ``READ_PREFIXES`` (inference calls included), otherwise a *write* (registry mutations, training,
export, import, model load/unload). Every write is appended to ``<home>/audit/<service>.jsonl`` with who,
what, when and the resulting status code.
"""

from __future__ import annotations

import contextvars
import hmac
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import grpc

from aiaas.wire import AUTHORIZATION_METADATA, READ_PREFIXES
from aiaas_services.runtime.interceptors import HandlerInterceptor, wrap_handler

logger = logging.getLogger(__name__)

OPEN_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection")

current_principal: contextvars.ContextVar[str] = contextvars.ContextVar("current_principal", default="anonymous")


@dataclass(frozen=True)
class Grant:
    """Who a token belongs to and what it may do."""

    principal: str
    scopes: frozenset[str]


def load_tokens(path: str) -> dict[str, Grant]:
    """Read the token file; a malformed file is a start-up error, not an open door."""
    raw = json.loads(Path(path).read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected an object mapping tokens to grants")
    grants: dict[str, Grant] = {}
    for token, grant in raw.items():
        scopes = frozenset(grant.get("scopes", []))
        unknown = scopes - {"read", "write"}
        if unknown:
            raise ValueError(f"{path}: unknown scopes {sorted(unknown)} (use read, write)")
        grants[token] = Grant(principal=str(grant.get("principal", "unknown")), scopes=scopes)
    return grants


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
    for token, grant in tokens.items():
        if hmac.compare_digest(token.encode(), presented.encode()):
            return grant
    return None


def _denied(code: grpc.StatusCode, message: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    async def abort_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)

    async def abort_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)
        yield  # pragma: no cover - makes this an async generator

    return wrap_handler(handler, unary=lambda _: abort_unary, stream=lambda _: abort_stream)


def _audited(handler: grpc.RpcMethodHandler, audit: AuditLog, principal: str, method: str) -> grpc.RpcMethodHandler:
    """Wrap a write handler so its outcome is recorded and the principal is visible to domain code."""

    def code_of(context: grpc.aio.ServicerContext) -> str:
        code = context.code()
        return code.name if isinstance(code, grpc.StatusCode) else "OK"

    def wrap_unary(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            token = current_principal.set(principal)
            try:
                result = await fn(request, context)
            except BaseException:
                audit.record(principal, method, code_of(context) if context.code() else "ERROR")
                raise
            finally:
                current_principal.reset(token)
            audit.record(principal, method, code_of(context))
            return result

        return call

    def wrap_stream(fn: Callable[..., Any]) -> Callable[..., Any]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            token = current_principal.set(principal)
            try:
                async for item in fn(request, context):
                    yield item
            except BaseException:
                audit.record(principal, method, code_of(context) if context.code() else "ERROR")
                raise
            finally:
                current_principal.reset(token)
            audit.record(principal, method, code_of(context))

        return call

    return wrap_handler(handler, unary=wrap_unary, stream=wrap_stream)


class AuthInterceptor(HandlerInterceptor):
    """Checks the bearer token's scope for each RPC and audits writes."""

    def __init__(self, tokens: Mapping[str, Grant] | None, audit: AuditLog | None) -> None:
        self.tokens = dict(tokens) if tokens else None
        self.audit = audit

    def wrap(
        self, handler: grpc.RpcMethodHandler, method: str, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        scope = required_scope(method)
        if scope is None:
            return handler
        principal = "anonymous"
        if self.tokens is not None:
            presented = _bearer(details.invocation_metadata)
            if not presented:
                return _denied(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "missing bearer token: send metadata 'authorization: Bearer <token>'",
                    handler,
                )
            grant = _find_grant(self.tokens, presented)
            if grant is None:
                return _denied(grpc.StatusCode.UNAUTHENTICATED, "unknown bearer token", handler)
            if scope not in grant.scopes:
                return _denied(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"{grant.principal} lacks the '{scope}' scope needed for {method}",
                    handler,
                )
            principal = grant.principal
        if scope == "write" and self.audit is not None:
            return _audited(handler, self.audit, principal, method)
        return handler


def auth_interceptor(tokens_file: str, audit_path: Path | None) -> AuthInterceptor:
    """Build the interceptor from settings (tokens_file empty = authentication off, audit still on)."""
    tokens = load_tokens(tokens_file) if tokens_file else None
    if tokens is not None:
        logger.info("bearer-token auth on: %d tokens", len(tokens))
    return AuthInterceptor(tokens, AuditLog(audit_path) if audit_path else None)
