"""Prometheus metrics for every service: an HTTP endpoint, RPC counts/latencies, and service helpers.

The endpoint starts when the ``metrics_port`` setting is 0 or more (``AIAAS_METRICS_PORT``; -1, the
default, keeps it off). Every RPC except health and reflection is counted in
``aiaas_rpc_server_duration_seconds{method, code}`` (a histogram, so ``_count`` is the request count).
Services record their own figures through the helpers below (or register their own families, as the
inference service does for queue wait, compute time and batch sizes per model version); recording is
cheap whether or not anyone scrapes, so calling them unconditionally is fine.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from aiaas_services.runtime.interceptors import Behaviour, WrappingInterceptor
from aiaas_services.runtime.settings import ServiceSettings

logger = logging.getLogger(__name__)

UNTRACED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

# Latency buckets from 0.5 ms (an inference) to 10 min (a training job's RPC-held stream).
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600)

RPC_DURATION = Histogram(
    "aiaas_rpc_server_duration_seconds",
    "Server-side RPC latency by full method and status code.",
    ["method", "code"],
    buckets=RPC_BUCKETS,
)
RPC_IN_FLIGHT = Gauge("aiaas_rpc_server_in_flight", "RPCs being handled now, by full method.", ["method"])
JOBS = Gauge("aiaas_jobs", "Jobs by kind (training, export) and state.", ["kind", "state"])
ARTIFACT_BYTES = Counter(
    "aiaas_artifact_bytes_total", "Artifact bytes moved, by direction (upload, download).", ["direction"]
)

_enabled = False


def metrics_enabled() -> bool:
    """Whether this process serves /metrics (the RPC interceptor passes calls through otherwise)."""
    return _enabled


def start_metrics_server(settings: ServiceSettings) -> Callable[[], None]:
    """Serve /metrics on ``settings.host:metrics_port`` when the port is 0 or more; returns a stop function.

    With port 0 the bound port is logged and, when ``port_file`` is set, written to ``<port_file>.metrics``.
    """
    global _enabled
    port = getattr(settings, "metrics_port", -1)
    if port < 0:
        return lambda: None
    server, thread = start_http_server(port, addr=settings.host)
    bound = int(server.server_port)
    _enabled = True
    logger.info("metrics on http://%s:%d/metrics", settings.host, bound)
    if settings.port_file:
        target = Path(settings.port_file + ".metrics")
        tmp = target.with_suffix(".tmp-metrics")
        tmp.write_text(str(bound))
        os.replace(tmp, target)

    def stop() -> None:
        global _enabled
        _enabled = False
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop


def record_job_transition(kind: str, old_state: str | None, new_state: str | None) -> None:
    """Move one job between states in ``aiaas_jobs`` (None for "did not exist" / "forgotten")."""
    if old_state:
        JOBS.labels(kind, old_state).dec()
    if new_state:
        JOBS.labels(kind, new_state).inc()


def add_artifact_bytes(direction: str, count: int) -> None:
    """Count artifact bytes uploaded or downloaded ("upload" / "download")."""
    ARTIFACT_BYTES.labels(direction).inc(count)


class RpcMetricsInterceptor(WrappingInterceptor):
    """Counts RPCs and their latency by method and status code; idle while metrics are off."""

    def __init__(self, always: bool = False) -> None:
        super().__init__()
        self._always = always

    def applies(self, method: str) -> bool:
        """While metrics are on, every method but health checks and reflection."""
        return (self._always or _enabled) and not method.startswith(UNTRACED_PREFIXES)

    def wrappers(
        self, handler: grpc.RpcMethodHandler, method: str
    ) -> tuple[Callable[[Behaviour], Behaviour], Callable[[Behaviour], Behaviour]]:
        """Both kinds count the call in flight and observe its duration under its status code."""
        return (lambda fn: _unary(fn, method), lambda fn: _streaming(fn, method))


def _code_name(context: grpc.aio.ServicerContext, failure: str | None) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(code, int):
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), "UNKNOWN")
    return failure or "OK"


def _failure(exc: BaseException) -> str | None:
    if isinstance(exc, grpc.aio.AbortError):
        return None
    return "UNKNOWN" if isinstance(exc, Exception) else "CANCELLED"


_durations: dict[tuple[str, str], Any] = {}


def _duration(method: str, code: str) -> Any:
    """The histogram child of (method, code), looked up in prometheus once (``labels`` takes a lock)."""
    child = _durations.get((method, code))
    if child is None:
        child = _durations[(method, code)] = RPC_DURATION.labels(method, code)
    return child


class _Measured:
    """The opening both kinds of counted handler share: the call counted in flight from construction
    until the handler is done, then its duration observed under its status code."""

    __slots__ = ("context", "in_flight", "method", "started")

    def __init__(self, in_flight: Any, method: str, context: grpc.aio.ServicerContext) -> None:
        self.started = time.perf_counter()
        self.in_flight = in_flight
        self.method = method
        self.context = context
        in_flight.inc()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        self.in_flight.dec()
        failure = None if exc is None else _failure(exc)
        _duration(self.method, _code_name(self.context, failure)).observe(time.perf_counter() - self.started)


def _unary(behavior: Callable[..., Any], method: str) -> Callable[..., Awaitable[Any]]:
    in_flight = RPC_IN_FLIGHT.labels(method)

    async def handler(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        with _Measured(in_flight, method, context):
            return await behavior(request_or_iterator, context)

    return handler


def _streaming(behavior: Callable[..., Any], method: str) -> Callable[..., AsyncIterator[Any]]:
    in_flight = RPC_IN_FLIGHT.labels(method)

    async def handler(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        with _Measured(in_flight, method, context):
            result = behavior(request_or_iterator, context)
            if hasattr(result, "__anext__"):
                async for item in result:
                    yield item
            else:
                await result

    return handler


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """The RPC metrics interceptor (it passes calls through until ``start_metrics_server`` runs)."""
    return [RpcMetricsInterceptor()]
