"""The local blob store and the async upload/download/GC/watch logic, without gRPC."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiaas_services.registry import db
from aiaas_services.registry.blobs import LocalBlobStore
from aiaas_services.registry.catalog import Registry
from aiaas_services.registry.domain import NewVersion
from aiaas_services.registry.store import RegistryStore
from aiaas_services.runtime.errors import DigestMismatch, InvalidArgument, Unavailable


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    engine = db.create_db_engine(db.sqlite_url(tmp_path / "r.db"))
    db.migrate(engine)
    return Registry(RegistryStore(engine), LocalBlobStore(tmp_path / "blobs"), threads=4, watch_poll_seconds=5)


async def parts(data: bytes, digest: str | None) -> AsyncIterator[bytes | str]:
    for start in range(0, len(data), 1000):
        yield data[start : start + 1000]
    if digest is not None:
        yield digest


def test_local_writer_commit_is_atomic_and_deduplicates(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    writer = store.writer()
    writer.write(b"hello ")
    writer.write(b"world")
    digest = hashlib.sha256(b"hello world").hexdigest()
    assert writer.hexdigest() == digest and not store.exists(digest)
    assert writer.commit() is False
    assert store.path_of(digest).read_bytes() == b"hello world"
    again = store.writer()
    again.write(b"hello world")
    assert again.commit() is True
    assert list(store.tmp_dir.iterdir()) == [] and list(store.digests()) == [digest]
    assert b"".join(store.read(digest, 6, 2)) == b"world"


def test_clean_temp_removes_partial_writes(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.writer().write(b"partial")  # never committed: what a crash leaves
    assert store.clean_temp() == 1 and list(store.tmp_dir.iterdir()) == []


async def test_upload_checks_digest_size_and_stream_end(registry: Registry) -> None:
    registry.store.create_version("m", NewVersion(), create_model=True)
    data = os.urandom(5500)
    with pytest.raises(DigestMismatch, match="mismatch"):
        await registry.upload("m", 1, "a.bin", "", 0, parts(data, "0" * 64))
    with pytest.raises(InvalidArgument, match="without its sha256"):
        await registry.upload("m", 1, "a.bin", "", 0, parts(data, None))
    with pytest.raises(InvalidArgument, match="size_bytes"):
        await registry.upload("m", 1, "a.bin", "", 10, parts(data, hashlib.sha256(data).hexdigest()))
    blobs = registry.blobs
    assert isinstance(blobs, LocalBlobStore) and list(blobs.tmp_dir.iterdir()) == []
    assert registry.store.get_version("m", 1).artifacts == []

    result = await registry.upload("m", 1, "a.bin", "", len(data), parts(data, hashlib.sha256(data).hexdigest()))
    assert result.artifact.size_bytes == len(data) and not result.deduplicated
    _artifact, number, chunks = await registry.download("m", 1, "", "a.bin", offset=100, chunk_size=999)
    assert number == 1 and b"".join([c async for c in chunks]) == data[100:]


async def test_download_detects_corruption_on_disk(registry: Registry) -> None:
    registry.verify_reads = True
    registry.store.create_version("m", NewVersion(), create_model=True)
    data = b"x" * 3000
    result = await registry.upload("m", 1, "a.bin", "", 0, parts(data, hashlib.sha256(data).hexdigest()))
    blobs = registry.blobs
    assert isinstance(blobs, LocalBlobStore)
    blobs.path_of(result.artifact.sha256).write_bytes(b"y" * 3000)  # bit rot
    _, _, chunks = await registry.download("m", 1, "", "a.bin")
    with pytest.raises(DigestMismatch):
        async for _ in chunks:
            pass


async def test_gc_removes_unreferenced_and_stray_blobs(registry: Registry) -> None:
    registry.store.create_version("m", NewVersion(), create_model=True)
    data = b"z" * 2000
    await registry.upload("m", 1, "a.bin", "", 0, parts(data, hashlib.sha256(data).hexdigest()))
    stray = registry.blobs.writer()
    stray.write(b"orphan")  # renamed into place, then the process died before recording it
    stray.commit()
    report = await registry.collect_garbage()
    assert (report.blobs_deleted, report.bytes_freed) == (1, len(b"orphan"))
    await registry.mutate(registry.store.delete_model, "m")
    report = await registry.collect_garbage()
    assert (report.blobs_deleted, report.bytes_freed) == (1, 2000)
    assert list(registry.blobs.digests()) == []


async def test_watch_wakes_on_commit_without_polling(registry: Registry) -> None:
    await registry.mutate(registry.store.create_model, "first")
    stream = registry.watch(0)
    assert (await asyncio.wait_for(anext(stream), 2)).model_name == "first"
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.1)  # parked on the notifier (the poll interval is 5 s)
    started = asyncio.get_running_loop().time()
    await registry.mutate(registry.store.create_model, "live")
    event = await asyncio.wait_for(waiting, 2)
    assert event.model_name == "live"
    assert asyncio.get_running_loop().time() - started < 1.0  # poll interval is 5 s: this was a push
    await stream.aclose()


async def test_drain_ends_watchers_with_unavailable(registry: Registry) -> None:
    stream = registry.watch(0)
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.1)
    await registry.drain()
    with pytest.raises(Unavailable, match="after_sequence=0"):
        await asyncio.wait_for(waiting, 2)
