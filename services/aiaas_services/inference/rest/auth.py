"""Bearer tokens, scopes, rate limits, quotas and the audit log for HTTP: the gRPC door's rules, same token file.

Health and the OpenAPI document are open (probes); every other endpoint needs the ``read`` scope, and
repository load/unload need ``write`` and are audited to the same ``<home>/audit/<service>.jsonl``. A scope
limited to some models (``read:digits-*``) covers the endpoints that name one of them; ``GET /v2`` (server
metadata) is open to any token holding the scope, as gRPC's ServerMetadata is; endpoints about every
model (``/v2/repository/index``, ``/v2/models/stats``) are refused to it. Each admitted call is counted
against the token's rate limit and quota first, in the same order as the gRPC interceptor, so both doors
answer a sequence of calls alike.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from pathlib import Path

from aiaas_services.runtime.access import Grant
from aiaas_services.runtime.auth import AuditLog, load_tokens
from aiaas_services.runtime.errors import PermissionDenied, Unauthenticated


class HttpAuth:
    """Checks the ``Authorization: Bearer`` header of a request against the token file's grants."""

    def __init__(self, tokens: Mapping[str, Grant] | None, audit_log: AuditLog | None) -> None:
        self.tokens = dict(tokens) if tokens is not None else None
        self.audit_log = audit_log

    @classmethod
    def from_settings(cls, tokens_file: str, audit_path: Path | None) -> HttpAuth:
        """Tokens from the file (empty name = auth off); audit to ``audit_path`` when given."""
        return cls(load_tokens(tokens_file) if tokens_file else None, AuditLog(audit_path) if audit_path else None)

    def check(
        self, headers: list[tuple[bytes, bytes]], scope: str | None, what: str, model: str = "", server: bool = False
    ) -> str:
        """The principal of an admitted call; ``scope`` None = open endpoint.

        ``model``: the model the endpoint names ("" = none); ``server``: the endpoint is about the server,
        not the models. Raises Unauthenticated, PermissionDenied or RateLimited (``retry_after``).
        """
        if scope is None or self.tokens is None:
            return "anonymous"
        grant = _grant(self.tokens, headers)
        if not grant.has(scope):
            raise PermissionDenied(f"{grant.principal} lacks the '{scope}' scope needed for {what}")
        grant.admit()
        if not server and grant.restricted(scope):
            grant.check_model(scope, model, what)
        return grant.principal

    def audit(self, principal: str, what: str, code: str) -> None:
        """Record one write (who, what, outcome) when auditing is on."""
        if self.audit_log is not None:
            self.audit_log.record(principal, what, code)


def _grant(tokens: Mapping[str, Grant], headers: list[tuple[bytes, bytes]]) -> Grant:
    """The grant of the request's bearer token; Unauthenticated when it is missing or unknown."""
    presented = ""
    for key, value in headers:
        if key == b"authorization":
            text = value.decode("latin-1")
            if text[:7].lower() == "bearer ":
                presented = text[7:].strip()
            break
    if not presented:
        raise Unauthenticated("missing bearer token: send the header 'Authorization: Bearer <token>'")
    grant = None
    for token, candidate in tokens.items():  # every token compared: the time says nothing of which matched
        if hmac.compare_digest(token.encode(), presented.encode()):
            grant = candidate
    if grant is None:
        raise Unauthenticated("unknown bearer token")
    return grant
