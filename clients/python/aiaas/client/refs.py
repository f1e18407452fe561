"""Shared pieces of the registry clients: version references, digests, inline artifacts, who is calling."""

from __future__ import annotations

import getpass
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from aiaas.common.v1 import common_pb2
from aiaas.registry.v1 import registry_pb2

CHUNK_SIZE = 1024 * 1024
# ``push`` sends files up to this size in all inside CreateVersion: under gRPC's default 4 MiB message
# limit, so any registry accepts it.
INLINE_BYTES = 3 * 1024 * 1024

Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes total) as a transfer advances."""

RefLike = common_pb2.VersionRef | tuple[str, int | str] | str
"""A version: a VersionRef, (model, number or alias), or "model:3" / "model@production"."""

T = TypeVar("T")


class ArtifactCorrupted(Exception):
    """Downloaded bytes do not hash to the digest the registry recorded."""


def version_ref(ref: RefLike) -> common_pb2.VersionRef:
    """A VersionRef from any RefLike."""
    if isinstance(ref, common_pb2.VersionRef):
        return ref
    if isinstance(ref, str):
        if "@" in ref:
            model, alias = ref.split("@", 1)
            return common_pb2.VersionRef(model_name=model, alias=alias)
        if ":" in ref:
            model, number = ref.rsplit(":", 1)
            return common_pb2.VersionRef(model_name=model, version=int(number))
        raise ValueError(f"version reference {ref!r}: use model:NUMBER or model@ALIAS")
    model, selector = ref
    if isinstance(selector, int) or (isinstance(selector, str) and selector.isdigit()):
        return common_pb2.VersionRef(model_name=model, version=int(selector))
    return common_pb2.VersionRef(model_name=model, alias=selector)


def sha256_of(path: Path, limit: int | None = None) -> str:
    """Hex sha256 of a file (or of its first ``limit`` bytes), streamed."""
    digest = hashlib.sha256()
    remaining = limit
    with path.open("rb") as handle:
        while remaining is None or remaining > 0:
            chunk = handle.read(CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining))
            if not chunk:
                break
            digest.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    return digest.hexdigest()


def inline_artifact(name: str, content: Path | str | bytes, media_type: str = "") -> registry_pb2.InlineArtifact:
    """An artifact to send inside CreateVersion (small files: the whole request must fit one message);
    ``content`` is the bytes or a file's path. Its sha256 goes along, so the registry checks it."""
    data = content if isinstance(content, bytes) else Path(content).read_bytes()
    return registry_pb2.InlineArtifact(
        name=name, media_type=media_type, content=data, sha256=hashlib.sha256(data).hexdigest()
    )


def default_actor() -> str:
    """Who this client says it is: $AIAAS_ACTOR, else the login name."""
    try:
        return os.environ.get("AIAAS_ACTOR") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


def hash_prefix(path: Path, length: int, digest: Any) -> None:
    """Feed the first ``length`` bytes of a file to ``digest`` (resuming a partial download)."""
    with path.open("rb") as handle:
        remaining = length
        while remaining > 0 and (chunk := handle.read(min(CHUNK_SIZE, remaining))):
            digest.update(chunk)
            remaining -= len(chunk)
