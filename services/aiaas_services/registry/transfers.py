"""Registry operations that move artifact bytes: inline and streamed uploads, downloads, garbage collection."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence

from aiaas_services.registry.blobs import BlobWriter
from aiaas_services.registry.core import GarbageReport, RegistryCore, UploadResult
from aiaas_services.registry.domain import Artifact, InlineArtifact, NewVersion, Version, check_complete
from aiaas_services.registry.pipeline import read_ahead
from aiaas_services.runtime.errors import (
    DigestMismatch,
    DomainError,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from aiaas_services.runtime.names import check_name

logger = logging.getLogger(__name__)

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK_SIZE = 1024 * 1024
MAX_CHUNK_SIZE = 4 * 1024 * 1024


def storage_error(exc: OSError) -> DomainError:
    """A blob-store write that failed (disk full, I/O error) as a status the client can act on."""
    logger.error("blob store write failed: %s", exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ResourceExhausted("the registry's blob store is out of space; nothing was stored. Retry later")
    return Unavailable("the registry could not write to its blob store (I/O error); nothing was stored. Retry later")


class ArtifactTransfers(RegistryCore):
    """The operations that write or read blobs (the blob lock keeps GC away from an upload's new blob)."""

    # -- versions ---------------------------------------------------------------------------------

    async def create_version(
        self,
        model_name: str,
        spec: NewVersion,
        create_model: bool = False,
        actor: str = "",
        inline: Sequence[InlineArtifact] = (),
        ready: bool = False,
    ) -> Version:
        """Create a version, with its small artifacts in the same call when ``inline`` has them.

        Their bytes are hashed and checked first, stored as blobs, and then recorded by the transaction
        that creates the version (and with ``ready`` makes it READY): one round trip instead of one
        upload stream each plus two calls, and no PENDING version for a crash to leave behind.
        """
        if not inline:
            return await self.mutate(self.store.create_version, model_name, spec, create_model, actor, (), ready)
        names = [check_name(item.name, "artifact name") for item in inline]
        if ready:  # refuse before writing anything
            check_complete(f"the new version of {model_name}", spec.required_artifacts, names)
        for item in inline:
            if self.max_artifact_bytes and len(item.content) > self.max_artifact_bytes:
                raise ResourceExhausted(
                    f"artifact {item.name!r} has {len(item.content)} bytes, over this registry's limit of "
                    f"{self.max_artifact_bytes} bytes"
                )
            if item.sha256 and not SHA256_RE.match(item.sha256):
                raise InvalidArgument(f"sha256 of {item.name!r} must be 64 lowercase hex characters")
        # Shielded: a caller that goes away must not stop the blob and database steps half-way (their
        # threads would run on while the cleanup below ran beside them).
        try:
            return await asyncio.shield(self._create_with_blobs(model_name, spec, create_model, actor, inline, ready))
        except OSError as exc:
            raise storage_error(exc) from exc

    async def _create_with_blobs(
        self,
        model_name: str,
        spec: NewVersion,
        create_model: bool,
        actor: str,
        inline: Sequence[InlineArtifact],
        ready: bool,
    ) -> Version:
        staged = await self.run(self._stage, inline)
        artifacts = [artifact for _, artifact in staged]
        try:
            async with self._blob_lock:
                fresh = await self.run(lambda: [a.sha256 for writer, a in staged if not writer.commit()])
                try:
                    return await self.mutate(
                        self.store.create_version, model_name, spec, create_model, actor, artifacts, ready
                    )
                except DomainError:
                    # Refused, so rolled back: the blobs this call added are referenced by nothing, and
                    # no one else can have found them while the lock is held.
                    for digest in fresh:
                        await self.run(self.blobs.delete, digest)
                    raise
        finally:
            for writer, _ in staged:
                writer.abort()  # a no-op for committed blobs

    def _stage(self, inline: Sequence[InlineArtifact]) -> list[tuple[BlobWriter, Artifact]]:
        """Write each inline artifact to a temporary blob, checking its declared digest."""
        writers: list[BlobWriter] = []
        artifacts: list[Artifact] = []
        try:
            for item in inline:
                writer = self.blobs.writer()
                writers.append(writer)
                writer.write(item.content)
                actual = writer.hexdigest()
                if item.sha256 and actual != item.sha256:
                    raise DigestMismatch(
                        f"sha256 mismatch for {item.name!r}: client declared {item.sha256}, its bytes hash to "
                        f"{actual}; nothing was stored"
                    )
                media_type = item.media_type or "application/octet-stream"
                artifacts.append(Artifact(item.name, actual, writer.size, media_type))
        except BaseException:
            for writer in writers:
                writer.abort()
            raise
        return list(zip(writers, artifacts, strict=True))

    # -- artifacts --------------------------------------------------------------------------------

    async def upload(
        self,
        model_name: str,
        version: int,
        artifact_name: str,
        media_type: str,
        declared_size: int,
        parts: AsyncIterator[bytes | str],
        actor: str = "",
        accepted: Callable[[], Awaitable[None]] | None = None,
    ) -> UploadResult:
        """Store a streamed artifact: ``parts`` yields byte chunks, then the sha256 hex string last.

        Nothing becomes visible unless the whole stream arrived and hashes to the declared digest.
        """
        if declared_size < 0:
            raise InvalidArgument("size_bytes must be >= 0")
        limit = self.max_artifact_bytes
        if limit and declared_size > limit:
            raise ResourceExhausted(f"size_bytes={declared_size} is over this registry's limit of {limit} bytes")
        await self.run(self.store.check_uploadable, model_name, version, artifact_name)
        if accepted is not None:
            # Tell the client its header passed before it streams the bytes: a refusal then reaches it
            # as a clean status instead of racing its writes.
            await accepted()
        writer = await self.run(self.blobs.writer)
        # One write in flight while the next chunk arrives: the network and the disk overlap, and at most
        # two chunks are held in memory.
        pending: concurrent.futures.Future[None] | None = None
        try:
            expected = ""
            received = 0
            async for part in parts:
                if expected:
                    raise InvalidArgument("nothing may follow the sha256 message of an upload")
                if isinstance(part, str):
                    expected = part or "<empty>"
                    continue
                received += len(part)
                if declared_size and received > declared_size:
                    raise InvalidArgument(f"received more than the declared size_bytes={declared_size}")
                if limit and received > limit:
                    raise ResourceExhausted(f"the upload passed this registry's limit of {limit} bytes")
                if pending is not None:
                    await asyncio.wrap_future(pending)
                pending = self.executor.submit(writer.write, part)
            if pending is not None:
                await asyncio.wrap_future(pending)
            if not expected:
                raise InvalidArgument("the upload ended without its sha256 message; nothing was stored")
            if not SHA256_RE.match(expected):
                raise InvalidArgument(f"sha256 must be 64 lowercase hex characters, got {expected[:80]!r}")
            if declared_size and writer.size != declared_size:
                raise InvalidArgument(f"received {writer.size} bytes but size_bytes declared {declared_size}")
            actual = writer.hexdigest()
            if actual != expected:
                raise DigestMismatch(
                    f"sha256 mismatch for {artifact_name!r}: client declared {expected}, received bytes hash to"
                    f" {actual}; nothing was stored, upload again"
                )
            artifact = Artifact(artifact_name, actual, writer.size, media_type or "application/octet-stream")
            async with self._blob_lock:
                deduplicated = await self.run(writer.commit)
                await self.mutate(self.store.add_artifact, model_name, version, artifact, actor)
            return UploadResult(artifact, deduplicated)
        except BaseException as exc:
            # Synchronous on purpose: must run even while this task is being cancelled.
            if pending is not None:
                concurrent.futures.wait([pending])
            writer.abort()
            if isinstance(exc, OSError):
                raise storage_error(exc) from exc
            raise

    async def download(
        self, model_name: str, number: int, alias: str, artifact_name: str, offset: int = 0, chunk_size: int = 0
    ) -> tuple[Artifact, int, AsyncIterator[bytes]]:
        """An artifact's description, the resolved version number and its bytes from ``offset`` on.

        With ``verify_reads`` (the default) the whole stored blob is hashed as it is read, from 0 even when
        ``offset`` > 0, and the stream ends with DATA_LOSS if it no longer matches its digest. Clients
        verify every full download in any case; a client that reads only a range must wait for the
        stream's OK status before trusting the bytes.
        """
        check_name(artifact_name, "artifact name")
        if chunk_size < 0:
            raise InvalidArgument("chunk_size must be >= 0")
        size = min(chunk_size or CHUNK_SIZE, MAX_CHUNK_SIZE)
        artifact, resolved = await self.run(self.store.find_artifact, model_name, number, alias, artifact_name)
        if offset < 0 or offset > artifact.size_bytes:
            raise InvalidArgument(f"offset {offset} is outside the artifact (0..{artifact.size_bytes})")
        return artifact, resolved, self._chunks(artifact, offset, size)

    async def _chunks(self, artifact: Artifact, offset: int, chunk_size: int) -> AsyncIterator[bytes]:
        if offset == artifact.size_bytes:
            return
        # With verify_reads the whole blob is hashed as it is read, also for a download that starts at an
        # offset (a resumed one): the prefix is read and hashed but not sent, so DATA_LOSS at the end of the
        # stream covers every byte of the blob, not only those sent.
        verify = self.verify_reads
        digest = hashlib.sha256()
        position = 0 if verify else offset
        reader: Iterator[bytes] = await self.run(self.blobs.read, artifact.sha256, position, chunk_size)
        # Three steps overlap: the pipeline reads (and opens, when encrypted) chunk n+2, a registry thread
        # hashes chunk n+1, the event loop sends chunk n.
        pieces = read_ahead(reader)

        def next_chunk() -> bytes | None:
            nonlocal position
            while (chunk := next(pieces, None)) is not None:
                if verify:
                    digest.update(chunk)
                begin, position = position, position + len(chunk)
                if position <= offset:
                    continue  # before the requested offset: hashed only
                return chunk[offset - begin :] if begin < offset else chunk
            return None

        # Read the next chunk while the current one is being sent.
        upcoming = self.executor.submit(next_chunk)
        try:
            while (chunk := await asyncio.wrap_future(upcoming)) is not None:
                upcoming = self.executor.submit(next_chunk)
                yield chunk
        finally:
            concurrent.futures.wait([upcoming])
            pieces.close()  # waits for the read in flight
            close = getattr(reader, "close", None)
            if close is not None:
                close()  # synchronous: also runs when the client went away and this task is cancelled
        if verify and (digest.hexdigest() != artifact.sha256 or position != artifact.size_bytes):
            logger.error("stored blob %s does not match its digest", artifact.sha256)
            raise DigestMismatch(
                f"stored bytes of {artifact.name!r} do not match sha256 {artifact.sha256}; do not use what was "
                "received (the stored copy is damaged)"
            )

    async def collect_garbage(self, dry_run: bool = False) -> GarbageReport:
        """Delete blobs no artifact references: recorded ones, and stray files a crash left unrecorded."""
        async with self._blob_lock:
            candidates = dict(await self.run(self.store.unreferenced_blobs))
            recorded = await self.run(self.store.all_blob_digests)
            stored = await self.run(lambda: list(self.blobs.digests()))
            strays = [d for d in stored if d not in recorded]
            if dry_run:
                sizes = sum(candidates.values()) + sum(await self.run(self._sizes, strays))
                return GarbageReport(len(candidates) + len(strays), sizes)
            gone = await self.run(self.store.forget_blobs, list(candidates))
            freed = sum(candidates[d] for d in gone) + sum(await self.run(self._sizes, strays))
            for digest in [*gone, *strays]:
                await self.run(self.blobs.delete, digest)
            if gone or strays:
                logger.info("GC removed %d blobs (%d bytes)", len(gone) + len(strays), freed)
            return GarbageReport(len(gone) + len(strays), freed)

    def _sizes(self, digests: Sequence[str]) -> list[int]:
        sizes = []
        for digest in digests:
            path_of = getattr(self.blobs, "path_of", None)
            try:
                sizes.append(path_of(digest).stat().st_size if path_of else 0)
            except OSError:
                sizes.append(0)
        return sizes
