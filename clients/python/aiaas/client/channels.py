"""Channels to one replica or several: the ONE service config every client and service uses.

A target is ``host:port``, a comma-separated list of them (``10.0.0.1:8001,10.0.0.2:8001``), or any
gRPC name such as ``dns:///inference:8001`` (every address the name resolves to). gRPC Python has no
static multi-address resolver except ``ipv4:``/``ipv6:``, so a list is rewritten to that form (host
names in it are resolved once, here). The channel then uses gRPC's own machinery:

- ``round_robin`` over every address (one subchannel per replica, each request to the next one);
- client-side health checking (``healthCheckConfig``) when the target names several replicas (a list
  or a ``dns:``/``ipv4:``/``ipv6:`` name): each subchannel watches ``grpc.health.v1`` and a replica that
  is NOT_SERVING (starting, draining) or gone takes no new requests. A single ``host:port`` is not
  health-checked: with nowhere else to send them, its callers are better served during a drain (and can
  ask a loading server whether it is ready) than refused at once;
- the retry policy of ``aiaas.client.retry``: idempotent calls (reads, inference) retried on
  UNAVAILABLE, so a request caught on a replica that dies is answered by another one.

``dial(target)`` gives the gRPC target and options for ``grpc.insecure_channel`` / ``grpc.aio`` (or
the secure variants). A backend using raw stubs gets the same by pasting ``service_config_json()``
(shown in README "Scaling out") into the ``grpc.service_config`` channel option.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Sequence
from typing import Any

import grpc

from aiaas.client.retry import retry_method_config

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def service_config(health_check: bool = True) -> dict[str, Any]:
    """The service config: round_robin, client-side health checking, retries of idempotent calls.

    ``health_check=False`` is for probes that must reach a NOT_SERVING server (``aiaas health``).
    """
    config: dict[str, Any] = {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [retry_method_config()],
    }
    if health_check:
        # "" is the server's overall status, which every aiaas service keeps.
        config["healthCheckConfig"] = {"serviceName": ""}
    return config


def service_config_json(health_check: bool = True) -> str:
    """``service_config()`` as the JSON string gRPC's ``grpc.service_config`` option takes."""
    return json.dumps(service_config(health_check), separators=(",", ":"))


def channel_options(
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, health_check: bool = True
) -> list[tuple[str, Any]]:
    """Channel arguments: the service config, retries on, message limits.

    The resolver's service config is ignored (``grpc.service_config_disable_resolution``) so a DNS TXT
    record cannot switch the policy off.
    """
    return [
        ("grpc.service_config", service_config_json(health_check)),
        ("grpc.service_config_disable_resolution", 1),
        ("grpc.enable_retries", 1),
        # A replica that restarts is picked again within a second or two, not after minutes of backoff.
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 5000),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]


def balanced(target: str | Sequence[str]) -> bool:
    """True when the target can name several replicas: a list, or a name with a resolver scheme."""
    entries = split_targets(target)
    return len(entries) > 1 or (len(entries) == 1 and entries[0].startswith(("dns:", "ipv4:", "ipv6:")))


def dial(
    target: str | Sequence[str], max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> tuple[str, list[tuple[str, Any]]]:
    """(gRPC target, channel options) for one replica or several; health checking when balanced."""
    return resolve_target(target), channel_options(max_message_bytes, health_check=balanced(target))


def aio_channel(target: str | Sequence[str], max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> grpc.aio.Channel:
    """An insecure ``grpc.aio`` channel to one replica or several (must be called inside the event loop)."""
    resolved, options = dial(target, max_message_bytes)
    return grpc.aio.insecure_channel(resolved, options=options)


def split_targets(target: str | Sequence[str]) -> list[str]:
    """The comma-separated (or listed) ``host:port`` entries of a target, stripped."""
    parts = target.split(",") if isinstance(target, str) else list(target)
    return [part.strip() for part in parts if part and part.strip()]


def _host_port(entry: str) -> tuple[str, str]:
    if entry.startswith("["):  # [::1]:8001
        host, _, port = entry[1:].partition("]:")
        return host, port
    host, sep, port = entry.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"target {entry!r} is not host:port")
    return host, port


def _addresses(entry: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    host, port = _host_port(entry)
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        return [ipaddress.ip_address(info[4][0]) for info in infos]


def resolve_target(target: str | Sequence[str]) -> str:
    """The gRPC target for one entry, a list of ``host:port`` entries, or a name with a scheme.

    One entry or a ``scheme:`` name passes through unchanged; several entries become
    ``ipv4:a:p,b:p`` (or ``ipv6:[a]:p,...``). IPv4 wins when the entries resolve to both families.
    """
    entries = split_targets(target)
    if not entries:
        raise ValueError("no target given")
    if len(entries) == 1:
        return entries[0]
    if any("://" in entry or entry.startswith(("ipv4:", "ipv6:", "unix:")) for entry in entries):
        raise ValueError(f"list several host:port entries or one name with a scheme, not both: {target!r}")
    v4: list[str] = []
    v6: list[str] = []
    for entry in entries:
        _, port = _host_port(entry)
        for address in _addresses(entry):
            text = f"{address}:{port}" if address.version == 4 else f"[{address}]:{port}"
            bucket = v4 if address.version == 4 else v6
            if text not in bucket:
                bucket.append(text)
    if v4:
        return "ipv4:" + ",".join(v4)
    return "ipv6:" + ",".join(v6)
