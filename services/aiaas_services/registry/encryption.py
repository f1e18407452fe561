"""Encryption at rest for registry blobs: AES-256-GCM envelope encryption around any blob store.

Each blob gets its own random data key (DEK). Its bytes are cut into fixed-size segments, each sealed
with AES-GCM under the DEK (nonce = segment number + a last-segment flag, the STREAM construction, so
segments cannot be reordered, dropped or truncated unnoticed); a download from any offset decrypts
from the segment that holds it, so streaming and resumed downloads keep working. The DEK is wrapped by
a key-encryption key (KEK) and stored apart from the blob in a small *envelope*; rotating the KEK
re-wraps envelopes and never touches the blobs. The address stays the plaintext's sha256, so dedup and
digest checks are unchanged.

Stored blob: ``MAGIC (8) | blob id (16) | segment 0 | segment 1 | ...`` (each segment = ciphertext +
16-byte tag). Envelope (JSON) at ``keys/<ab>/<digest>.<blob id>`` beside ``sha256/`` (folder or S3 prefix).
The blob id names the envelope, so two writers of the same content never mix one's key with the other's bytes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from aiaas_services.registry.blobs import BlobStore, BlobWriter, LocalBlobStore, S3BlobStore
from aiaas_services.registry.keyring import EncryptionConfigError, Envelope, Keyring, KeyUnavailable
from aiaas_services.registry.sealing import (
    MAGIC,
    SEGMENT_BYTES,
    TAG_BYTES,
    Sealer,
    opened_segments,
    sealed_segments,
)
from aiaas_services.runtime.errors import DigestMismatch

logger = logging.getLogger(__name__)

BLOB_ID_BYTES = 16
HEADER_BYTES = len(MAGIC) + BLOB_ID_BYTES


class Shelf(Protocol):
    """Where envelopes live: small named objects beside the blobs."""

    def put(self, name: str, data: bytes) -> None: ...
    def get(self, name: str) -> bytes | None: ...
    def delete(self, name: str) -> None: ...
    def names(self, digest: str = "") -> Iterator[str]: ...


class LocalShelf:
    """Envelopes as files under ``<root>/keys/ab/``, replaced atomically."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "keys"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        return self.dir / name[:2] / name

    def put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{uuid.uuid4().hex}.tmp")
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def get(self, name: str) -> bytes | None:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def names(self, digest: str = "") -> Iterator[str]:
        """Every envelope's name, or those of one blob."""
        for path in self.dir.glob(f"{digest[:2]}/{digest}.*" if digest else "*/*"):
            if not path.name.startswith("."):
                yield path.name
            elif path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)  # a put a crash interrupted


class S3Shelf:
    """Envelopes as objects under ``<prefix>keys/ab/`` (a PUT replaces an object atomically)."""

    def __init__(self, store: S3BlobStore) -> None:
        self._s3 = store.client
        self._bucket = store.bucket
        self._prefix = f"{store.prefix}keys/"

    def _key(self, name: str) -> str:
        return f"{self._prefix}{name[:2]}/{name}"

    def put(self, name: str, data: bytes) -> None:
        self._s3.put_object(Bucket=self._bucket, Key=self._key(name), Body=data)

    def get(self, name: str) -> bytes | None:
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=self._key(name))
        except self._s3.exceptions.NoSuchKey:
            return None
        body: bytes = response["Body"].read()
        return body

    def delete(self, name: str) -> None:
        self._s3.delete_object(Bucket=self._bucket, Key=self._key(name))

    def names(self, digest: str = "") -> Iterator[str]:
        """Every envelope's name, or those of one blob."""
        prefix = f"{self._prefix}{digest[:2]}/{digest}." if digest else self._prefix
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"].rsplit("/", 1)[-1]


def shelf_for(store: BlobStore) -> Shelf:
    """The envelope shelf beside a blob store."""
    if isinstance(store, LocalBlobStore):
        return LocalShelf(store.root)
    if isinstance(store, S3BlobStore):
        return S3Shelf(store)
    raise EncryptionConfigError(f"encryption at rest does not support {type(store).__name__}")


