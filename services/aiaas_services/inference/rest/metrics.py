"""Prometheus figures of the REST front door: requests and latency by route template and HTTP status."""

from __future__ import annotations

from prometheus_client import Histogram

from aiaas_services.runtime.metrics import RPC_BUCKETS

HTTP_DURATION = Histogram(
    "aiaas_http_server_duration_seconds",
    "Server-side HTTP latency by method, route template (/v2/models/{name}/infer) and status.",
    ["method", "route", "status"],
    buckets=RPC_BUCKETS,
)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request."""
    HTTP_DURATION.labels(method, route, str(status)).observe(seconds)
