"""Client channels for service-to-service calls: one place for limits, TLS, keepalive, tracing and the
caller's deadline (an outgoing call never outlives the incoming one it serves: ``runtime.deadlines``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from aiaas.client import channels
from aiaas.wire import AUTHORIZATION_METADATA
from aiaas_services.runtime import deadlines, tracing
from aiaas_services.runtime.client_interceptors import rewriting_interceptors
from aiaas_services.runtime.settings import ServiceSettings


def channel_options(max_message_bytes: int = 64 * 1024 * 1024, health_check: bool = False) -> list[tuple[str, object]]:
    """Channel arguments for calls between services: the clients' service config (round_robin over every
    replica, client-side health checking, idempotent calls retried on UNAVAILABLE) plus keepalive."""
    return [
        *channels.channel_options(max_message_bytes, health_check),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def token_interceptors(token: str) -> list[grpc.aio.ClientInterceptor]:
    """Client interceptors that present this service's bearer token (setting ``service_token``) to the
    services it calls: each call gets ``authorization: Bearer <token>``."""
    header = (AUTHORIZATION_METADATA, f"Bearer {token}")

    def with_token(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()), header)
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )

    return rewriting_interceptors(with_token)


def open_channel(target: str, settings: ServiceSettings | None = None) -> grpc.aio.Channel:
    """An aio channel to another service, secure when the settings carry TLS material.

    ``target`` may list several replicas (``a:p,b:p``) or be a ``dns:///`` name; see aiaas.client.channels.

    With TLS configured, the service's own certificate doubles as its client certificate (mTLS) and
    ``tls_client_ca`` is trusted as the root for the peer.
    """
    max_bytes = settings.max_message_bytes if settings else 64 * 1024 * 1024
    interceptors: list[Any] = [*tracing.client_interceptors(), *deadlines.carry_interceptors()]
    if settings and settings.service_token:
        interceptors.extend(token_interceptors(settings.service_token))
    options = channel_options(max_bytes, channels.balanced(target))
    target = channels.resolve_target(target)
    if settings and settings.tls_client_ca:
        root = Path(settings.tls_client_ca).read_bytes()
        key = Path(settings.tls_key).read_bytes() if settings.tls_key else None
        cert = Path(settings.tls_cert).read_bytes() if settings.tls_cert else None
        credentials = grpc.ssl_channel_credentials(root, key, cert)
        return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)
    return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