class EncryptedWriter:
    """Hashes the plaintext and seals it segment by segment (``sealing.Sealer``) into the inner writer, which
    does not hash the ciphertext: the blob's address is the plaintext's digest."""

    def __init__(self, store: EncryptedBlobStore) -> None:
        self._store = store
        self._inner = store.inner.writer(hash_content=False)
        self._hash = hashlib.sha256()
        self._dek = AESGCM.generate_key(bit_length=256)
        self._blob_id = os.urandom(BLOB_ID_BYTES)
        self._sealer = Sealer(AESGCM(self._dek), store.segment_bytes, self._inner.write)
        self.size = 0
        self.address = ""
        self._inner.write(MAGIC + self._blob_id)

    def write(self, chunk: bytes | memoryview) -> None:
        self.size += len(chunk)
        self._sealer.feed(chunk, lambda: self._hash.update(chunk))

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def commit(self) -> bool:
        digest = self.address or self.hexdigest()
        store = self._store
        with store.commit_lock:
            if store.inner.exists(digest):
                self.abort()
                return True
            self._sealer.finish()
            envelope = Envelope(self._blob_id.hex(), "", b"", b"", store.segment_bytes, self.size)
            kek, nonce, wrapped = store.keyring.wrap(self._dek, envelope.aad(digest))
            envelope = Envelope(envelope.blob_id, kek, nonce, wrapped, envelope.segment_bytes, self.size)
            # The envelope first: a crash between the two leaves an envelope without a blob (removed at
            # start-up), never a blob no key opens.
            store.shelf.put(f"{digest}.{envelope.blob_id}", envelope.to_bytes())
            self._inner.address = digest
            return bool(self._inner.commit())

    def abort(self) -> None:
        self._inner.abort()
        self._sealer.drop()


