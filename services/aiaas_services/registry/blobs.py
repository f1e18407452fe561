"""Content-addressed blob stores: a local folder (default) or an S3-compatible bucket.

Bytes are written to a temporary place while they stream in and hashed on the way; only once the digest
is known and verified does ``commit`` move them to their address (``sha256/ab/<hex>``). A temporary
file or multipart upload left by a crash is never visible and is removed by ``clean_temp`` at start-up.
All methods are blocking: callers run them in a thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class BlobWriter(Protocol):
    """A blob being written: feed chunks, then commit under its digest or abort."""

    size: int
    address: str  # when set, commit stores the blob under this digest instead of its own (encrypted blobs)

    def write(self, chunk: bytes) -> None:
        """Hash and store the next chunk."""
        ...

    def hexdigest(self) -> str:
        """sha256 of everything written so far."""
        ...

    def commit(self) -> bool:
        """Make the blob visible at its address; True when identical content was already there."""
        ...

    def abort(self) -> None:
        """Throw the partial blob away (safe to call twice, or after commit)."""
        ...


class BlobStore(Protocol):
    """Where artifact bytes live, addressed by lowercase hex sha256."""

    def writer(self, hash_content: bool = True) -> BlobWriter:
        """Start writing a new blob; ``hash_content=False`` when the caller hashes and sets ``address``."""
        ...

    def exists(self, digest: str) -> bool:
        """Whether the blob is stored."""
        ...

    def read(self, digest: str, offset: int, chunk_size: int) -> Iterator[bytes]:
        """The blob's bytes from ``offset`` on, in chunks of at most ``chunk_size``."""
        ...

    def delete(self, digest: str) -> None:
        """Remove a blob (no error when absent)."""
        ...

    def digests(self) -> Iterator[str]:
        """Every stored blob's digest."""
        ...

    def clean_temp(self) -> int:
        """Remove partial writes left by a crash; returns how many."""
        ...


