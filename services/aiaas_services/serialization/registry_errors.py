"""Registry call failures -> our domain errors, with the registry's own (safe) message kept."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc

from aiaas_services.runtime.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)

_BY_CODE: dict[grpc.StatusCode, type[DomainError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: PermissionDenied,
}


@contextlib.contextmanager
def translate(step: str) -> Iterator[None]:
    """Re-raise a registry RpcError as the matching domain error, naming the step."""
    try:
        yield
    except grpc.RpcError as exc:
        code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        details = exc.details() if hasattr(exc, "details") else ""
        error = _BY_CODE.get(code, Unavailable)
        raise error(f"registry {code.name} while {step}: {details}") from exc


def rpc_failure(exc: BaseException) -> str | None:
    """ "CODE: details" when ``exc`` is a failed registry call, else None."""
    if not isinstance(exc, grpc.RpcError):
        return None
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else ""
    return f"{getattr(code, 'name', 'UNKNOWN')}: {details}"