class EncryptedBlobStore:
    """A BlobStore that keeps only ciphertext in ``inner`` (a local folder or an S3 bucket)."""

    path_of: Callable[[str], Path]

    def __init__(self, inner: BlobStore, keyring: Keyring, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.inner = inner
        self.keyring = keyring
        self.segment_bytes = segment_bytes
        self.shelf = shelf_for(inner)
        self.commit_lock = threading.Lock()
        self._warned_plain = False
        if isinstance(inner, LocalBlobStore):
            # Where the (encrypted) blob lies on disk, for the GC's size report; absent for S3, as there.
            self.path_of = inner.path_of

    def writer(self, hash_content: bool = True) -> BlobWriter:
        """A sealing writer; it always hashes (the address is the plaintext's digest)."""
        return EncryptedWriter(self)

    def exists(self, digest: str) -> bool:
        return self.inner.exists(digest)

    def _header(self, digest: str) -> bytes:
        reader = self.inner.read(digest, 0, HEADER_BYTES)
        try:
            head = b""
            for chunk in reader:
                head += chunk
                if len(head) >= HEADER_BYTES:
                    break
            return head[:HEADER_BYTES]
        finally:
            close = getattr(reader, "close", None)
            if close is not None:
                close()

    def read(self, digest: str, offset: int, chunk_size: int) -> Iterator[bytes]:
        """Plaintext from ``offset`` on; the key is checked before the first byte is returned."""
        head = self._header(digest)
        if not head.startswith(MAGIC):
            # Stored before encryption was switched on: served as it is (the digest checks still hold).
            if not self._warned_plain:
                logger.warning("serving blob %s stored in clear (written before encryption was enabled)", digest)
                self._warned_plain = True
            return self.inner.read(digest, offset, chunk_size)
        what = f"blob {digest}"
        blob_id = head[len(MAGIC) :].hex()
        data = self.shelf.get(f"{digest}.{blob_id}")
        if data is None:
            raise KeyUnavailable(f"the key envelope of {what} is missing; its bytes cannot be decrypted")
        envelope = Envelope.from_bytes(data, what)
        if envelope.blob_id != blob_id:
            raise DigestMismatch(f"the key envelope of {what} belongs to another copy of it")
        dek = self.keyring.unwrap(envelope.kek, envelope.nonce, envelope.wrapped, envelope.aad(digest), what)
        return self._plaintext(digest, envelope, AESGCM(dek), offset, max(1, chunk_size))

    def _plaintext(
        self, digest: str, envelope: Envelope, cipher: AESGCM, offset: int, chunk_size: int
    ) -> Iterator[bytes]:
        size, segment = envelope.size, envelope.segment_bytes
        if offset >= size and size > 0:
            return
        index = offset // segment
        skip = offset - index * segment
        sealed = segment + TAG_BYTES
        what = f"blob {digest}"
        reader = self.inner.read(digest, HEADER_BYTES + index * sealed, sealed)
        try:
            segments = sealed_segments(reader, index, size, segment, what)
            for plain in opened_segments(cipher, segments, max(1, -(-size // segment)), what):
                if skip == 0 and len(plain) <= chunk_size:
                    yield plain
                else:
                    for start in range(skip, len(plain), chunk_size):
                        yield plain[start : start + chunk_size]
                skip = 0
        finally:
            close = getattr(reader, "close", None)
            if close is not None:
                close()

    def delete(self, digest: str) -> None:
        self.inner.delete(digest)
        for name in list(self.shelf.names(digest)):
            self.shelf.delete(name)

    def digests(self) -> Iterator[str]:
        return self.inner.digests()

    def clean_temp(self) -> int:
        """Partial writes, and envelopes whose blob is gone or belongs to another copy (a crash or a race)."""
        removed = self.inner.clean_temp()
        stored = set(self.inner.digests())
        by_digest: dict[str, list[str]] = {}
        for name in self.shelf.names():
            by_digest.setdefault(name.partition(".")[0], []).append(name)
        for digest, names in by_digest.items():
            if digest in stored and len(names) > 1:  # only then read the blob's header to see whose it is
                own = f"{digest}.{self._header(digest)[len(MAGIC) :].hex()}"
                names = [name for name in names if name != own]
            elif digest in stored:
                continue
            for name in names:
                self.shelf.delete(name)
                removed += 1
        return removed

    def rotate(self) -> RotationReport:
        """Re-wrap every data key not under the primary KEK with it; blobs are not touched.

        An envelope that cannot be re-wrapped (its key is not in the keyring, or it is corrupt) is left as
        it was and listed in the report; the others are still rotated. Nothing is ever deleted.
        """
        report = RotationReport(0, 0)
        for name in list(self.shelf.names()):
            digest = name.partition(".")[0]
            data = self.shelf.get(name)
            if data is None:
                continue
            try:
                envelope = Envelope.from_bytes(data, f"blob {digest}")
                if envelope.kek == self.keyring.primary:
                    report.already += 1
                    continue
                rewrapped = envelope.rewrapped(self.keyring, digest).to_bytes()
            except (KeyUnavailable, DigestMismatch) as exc:
                report.failed.append(str(exc))
                continue
            self.shelf.put(name, rewrapped)
            report.rewrapped += 1
        return report


@dataclass
class RotationReport:
    """What a key rotation did; ``failed`` says why each envelope it could not re-wrap was left as it was."""

    rewrapped: int
    already: int
    failed: list[str] = field(default_factory=list)


def check_unencrypted_store(store: BlobStore) -> None:
    """Refuse to serve a store that holds encrypted blobs when no key is configured (they would go out sealed)."""
    if not isinstance(store, (LocalBlobStore, S3BlobStore)):
        return
    if next(iter(shelf_for(store).names()), None) is not None:
        raise EncryptionConfigError(
            "the blob store holds encrypted blobs but no encryption key is configured; set "
            "AIAAS_REGISTRY_ENCRYPTION_KEY_FILE (or AIAAS_REGISTRY_ENCRYPTION_KEYS) to the keyring they were "
            "written with"
        )