def _load_sync_file_range() -> Any:
    """Linux's sync_file_range(2), or None: starts writeback of a range without waiting for it."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
        function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
        return function
    except (OSError, AttributeError):  # not Linux / no such symbol
        return None


_SYNC_FILE_RANGE = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2
WRITEBACK_EVERY = 8 * 1024 * 1024


def _hexdigest(hash_: Any) -> str:
    if hash_ is None:
        raise RuntimeError("this blob writer does not hash its content (its caller sets the address)")
    return str(hash_.hexdigest())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalWriter:
    """A temp file under ``<root>/tmp`` that becomes ``<root>/sha256/ab/<hex>`` on commit."""

    def __init__(self, store: LocalBlobStore, hash_content: bool = True) -> None:
        self._store = store
        self._hash = hashlib.sha256() if hash_content else None
        self.size = 0
        self.address = ""
        self._synced = 0
        self._path = store.tmp_dir / f"{uuid.uuid4().hex}.part"
        self._file: Any = self._path.open("wb")

    def write(self, chunk: bytes) -> None:
        if self._hash is not None:
            self._hash.update(chunk)
        self._file.write(chunk)
        self.size += len(chunk)
        if _SYNC_FILE_RANGE is not None and self.size - self._synced >= WRITEBACK_EVERY:
            # Start writing the finished range to disk now, so the fsync at commit has little left to do
            # and the disk works while the network delivers the next chunks.
            self._file.flush()
            _SYNC_FILE_RANGE(self._file.fileno(), self._synced, self.size - self._synced, _SYNC_FILE_RANGE_WRITE)
            self._synced = self.size

    def hexdigest(self) -> str:
        return _hexdigest(self._hash)

    def commit(self) -> bool:
        final = self._store.path_of(self.address or self.hexdigest())
        if final.exists():
            self.abort()
            return True
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._path, final)
        _fsync_dir(final.parent)
        return False

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self._path.unlink(missing_ok=True)


class LocalBlobStore:
    """Blobs as files in a folder, written atomically (temp file, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_dir = root / "tmp"
        self.data_dir = root / "sha256"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def path_of(self, digest: str) -> Path:
        """Where a blob lives."""
        return self.data_dir / digest[:2] / digest

    def writer(self, hash_content: bool = True) -> BlobWriter:
        return LocalWriter(self, hash_content)

    def exists(self, digest: str) -> bool:
        return self.path_of(digest).is_file()

    def read(self, digest: str, offset: int, chunk_size: int) -> Iterator[bytes]:
        with self.path_of(digest).open("rb") as handle:
            handle.seek(offset)
            while chunk := handle.read(chunk_size):
                yield chunk

    def delete(self, digest: str) -> None:
        self.path_of(digest).unlink(missing_ok=True)

    def digests(self) -> Iterator[str]:
        for path in self.data_dir.glob("*/*"):
            if path.is_file() and len(path.name) == 64:
                yield path.name

    def clean_temp(self) -> int:
        removed = 0
        for path in self.tmp_dir.glob("*.part"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed


class S3Writer:
    """A multipart upload to ``<prefix>tmp/<uuid>``, copied to ``<prefix>sha256/ab/<hex>`` on commit.

    Holds at most one part (``part_size`` bytes) in memory.
    """

    def __init__(self, store: S3BlobStore, hash_content: bool = True) -> None:
        self._store = store
        self._s3 = store.client
        self._hash = hashlib.sha256() if hash_content else None
        self.size = 0
        self.address = ""
        self._key = f"{store.prefix}tmp/{uuid.uuid4().hex}"
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = self._s3.create_multipart_upload(Bucket=store.bucket, Key=self._key)["UploadId"]

    def write(self, chunk: bytes) -> None:
        if self._hash is not None:
            self._hash.update(chunk)
        self._buffer += chunk
        self.size += len(chunk)
        if len(self._buffer) >= self._store.part_size:
            self._flush()

    def _flush(self) -> None:
        number = len(self._parts) + 1
        response = self._s3.upload_part(
            Bucket=self._store.bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=bytes(self._buffer),
        )
        self._parts.append({"ETag": response["ETag"], "PartNumber": number})
        self._buffer = bytearray()

    def hexdigest(self) -> str:
        return _hexdigest(self._hash)

    def commit(self) -> bool:
        store = self._store
        digest = self.address or self.hexdigest()
        final = store.key_of(digest)
        if store.exists(digest):
            self.abort()
            return True
        if self._buffer or not self._parts:
            self._flush()
        self._s3.complete_multipart_upload(
            Bucket=store.bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
        )
        self._upload_id = None
        try:
            # Managed copy: server-side, multipart for large objects; never through this process.
            self._s3.copy({"Bucket": store.bucket, "Key": self._key}, store.bucket, final)
        finally:
            self._s3.delete_object(Bucket=store.bucket, Key=self._key)
        return False

    def abort(self) -> None:
        if self._upload_id is not None:
            with contextlib.suppress(Exception):
                self._s3.abort_multipart_upload(Bucket=self._store.bucket, Key=self._key, UploadId=self._upload_id)
            self._upload_id = None
        self._buffer = bytearray()


class S3BlobStore:
    """Blobs as objects in an S3-compatible bucket (boto3). Tested against moto, not a real bucket."""

    def __init__(
        self, url: str, endpoint_url: str = "", region: str = "us-east-1", part_size: int = 8 * 1024 * 1024
    ) -> None:
        # boto3 loads only for an S3 blob store: the default local store does not pay its import.
        import boto3
        from botocore.config import Config

        if not url.startswith("s3://"):
            raise ValueError(f"not an s3:// URL: {url!r}")
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {url!r}")
        self.bucket = bucket
        self.prefix = (prefix.strip("/") + "/") if prefix.strip("/") else ""
        self.part_size = max(part_size, 5 * 1024 * 1024)
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            region_name=region,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=16),
        )

    def key_of(self, digest: str) -> str:
        """Object key of a blob."""
        return f"{self.prefix}sha256/{digest[:2]}/{digest}"

    def writer(self, hash_content: bool = True) -> BlobWriter:
        return S3Writer(self, hash_content)

    def exists(self, digest: str) -> bool:
        from botocore.exceptions import ClientError  # botocore: see __init__

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key_of(digest))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def read(self, digest: str, offset: int, chunk_size: int) -> Iterator[bytes]:
        response = self.client.get_object(Bucket=self.bucket, Key=self.key_of(digest), Range=f"bytes={offset}-")
        body = response["Body"]
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def delete(self, digest: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key_of(digest))

    def _keys(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    def digests(self) -> Iterator[str]:
        for key in self._keys(f"{self.prefix}sha256/"):
            name = key.rsplit("/", 1)[-1]
            if len(name) == 64:
                yield name

    def clean_temp(self) -> int:
        removed = 0
        tmp = f"{self.prefix}tmp/"
        uploads = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=tmp).get("Uploads", [])
        for upload in uploads:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            removed += 1
        for key in list(self._keys(tmp)):
            self.client.delete_object(Bucket=self.bucket, Key=key)
            removed += 1
        return removed


def open_blob_store(
    spec: str, default_root: Path, endpoint_url: str = "", region: str = "us-east-1", part_size: int = 8 << 20
) -> BlobStore:
    """The blob store a settings value names: ``s3://bucket/prefix``, a folder, or the default folder."""
    if spec.startswith("s3://"):
        return S3BlobStore(spec, endpoint_url=endpoint_url, region=region, part_size=part_size)
    return LocalBlobStore(Path(spec).expanduser() if spec else default_root)
