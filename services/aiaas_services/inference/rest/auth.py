"""Bearer tokens, scopes and the audit log for HTTP: the same token file and rules as the gRPC interceptor.

Health and the OpenAPI document are open (probes); every other endpoint needs the ``read`` scope, and
repository load/unload need ``write`` and are audited to the same ``<home>/audit/<service>.jsonl``.
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

    def check(self, headers: list[tuple[bytes, bytes]], scope: str | None, what: str) -> str:
        """The principal, or Unauthenticated / PermissionDenied; ``scope`` None = open endpoint."""
        if scope is None or self.tokens is None:
            return "anonymous"
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
        for token, candidate in self.tokens.items():
            if hmac.compare_digest(token.encode(), presented.encode()):
                grant = candidate
        if grant is None:
            raise Unauthenticated("unknown bearer token")
        if scope not in grant.scopes:
            raise PermissionDenied(f"{grant.principal} lacks the '{scope}' scope needed for {what}")
        return grant.principal

    def audit(self, principal: str, what: str, code: str) -> None:
        """Record one write (who, what, outcome) when auditing is on."""
        if self.audit_log is not None:
            self.audit_log.record(principal, what, code)
