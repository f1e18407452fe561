"""Typed client of the registry service: models, versions, aliases, verified artifact push/pull, watch.

``RegistryClient`` is asyncio-based over a ``grpc.aio`` channel (what the services use);
``SyncRegistryClient`` wraps it for scripts and the CLI. Uploads and downloads stream 1 MiB chunks and
never hold a whole file in memory; downloads are verified against the sha256 the registry records and
resume from a partial ``<path>.part`` file.

    async with grpc.aio.insecure_channel("127.0.0.1:50051") as channel:
        client = RegistryClient(channel)
        version = await client.push("digits-mlp", {"model.onnx": Path("model.onnx")}, format=ONNX)
        await client.set_alias("digits-mlp", "production", version.version, reason="better f1")
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc

from aiaas.client.channels import dial
from aiaas.client.refs import (
    CHUNK_SIZE,
    INLINE_BYTES,
    ArtifactCorrupted,
    Progress,
    RefLike,
    default_actor,
    hash_prefix,
    inline_artifact,
    sha256_of,
    version_ref,
)
from aiaas.client.registry_calls import RegistryCalls
from aiaas.registry.v1 import registry_pb2
from aiaas.wire import (
    ACTOR_METADATA,
    DATASET,
    FAILED,
    ONNX,
    PENDING,
    PYTORCH_CHECKPOINT,
    READY,
    REJECTED,
    UPLOAD_ACCEPTED_METADATA,
    ModelFormat,
    VersionStatus,
)

UPLOAD_ACCEPTED = UPLOAD_ACCEPTED_METADATA

__all__ = [
    "ACTOR_METADATA",
    "CHUNK_SIZE",
    "DATASET",
    "FAILED",
    "INLINE_BYTES",
    "ONNX",
    "PENDING",
    "PYTORCH_CHECKPOINT",
    "READY",
    "REJECTED",
    "UPLOAD_ACCEPTED",
    "ArtifactCorrupted",
    "ModelFormat",
    "Progress",
    "RefLike",
    "RegistryClient",
    "SyncRegistryClient",
    "VersionStatus",
    "default_actor",
    "inline_artifact",
    "sha256_of",
    "version_ref",
]


class RegistryClient(RegistryCalls):
    """Async client of ``aiaas.registry.v1.RegistryService`` over a ``grpc.aio`` channel."""

    # -- artifacts --------------------------------------------------------------------------------

    async def _upload(
        self,
        model_name: str,
        version: int,
        artifact_name: str,
        media_type: str,
        size: int,
        chunks: AsyncIterator[bytes],
        digest: Any,
    ) -> registry_pb2.UploadArtifactResponse:
        async def requests() -> AsyncIterator[registry_pb2.UploadArtifactRequest]:
            header = registry_pb2.UploadHeader(
                model_name=model_name,
                version=version,
                artifact_name=artifact_name,
                media_type=media_type,
                size_bytes=size,
            )
            yield registry_pb2.UploadArtifactRequest(header=header)
            async for chunk in chunks:
                yield registry_pb2.UploadArtifactRequest(chunk=chunk)
            yield registry_pb2.UploadArtifactRequest(sha256=digest.hexdigest())

        # No overall deadline: a large upload takes as long as it takes; errors end it.
        call = self.stub.UploadArtifact(metadata=self._metadata)
        try:
            stream = requests()
            await call.write(await anext(stream))
            # The registry sends its initial metadata once the header is accepted; a refused header ends
            # the call here, before any bytes race the refusal.
            accepted = any(key == UPLOAD_ACCEPTED for key, _ in (await call.initial_metadata() or ()))
            if accepted:
                async for request in stream:
                    await call.write(request)
                await call.done_writing()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            pass  # the server ended the call early (a refusal); awaiting it below raises its real status
        except Exception:
            call.cancel()
            raise
        response: registry_pb2.UploadArtifactResponse = await call
        return response

    async def upload_file(
        self,
        model_name: str,
        version: int,
        artifact_name: str,
        path: Path | str,
        media_type: str = "",
        progress: Progress | None = None,
    ) -> registry_pb2.UploadArtifactResponse:
        """Stream a file into a PENDING version's artifact; the registry verifies its sha256."""
        path = Path(path)
        size = path.stat().st_size
        digest = hashlib.sha256()

        async def chunks() -> AsyncIterator[bytes]:
            done = 0
            with path.open("rb") as handle:

                def read() -> bytes:
                    chunk = handle.read(CHUNK_SIZE)
                    digest.update(chunk)
                    return chunk

                # Read (and hash) the next chunk in a thread while the current one is sent.
                upcoming = asyncio.ensure_future(asyncio.to_thread(read))
                try:
                    while chunk := await upcoming:
                        upcoming = asyncio.ensure_future(asyncio.to_thread(read))
                        done += len(chunk)
                        yield chunk
                        if progress:
                            progress(done, size)
                finally:
                    if not upcoming.done():
                        await asyncio.wait([upcoming])

        return await self._upload(model_name, version, artifact_name, media_type, size, chunks(), digest)

    async def upload_bytes(
        self, model_name: str, version: int, artifact_name: str, data: bytes, media_type: str = ""
    ) -> registry_pb2.UploadArtifactResponse:
        """Upload an in-memory artifact."""
        digest = hashlib.sha256(data)

        async def chunks() -> AsyncIterator[bytes]:
            view = memoryview(data)
            for start in range(0, len(view), CHUNK_SIZE):
                yield bytes(view[start : start + CHUNK_SIZE])

        return await self._upload(model_name, version, artifact_name, media_type, len(data), chunks(), digest)

    async def download_chunks(
        self, ref: RefLike, artifact_name: str, offset: int = 0
    ) -> tuple[registry_pb2.ArtifactDescription, AsyncIterator[bytes]]:
        """The artifact's description and its raw chunks from ``offset`` (not verified: see download_to)."""
        request = registry_pb2.DownloadArtifactRequest(ref=version_ref(ref), artifact_name=artifact_name, offset=offset)
        call = self.stub.DownloadArtifact(request, metadata=self._metadata)
        first = await call.read()
        if first is grpc.aio.EOF or first.WhichOneof("part") != "description":
            raise ArtifactCorrupted("download did not start with a description")

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while (message := await call.read()) is not grpc.aio.EOF:
                    yield message.chunk
            finally:
                call.cancel()

        return first.description, chunks()

    async def download_to(
        self, ref: RefLike, artifact_name: str, path: Path | str, progress: Progress | None = None
    ) -> registry_pb2.Artifact:
        """Download an artifact to ``path``, verified; resumes from ``<path>.part`` after an interruption.

        The file appears at ``path`` only once its sha256 matches (written to ``.part``, then renamed).
        A ``.part`` that turns out not to belong to this artifact is discarded and the download restarts
        from byte 0 once; a second mismatch raises ArtifactCorrupted.
        """
        path = Path(path)
        partial = path.with_name(path.name + ".part")
        if partial.exists() and partial.stat().st_size:
            try:
                return await self._download_once(ref, artifact_name, path, partial, progress)
            except ArtifactCorrupted:
                pass  # the partial file was removed: start again from 0
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.INVALID_ARGUMENT or "offset" not in (exc.details() or ""):
                    raise
                partial.unlink(missing_ok=True)  # longer than the artifact: not ours
        return await self._download_once(ref, artifact_name, path, partial, progress)

    async def _download_once(
        self, ref: RefLike, artifact_name: str, path: Path, partial: Path, progress: Progress | None
    ) -> registry_pb2.Artifact:
        offset = partial.stat().st_size if partial.exists() else 0
        digest = hashlib.sha256()
        if offset:
            await asyncio.to_thread(hash_prefix, partial, offset, digest)
        description, chunks = await self.download_chunks(ref, artifact_name, offset)
        total, done = description.artifact.size_bytes, offset
        with partial.open("ab") as handle:

            def store(chunk: bytes) -> None:
                digest.update(chunk)
                handle.write(chunk)

            # Hash and write in a thread while the next chunk arrives (one write in flight).
            pending: asyncio.Future[None] | None = None
            try:
                async for chunk in chunks:
                    if pending is not None:
                        await pending
                    pending = asyncio.ensure_future(asyncio.to_thread(store, chunk))
                    done += len(chunk)
                    if progress:
                        progress(done, total)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.DATA_LOSS:  # the registry found its stored copy damaged
                    partial.unlink(missing_ok=True)
                    raise _rotten(artifact_name, description.artifact.sha256, exc) from exc
                raise
            finally:
                if pending is not None:
                    await asyncio.wait([pending])
            if pending is not None:
                await pending
        if digest.hexdigest() != description.artifact.sha256 or done != total:
            partial.unlink(missing_ok=True)
            raise ArtifactCorrupted(
                f"{artifact_name}: got {done} bytes hashing to {digest.hexdigest()}, expected {total} bytes"
                f" with sha256 {description.artifact.sha256}; the partial file was removed"
            )
        os.replace(partial, path)
        return description.artifact

    async def download_bytes(self, ref: RefLike, artifact_name: str) -> bytes:
        """An artifact's content in memory, verified (for small artifacts such as spec.json)."""
        description, chunks = await self.download_chunks(ref, artifact_name)
        buffer = bytearray()
        try:
            async for chunk in chunks:
                buffer += chunk
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.DATA_LOSS:
                raise _rotten(artifact_name, description.artifact.sha256, exc) from exc
            raise
        if hashlib.sha256(buffer).hexdigest() != description.artifact.sha256:
            raise ArtifactCorrupted(f"{artifact_name}: content does not match sha256 {description.artifact.sha256}")
        return bytes(buffer)

    async def push(
        self,
        model_name: str,
        files: Mapping[str, Path | str] | Iterable[Path | str],
        format: int = registry_pb2.MODEL_FORMAT_UNSPECIFIED,  # noqa: A002 - the proto's name
        ready: bool = True,
        progress: Callable[[str, int, int], None] | None = None,
        media_types: Mapping[str, str] | None = None,
        inline_bytes: int = INLINE_BYTES,
        **version_fields: Any,
    ) -> registry_pb2.ModelVersion:
        """Create a version with its files (artifact name -> path) and mark it READY.

        Files of ``inline_bytes`` or less in all go inside the CreateVersion call: one round trip, and
        the version is READY or absent. Bigger ones are streamed, one upload each; on an upload error
        the version is marked FAILED (with the reason) and the error re-raised.
        """
        pairs = files.items() if isinstance(files, Mapping) else ((Path(p).name, p) for p in files)
        named = {name: Path(path) for name, path in pairs}
        types = media_types or {}
        sizes = {name: path.stat().st_size for name, path in named.items()}
        if ready and sum(sizes.values()) <= inline_bytes:
            inline = [inline_artifact(name, path, types.get(name, "")) for name, path in named.items()]
            version = await self.create_version(
                model_name,
                format=format,
                required_artifacts=sorted(named),
                artifacts=inline,
                ready=True,
                **version_fields,
            )
            for name, size in sizes.items():
                if progress:
                    progress(name, size, size)
            return version
        version = await self.create_version(
            model_name, format=format, required_artifacts=sorted(named), **version_fields
        )
        try:
            for name, path in named.items():
                report = (lambda d, t, n=name: progress(n, d, t)) if progress else None
                await self.upload_file(model_name, version.version, name, path, types.get(name, ""), report)
        except BaseException as exc:
            await self.set_status((model_name, version.version), FAILED, f"upload failed: {type(exc).__name__}")
            raise
        if ready:
            return await self.set_status((model_name, version.version), READY)
        return await self.get_version((model_name, version.version))

    async def pull(
        self, ref: RefLike, folder: Path | str, progress: Callable[[str, int, int], None] | None = None
    ) -> registry_pb2.ModelVersion:
        """Download every artifact of a version into ``folder`` (verified, resumable)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        version = await self.get_version(ref)
        pinned = (version.model_name, version.version)  # an alias may move meanwhile: stay on this one
        for artifact in version.artifacts:
            report = (lambda d, t, n=artifact.name: progress(n, d, t)) if progress else None
            await self.download_to(pinned, artifact.name, folder / artifact.name, progress=report)
        return version


class SyncRegistryClient:
    """Blocking wrapper of ``RegistryClient`` for scripts and the CLI (owns its event loop and channel).

    Not for use inside a running event loop: there, use ``RegistryClient``.
    """

    def __init__(
        self,
        target: str,
        actor: str | None = None,
        timeout: float | None = 30.0,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._loop = asyncio.new_event_loop()
        # One replica or several (aiaas.client.channels): reads retried on UNAVAILABLE with jittered
        # backoff (writes never are), round_robin and health checking over several.
        target, options = dial(target)

        async def open_channel() -> grpc.aio.Channel:
            if credentials is not None:
                return grpc.aio.secure_channel(target, credentials, options=options)
            return grpc.aio.insecure_channel(target, options=options)

        self._channel = self._loop.run_until_complete(open_channel())
        self.client = RegistryClient(self._channel, actor=actor, timeout=timeout, metadata=metadata)

    def _run(self, coroutine: Any) -> Any:
        return self._loop.run_until_complete(coroutine)

    def close(self) -> None:
        """Close the channel and the loop."""
        if not self._loop.is_closed():
            self._run(self._channel.close())
            self._loop.close()

    def __enter__(self) -> SyncRegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        """Every RegistryClient coroutine method, run to completion (watch: see ``watch``)."""
        method = getattr(self.client, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._run(method(*args, **kwargs))

        call.__doc__ = method.__doc__
        return call

    def watch(
        self, after_sequence: int = 0, model_names: Sequence[str] = (), reconnect: bool = False
    ) -> Generator[Any, None, None]:
        """Events as a blocking iterator."""
        stream = self.client.watch(after_sequence, model_names, reconnect=reconnect)
        try:
            while True:
                try:
                    yield self._run(anext(stream))
                except StopAsyncIteration:
                    return
        finally:
            self._run(stream.aclose())


def _rotten(artifact_name: str, sha256: str, exc: grpc.aio.AioRpcError) -> ArtifactCorrupted:
    """DATA_LOSS from the registry (it checks its stored copy while serving it) as ArtifactCorrupted."""
    return ArtifactCorrupted(
        f"{artifact_name}: the registry's stored copy no longer hashes to the expected sha256 {sha256} "
        f"({exc.details()}); nothing was kept"
    )
