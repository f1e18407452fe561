"""Retries only where they are safe: idempotent calls, on UNAVAILABLE, with jittered exponential backoff.

gRPC's own retry machinery does the work (its backoff is randomised between zero and the current cap,
which is the jitter); we only say which methods may be retried. A method is idempotent when it reads:
its name starts with one of ``READ_PREFIXES``. Writes (create, upload, set alias, start job ...) are never
retried blindly — the ones that must be retry-safe take a client-chosen ``request_id`` instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from google.protobuf.descriptor import FileDescriptor

from aiaas.wire import READ_PREFIXES


def is_idempotent(method_name: str) -> bool:
    """True for reads (safe to retry), false for writes."""
    return method_name.startswith(READ_PREFIXES)


def _our_files() -> list[FileDescriptor]:
    from aiaas.oip.v2 import grpc_service_pb2
    from aiaas.registry.v1 import registry_pb2
    from aiaas.serialization.v1 import serialization_pb2
    from aiaas.training.v1 import training_pb2

    return [registry_pb2.DESCRIPTOR, training_pb2.DESCRIPTOR, serialization_pb2.DESCRIPTOR, grpc_service_pb2.DESCRIPTOR]


def retry_method_config(
    files: Iterable[FileDescriptor] | None = None,
    max_attempts: int = 4,
    initial_backoff_s: float = 0.1,
    max_backoff_s: float = 2.0,
) -> dict[str, Any]:
    """One ``methodConfig`` entry retrying every idempotent method of our services on UNAVAILABLE."""
    names = []
    for file in files if files is not None else _our_files():
        for service in file.services_by_name.values():
            for method in service.methods:
                # Client-streaming calls cannot be replayed safely once data has been sent.
                if is_idempotent(method.name) and not method.client_streaming:
                    names.append({"service": service.full_name, "method": method.name})
    return {
        "name": names,
        "retryPolicy": {
            "maxAttempts": max_attempts,
            "initialBackoff": f"{initial_backoff_s}s",
            "maxBackoff": f"{max_backoff_s}s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }


def retry_service_config(
    files: Iterable[FileDescriptor] | None = None,
    max_attempts: int = 4,
    initial_backoff_s: float = 0.1,
    max_backoff_s: float = 2.0,
) -> str:
    """A gRPC service config (JSON) holding only the retry policy (see aiaas.client.channels for the full one)."""
    method = retry_method_config(files, max_attempts, initial_backoff_s, max_backoff_s)
    return json.dumps({"methodConfig": [method]})


def retry_options() -> list[tuple[str, object]]:
    """Channel options with the shared service config (aiaas.client.channels), without health checking."""
    from aiaas.client.channels import service_config_json  # here: channels imports this module

    return [("grpc.enable_retries", 1), ("grpc.service_config", service_config_json(health_check=False))]
