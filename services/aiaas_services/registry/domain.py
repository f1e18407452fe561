"""The registry's domain types, page tokens and version rules (no gRPC, no SQL; name rules: runtime/names.py)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiaas.wire import EventType as EventType  # the registry's enums are the wire's
from aiaas.wire import ModelFormat as ModelFormat
from aiaas.wire import VersionStatus
from aiaas_services.runtime.errors import FailedPrecondition, InvalidArgument

Status = VersionStatus


@dataclass
class Model:
    """A registered model."""

    name: str
    description: str
    tags: dict[str, str]
    aliases: dict[str, int]
    latest_version: int
    created_at: datetime
    updated_at: datetime


@dataclass
class Artifact:
    """A stored file of a version."""

    name: str
    sha256: str
    size_bytes: int
    media_type: str


@dataclass(frozen=True)
class InlineArtifact:
    """An artifact whose bytes come inside a CreateVersion request (``sha256`` empty: not declared)."""

    name: str
    media_type: str
    content: bytes
    sha256: str = ""


@dataclass
class NewVersion:
    """What a caller says about a version it creates. Signature and lineage are JSON-ready dicts."""

    format: ModelFormat = ModelFormat.UNSPECIFIED
    variant: str = ""
    signature: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    required_artifacts: list[str] = field(default_factory=list)


@dataclass
class Version(NewVersion):
    """One version of a model."""

    model_name: str = ""
    number: int = 0
    status: Status = Status.PENDING
    status_reason: str = ""
    artifacts: list[Artifact] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    created_by: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class AliasMove:
    """One recorded move of an alias (to_version 0 = deleted, from_version 0 = new)."""

    model_name: str
    alias: str
    from_version: int
    to_version: int
    actor: str
    reason: str
    moved_at: datetime


@dataclass
class Event:
    """One entry of the gap-free event log."""

    sequence: int
    type: EventType
    model_name: str
    version: int
    alias: str
    from_version: int
    status: Status
    actor: str
    time: datetime


def page_size(requested: int, default: int = 50, largest: int = 1000) -> int:
    """The page size to use for a request's page_size (0 = default)."""
    if requested < 0:
        raise InvalidArgument(f"page_size must be >= 0, got {requested}")
    return min(requested or default, largest)


def encode_token(key: Any) -> str:
    """An opaque page token carrying the last key of a page."""
    return base64.urlsafe_b64encode(json.dumps({"after": key}).encode()).decode()


def decode_token(token: str) -> Any:
    """The key a page token carries; INVALID_ARGUMENT for anything we did not issue."""
    if not token:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise InvalidArgument("invalid page_token: pass next_page_token from the previous page unchanged") from exc


def check_complete(version: str, required: Collection[str], stored: Collection[str]) -> None:
    """A version (described as ``version``) may become READY once it has artifacts and every required
    one is among them."""
    missing = sorted(set(required) - set(stored))
    if missing:
        raise FailedPrecondition(f"{version} cannot be READY: artifacts not uploaded: {missing}")
    if not stored:
        raise FailedPrecondition(f"{version} cannot be READY: it has no artifacts")
