"""Chunked byte streams: the 1 MiB chunk size, and hashing while streaming."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

CHUNK_SIZE = 1024 * 1024


def iter_file_chunks(path: Path, offset: int = 0, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Read a file in chunks from an offset, without holding it whole in memory."""
    with path.open("rb") as handle:
        handle.seek(offset)
        while chunk := handle.read(chunk_size):
            yield chunk


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    for chunk in iter_file_chunks(path):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


async def aiter_bytes_chunks(data: bytes, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
    """Async chunks of an in-memory buffer (views, no copies)."""
    view = memoryview(data)
    for start in range(0, len(view), chunk_size):
        yield bytes(view[start : start + chunk_size])
