"""Who may call what, and how often: per-model scopes, token-bucket rate limits and request quotas.

Domain code (no gRPC), shared by the gRPC auth interceptor and any other door (REST) that checks the
same tokens. A token's entry in the tokens file::

    {"<token>": {"principal": "acme", "scopes": ["read:digits-*", "write:models/foo"],
                 "rate_per_second": 20, "burst": 40, "quota": {"requests": 100000, "per_seconds": 86400}}}

``read`` / ``write`` cover every model; ``read:PATTERN`` / ``write:PATTERN`` only models whose name matches
the shell-style PATTERN (``models/`` in front is optional). Rate and quota are per token and per service
process (each replica counts on its own); past either, calls fail with ``RateLimited`` carrying how long
to wait. Limits are checked before the call runs, so a refused call costs nothing else.
"""

from __future__ import annotations

import fnmatch
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiaas_services.runtime.errors import PermissionDenied, ResourceExhausted

SCOPES = ("read", "write")
_PATTERN_RE = re.compile(r"^[A-Za-z0-9._*?\[\]-]{1,128}$")


class RateLimited(ResourceExhausted):
    """Too many calls for this token's rate limit or quota; ``retry_after`` says when one would pass."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def retry_after_header(self) -> str:
        """Whole seconds, rounded up, as HTTP's Retry-After and the gRPC ``retry-after`` metadata carry it."""
        return str(max(1, math.ceil(self.retry_after)))


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; each call takes one."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def take(self, now: float) -> float:
        """0 when the call may go ahead (a token is taken), else the seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class Quota:
    """At most ``requests`` calls in each fixed window of ``per_seconds``."""

    def __init__(self, requests: int, per_seconds: float) -> None:
        self.requests = requests
        self.per_seconds = per_seconds
        self.window = -1
        self.used = 0

    def take(self, now: float) -> float:
        """0 when the call fits this window (and is counted), else the seconds until the next window."""
        window = int(now // self.per_seconds)
        if window != self.window:
            self.window, self.used = window, 0
        if self.used < self.requests:
            self.used += 1
            return 0.0
        return (window + 1) * self.per_seconds - now


@dataclass
class Grant:
    """Who a token belongs to, what it may do (to which models) and how often."""

    principal: str
    scopes: frozenset[str]  # the unrestricted scopes: "read", "write"
    models: dict[str, tuple[str, ...]] = field(default_factory=dict)  # scope -> model patterns
    bucket: TokenBucket | None = None
    quota: Quota | None = None
    _matchers: dict[str, re.Pattern[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # One compiled regular expression per scope: matching runs once per call.
        for scope, patterns in self.models.items():
            self._matchers[scope] = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))

    def has(self, scope: str) -> bool:
        """Whether the token holds the scope for at least some models."""
        return scope in self.scopes or scope in self.models

    def restricted(self, scope: str) -> bool:
        """Whether the scope is held only for some models (so the call must name one)."""
        return scope not in self.scopes and scope in self.models

    def check_model(self, scope: str, model: str, method: str) -> None:
        """PermissionDenied unless the scope covers ``model`` ("" = the call names no model)."""
        if scope in self.scopes:
            return
        patterns = self.models.get(scope, ())
        if not model:
            raise PermissionDenied(
                f"{self.principal} may {scope} only models matching {', '.join(patterns)}; {method} is not about "
                "one model"
            )
        if not self._matchers[scope].match(model):
            raise PermissionDenied(
                f"{self.principal} may not {scope} model {model!r} (its '{scope}' scope covers {', '.join(patterns)})"
            )

    def admit(self, now: float | None = None) -> None:
        """Count one call against the rate limit and quota; RateLimited when either is spent."""
        if self.bucket is None and self.quota is None:
            return
        now = time.monotonic() if now is None else now
        if self.bucket is not None:
            wait = self.bucket.take(now)
            if wait > 0:
                raise RateLimited(
                    f"{self.principal} is over its rate limit of {self.bucket.rate:g} calls/s (burst "
                    f"{self.bucket.burst:g}); retry after {wait:.2f}s",
                    wait,
                )
        if self.quota is not None:
            wait = self.quota.take(time.time())
            if wait > 0:
                if self.bucket is not None:  # the refused call gives its token back
                    self.bucket.tokens = min(self.bucket.burst, self.bucket.tokens + 1)
                raise RateLimited(
                    f"{self.principal} used its quota of {self.quota.requests} calls per "
                    f"{self.quota.per_seconds:g}s; it renews in {wait:.0f}s",
                    wait,
                )


def parse_grant(entry: Any, where: str) -> Grant:
    """One token's entry of the tokens file; ValueError with the place and the fix when it is malformed."""
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object with principal and scopes")
    scopes: set[str] = set()
    models: dict[str, list[str]] = {}
    for raw in entry.get("scopes", []):
        scope, colon, pattern = str(raw).partition(":")
        if scope not in SCOPES:
            raise ValueError(
                f"{where}: unknown scope {raw!r} (use read, write, read:MODEL-PATTERN, write:MODEL-PATTERN)"
            )
        if not colon:
            scopes.add(scope)
            continue
        pattern = pattern.removeprefix("models/")
        if not _PATTERN_RE.match(pattern):
            raise ValueError(f"{where}: bad model pattern in scope {raw!r} (letters, digits, . _ - and * ? [ ])")
        models.setdefault(scope, []).append(pattern)
    bucket = None
    if "rate_per_second" in entry:
        rate = float(entry["rate_per_second"])
        if not rate > 0:
            raise ValueError(f"{where}: rate_per_second must be > 0")
        bucket = TokenBucket(rate, float(entry.get("burst", max(1.0, rate))))
    quota = None
    if "quota" in entry:
        spec = entry["quota"]
        if not isinstance(spec, dict) or int(spec.get("requests", -1)) < 0 or float(spec.get("per_seconds", 0)) <= 0:
            raise ValueError(f"{where}: quota must be {{'requests': N >= 0, 'per_seconds': S > 0}}")
        quota = Quota(int(spec["requests"]), float(spec["per_seconds"]))
    return Grant(
        principal=str(entry.get("principal", "unknown")),
        scopes=frozenset(scopes),
        models={scope: tuple(patterns) for scope, patterns in models.items()},
        bucket=bucket,
        quota=quota,
    )


def model_of(request: Any) -> str:
    """The model a registry or inference request names ("" when it names none)."""
    for path in (("model_name",), ("ref", "model_name"), ("header", "model_name"), ("name",)):
        value: Any = request
        for part in path:
            value = getattr(value, part, None)
            if value is None:
                break
        if isinstance(value, str) and value:
            return value
    return ""
