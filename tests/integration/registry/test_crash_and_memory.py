"""A registry killed mid-upload restarts clean; moving a large artifact keeps the server's memory flat."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from aiaas.client.registry import READY, RegistryClient
from aiaas.registry.v1 import registry_pb2
from tests.integration.registry.conftest import BACKENDS, blob_dir, registry_env
from tests.support.processes import ServiceProcess, start_service

MiB = 1024 * 1024


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of a process from /proc (KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_kill_9_during_upload_leaves_no_half_version(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Crash mid-upload, restart on the same port: no half artifact, and a watcher misses nothing."""
    env = registry_env(backend, request)
    service = start_service("registry", tmp_path, env=env)
    # The watcher's channel outlives the crash; it redials quickly once the registry is back.
    watch_channel = grpc.aio.insecure_channel(service.address, options=[("grpc.max_reconnect_backoff_ms", 500)])
    seen: list[registry_pb2.Event] = []

    async def follow() -> None:
        watcher = RegistryClient(watch_channel)
        async for event in watcher.watch(0, ["crashy"], reconnect=True, retry_seconds=0.2):
            seen.append(event)

    watching = asyncio.ensure_future(follow())

    async def stop_watching() -> None:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await watching
        await watch_channel.close()

    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            client = RegistryClient(channel)
            version = (await client.create_version("crashy", required_artifacts=["big.bin"])).version
            sent = asyncio.Event()

            async def requests() -> AsyncIterator[registry_pb2.UploadArtifactRequest]:
                header = registry_pb2.UploadHeader(model_name="crashy", version=version, artifact_name="big.bin")
                yield registry_pb2.UploadArtifactRequest(header=header)
                for _ in range(3):
                    yield registry_pb2.UploadArtifactRequest(chunk=os.urandom(MiB))
                sent.set()
                await asyncio.sleep(60)

            call = client.stub.UploadArtifact(requests())
            await asyncio.wait_for(sent.wait(), 10)
            partial = blob_dir(service) / "tmp"
            for _ in range(100):
                if any(p.stat().st_size >= MiB for p in partial.glob("*.part")):
                    break
                await asyncio.sleep(0.05)
            assert list(partial.glob("*.part")), "expected a partial upload on disk before the crash"
            service.kill()
            with pytest.raises(grpc.aio.AioRpcError):
                await call

        restarted = start_service("registry", tmp_path, args=["--port", str(service.port)], env=env)
        try:
            assert list((blob_dir(restarted) / "tmp").glob("*.part")) == []
            async with grpc.aio.insecure_channel(restarted.address) as channel:
                client = RegistryClient(channel)
                after = await client.get_version(("crashy", version))
                assert after.status == registry_pb2.VERSION_STATUS_PENDING and list(after.artifacts) == []
                # The version is still usable: upload for real, then READY.
                await client.upload_bytes("crashy", version, "big.bin", b"complete")
                assert (await client.set_status(("crashy", version), READY)).status == READY
                assert [v.version for v in await client.list_versions("crashy")] == [version]
            for _ in range(300):
                if len(seen) >= 4:
                    break
                await asyncio.sleep(0.05)
            assert [(e.sequence, e.type) for e in seen] == [
                (1, registry_pb2.EVENT_TYPE_MODEL_CREATED),
                (2, registry_pb2.EVENT_TYPE_VERSION_CREATED),
                (3, registry_pb2.EVENT_TYPE_VERSION_UPDATED),
                (4, registry_pb2.EVENT_TYPE_VERSION_STATUS_CHANGED),
            ]
        finally:
            await stop_watching()  # an open watch stream would hold the graceful stop for its grace period
            restarted.terminate()
    finally:
        service.kill()
        await stop_watching()


async def test_moving_256_mib_keeps_registry_memory_flat(tmp_path: Path) -> None:
    """Upload then download 256 MiB: the registry's peak RSS grows by < 64 MiB (it streams)."""
    size = 256 * MiB
    source = tmp_path / "big.bin"
    block = os.urandom(MiB)
    with source.open("wb") as handle:
        for i in range(size // MiB):
            handle.write(block[:-8] + i.to_bytes(8, "little"))
    service: ServiceProcess = start_service("registry", tmp_path / "home", env={"OTEL_TRACES_EXPORTER": "none"})
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            client = RegistryClient(channel)
            warm = await client.create_version("warm")
            await client.upload_bytes("warm", warm.version, "w.bin", os.urandom(4 * MiB))
            await client.download_bytes(("warm", warm.version), "w.bin")
            baseline = rss_kib(service.process.pid)
            version = await client.push("big", {"big.bin": source})
            await client.download_to(("big", version.version), "big.bin", tmp_path / "copy.bin")
            peak = rss_kib(service.process.pid, "VmHWM")
        assert (tmp_path / "copy.bin").stat().st_size == size
        growth_mib = (peak - baseline) / 1024
        print(
            f"registry RSS baseline {baseline / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB, growth {growth_mib:.1f} MiB"
        )
        assert growth_mib < 64, f"registry RSS grew by {growth_mib:.1f} MiB moving 256 MiB"
    finally:
        service.terminate()
