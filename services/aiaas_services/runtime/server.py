"""Server bootstrap shared by every service: build, serve until a signal, shut down in order.

A service provides a ``ServiceApp``: it registers its servicers on the server, does its start-up work
(open the database, load models) and its clean-up. The runtime owns the rest: message limits, TLS, the
error interceptor, ``grpc.health.v1`` (NOT_SERVING until ``start()`` returns and again while draining),
reflection, and the ordered shutdown: signal -> health NOT_SERVING -> ``server.stop(grace)`` ->
``app.close()`` -> flush tracing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from aiaas_services.runtime import metrics, tracing
from aiaas_services.runtime.auth import auth_interceptor
from aiaas_services.runtime.health import DrainingHealthServicer
from aiaas_services.runtime.interceptors import ErrorMappingInterceptor, fuse
from aiaas_services.runtime.logs import configure_logging
from aiaas_services.runtime.reflection import enable_reflection
from aiaas_services.runtime.routing import MethodTable, Registrar, split_links
from aiaas_services.runtime.settings import ServiceSettings

logger = logging.getLogger(__name__)


class ServiceApp(Protocol):
    """What a service gives the runtime."""

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        """Add servicers to the server; return their full service names (for health and reflection)."""
        ...

    async def start(self) -> None:
        """Start-up work after the port is bound and before health turns SERVING."""
        ...

    async def close(self) -> None:
        """Release resources after the server stopped."""
        ...

    # Optional: ``async def drain(self) -> None`` ends open-ended streams (watches) when draining starts.
    # Optional: ``async def serving_gate(self, set_serving) -> None`` decides health after start().


@dataclass
class RunningServer:
    """A started server, its real port and its health servicer."""

    server: grpc.aio.Server
    port: int
    health: HealthServicer
    service_names: list[str] = field(default_factory=list)

    async def set_serving(self, serving: bool = True) -> None:
        """Flip the overall and per-service health status."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ["", *self.service_names]:
            await self.health.set(name, status)


def server_options(settings: ServiceSettings) -> list[tuple[str, int]]:
    """Channel arguments every server gets."""
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Off unless a supervisor runs several workers on one port (inference ``workers``): then on.
        ("grpc.so_reuseport", 1 if getattr(settings, "reuse_port", False) else 0),
        # Accept the keepalive pings our own service-to-service channels send (runtime.channels: every 30 s,
        # also while idle). With gRPC's defaults (pings without data at most every 5 min) a channel idle for
        # about a minute and a half gets GOAWAY "too_many_pings", and the next call on it fails UNAVAILABLE:
        # a training job registering its result after minutes of training saw exactly that.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 20_000),
    ]


def server_credentials(settings: ServiceSettings) -> grpc.ServerCredentials | None:
    """TLS credentials when a certificate is configured; mutual TLS when a client CA is too."""
    if not settings.tls_cert:
        return None
    key = Path(settings.tls_key).read_bytes()
    cert = Path(settings.tls_cert).read_bytes()
    client_ca = Path(settings.tls_client_ca).read_bytes() if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


async def build_server(
    settings: ServiceSettings,
    app: ServiceApp,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> RunningServer:
    """Create, bind and start the server (health NOT_SERVING). Binds ``host:port``; port 0 picks one."""
    # The trailing HandlerInterceptors (all of them, normally) run inside the method lookup (runtime.routing).
    outer, links = split_links([*interceptors, ErrorMappingInterceptor()])
    server = grpc.aio.server(interceptors=fuse(outer) or None, options=server_options(settings))
    table = MethodTable(links)
    server.add_generic_rpc_handlers((table,))
    registrar = cast(grpc.aio.Server, Registrar(server, table))
    health = DrainingHealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, registrar)
    names = list(app.register(registrar))
    enable_reflection(registrar, [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name])
    address = f"{settings.host}:{settings.port}"
    credentials = server_credentials(settings)
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    running = RunningServer(server=server, port=port, health=health, service_names=names)
    await running.set_serving(False)
    await server.start()
    return running


def _write_port_file(path: str, port: int) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_text(str(port))
    os.replace(tmp, target)


async def serve(settings: ServiceSettings, app: ServiceApp, stop_event: asyncio.Event | None = None) -> None:
    """Run the app until SIGTERM/SIGINT (or ``stop_event``), then shut down in order."""
    stop = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread, or not POSIX
            loop.add_signal_handler(sig, stop.set)

    tracer_shutdown = tracing.setup_tracing(settings)
    metrics_stop = metrics.start_metrics_server(settings)
    audit_path = settings.home_path / "audit" / f"{settings.service_name}.jsonl" if settings.audit_log else None
    # Only what is on: each interceptor is another coroutine layer on every RPC.
    interceptors = [
        *(tracing.server_interceptors() if tracing.tracing_enabled() else []),
        *(metrics.server_interceptors() if metrics.metrics_enabled() else []),
        auth_interceptor(settings.auth_tokens_file, audit_path),
    ]
    running = await build_server(settings, app, interceptors=interceptors)
    logger.info("%s listening on %s:%d", settings.service_name, settings.host, running.port)
    started = False
    stopping = asyncio.ensure_future(stop.wait())
    try:
        # A stop during start-up (model loading, warm-up) ends start-up instead of waiting for it.
        starting = asyncio.ensure_future(app.start())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            logger.info("%s stopping during start-up", settings.service_name)
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        else:
            starting.result()
            started = True
            # Optional hook: an app whose readiness depends on more than itself (a worker of several) sets
            # health through ``serving_gate(set_serving)`` and keeps it in step until it closes.
            gate = getattr(app, "serving_gate", None)
            await (gate(running.set_serving) if gate is not None else running.set_serving(True))
            if settings.port_file:
                _write_port_file(settings.port_file, running.port)
            logger.info("%s serving", settings.service_name)
            await stopping
        logger.info("%s draining (grace %.1fs)", settings.service_name, settings.grace_seconds)
    finally:
        stopping.cancel()
        # Health flips first; requests keep being served for the drain delay (balancers and health-aware
        # clients move away), then new calls are refused and in-flight ones get the grace period. Health
        # Watch streams end once they have said NOT_SERVING.
        await running.health.enter_graceful_shutdown()
        if started and stop.is_set() and settings.drain_delay_seconds > 0:
            await asyncio.sleep(settings.drain_delay_seconds)
        # Optional hook: end open-ended streams (watchers resume elsewhere) so stop() need not wait out
        # the whole grace period for calls that never finish on their own.
        drain = getattr(app, "drain", None)
        if drain is not None:
            await drain()
        await running.server.stop(settings.grace_seconds)
        await app.close()
        metrics_stop()
        tracer_shutdown()
        logger.info("%s stopped", settings.service_name)


def run_service(settings: ServiceSettings, app: ServiceApp) -> None:
    """Entry point body for ``python -m aiaas_services.<name>``: log set-up, serve, exit 0."""
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    asyncio.run(serve(settings, app))
