"""Domain errors and the one table that maps them to gRPC status codes.

Domain code raises these and knows nothing of gRPC. The server's error interceptor turns them into a
status with the error's message, which must tell the caller what to fix. Any other exception becomes
INTERNAL with a generic message; its traceback goes to the log, never to the client.
"""

from __future__ import annotations

import grpc


class DomainError(Exception):
    """Base of errors whose message is safe and useful to show a caller."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN


class InvalidArgument(DomainError):
    """The request is malformed; the message says which field and why."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(DomainError):
    """A named thing (model, version, job, artifact) does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    """A thing with that name exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    """The system is not in a state that allows this (e.g. aliasing a version that is not READY)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class DigestMismatch(DomainError):
    """Bytes received do not hash to the digest the client declared."""

    code = grpc.StatusCode.DATA_LOSS


class ResourceExhausted(DomainError):
    """A queue or size limit is reached; retry later or send less."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(DomainError):
    """Not ready yet, or a dependency is down; retrying later may succeed."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(DomainError):
    """The request's deadline passed before it could run."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Aborted(DomainError):
    """A concurrent change won; retry the read-modify-write."""

    code = grpc.StatusCode.ABORTED


class Unimplemented(DomainError):
    """The call or option is not supported by this server."""

    code = grpc.StatusCode.UNIMPLEMENTED


class PermissionDenied(DomainError):
    """The caller is known but may not do this."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(DomainError):
    """The caller did not prove who it is."""

    code = grpc.StatusCode.UNAUTHENTICATED


class Cancelled(DomainError):
    """The work was cancelled."""

    code = grpc.StatusCode.CANCELLED


INTERNAL_MESSAGE = "internal error; the server log has the details"


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and client-safe message for an exception."""
    if isinstance(exc, DomainError):
        return exc.code, str(exc) or exc.code.name.lower()
    if isinstance(exc, NotImplementedError):  # generated base servicers raise it for unserved methods
        return grpc.StatusCode.UNIMPLEMENTED, "method not implemented by this server"
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
