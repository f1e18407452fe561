"""The registry under damaged storage and retried writes: rotten blobs are not served as good, a failed
disk write stores nothing and says why, and a retried write with the same request_id is done once."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import grpc
import pytest

from aiaas.client.registry import SyncRegistryClient
from aiaas.common.v1 import common_pb2
from aiaas.registry.v1 import registry_pb2 as r
from aiaas.registry.v1 import registry_pb2_grpc as rg
from tests.integration.robustness.conftest import assert_clean_details
from tests.support.processes import start_service

MiB = 1024 * 1024


def _download(stub: rg.RegistryServiceStub, name: str, version: int, offset: int) -> bytes:
    request = r.DownloadArtifactRequest(
        ref=common_pb2.VersionRef(model_name=name, version=version), artifact_name="blob.bin", offset=offset
    )
    return b"".join(m.chunk for m in stub.DownloadArtifact(request, timeout=30) if m.WhichOneof("part") == "chunk")


def test_a_flipped_byte_is_never_served_as_good(tmp_path: Path) -> None:
    registry = start_service("registry", tmp_path / "registry")  # default settings: verified reads
    try:
        data = os.urandom(3 * MiB + 17)
        client = SyncRegistryClient(registry.address, actor="rot-test")
        version = client.create_version("rotten").version
        client.upload_bytes("rotten", version, "blob.bin", data)
        digest = hashlib.sha256(data).hexdigest()
        with grpc.insecure_channel(registry.address) as channel:
            stub = rg.RegistryServiceStub(channel)
            assert _download(stub, "rotten", version, 0) == data
            blob = registry.home / "registry" / "blobs" / "sha256" / digest[:2] / digest
            rotten = bytearray(blob.read_bytes())
            rotten[2 * MiB] ^= 0x01
            blob.write_bytes(bytes(rotten))
            for offset in (0, 1000, 2 * MiB + 5):  # a full download, a resumed one, one past the flipped byte
                with pytest.raises(grpc.RpcError) as info:
                    _download(stub, "rotten", version, offset)
                assert info.value.code() == grpc.StatusCode.DATA_LOSS, (offset, info.value.details())
                assert digest in (info.value.details() or "")
                assert_clean_details(info.value.details(), registry.home)
    finally:
        registry.terminate()


def test_retried_create_version_with_the_same_request_id_creates_one_version(tmp_path: Path) -> None:
    registry = start_service("registry", tmp_path / "registry")
    try:
        content = os.urandom(8 * MiB)  # slow enough to commit after a 20 ms client deadline
        request = r.CreateVersionRequest(
            model_name="retried",
            create_model=True,
            request_id="create-retried-1",
            artifacts=[r.InlineArtifact(name="w.bin", content=content, sha256=hashlib.sha256(content).hexdigest())],
        )
        with grpc.insecure_channel(registry.address, options=[("grpc.max_send_message_length", 64 * MiB)]) as ch:
            stub = rg.RegistryServiceStub(ch)
            with pytest.raises(grpc.RpcError) as info:
                stub.CreateVersion(request, timeout=0.02)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            first = None
            until = time.monotonic() + 90  # the first call's 8 MiB commit (fsync) can take seconds on a busy disk
            while first is None and time.monotonic() < until:  # a client's retries; ABORTED while it runs
                try:
                    first = stub.CreateVersion(request, timeout=30).version
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.ABORTED, (exc.code(), exc.details())
                    time.sleep(0.1)
            assert first is not None
            again = stub.CreateVersion(request, timeout=30).version
            listed = stub.ListVersions(r.ListVersionsRequest(model_name="retried"), timeout=30).versions
        assert [v.version for v in listed] == [first.version] == [again.version]
        assert again.created_at == first.created_at
    finally:
        registry.terminate()


@pytest.mark.parametrize(
    ("step", "code_name", "expected"),
    [
        ("write", "ENOSPC", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("fsync", "EIO", grpc.StatusCode.UNAVAILABLE),
        ("commit", "ENOSPC", grpc.StatusCode.RESOURCE_EXHAUSTED),
    ],
)
def test_disk_faults_store_nothing_and_say_why(
    tmp_path: Path, step: str, code_name: str, expected: grpc.StatusCode
) -> None:
    """ENOSPC/EIO injected at our blob-store seam (tests/support/faulty_registry.py), not in the kernel."""
    flag = tmp_path / "fault-on"
    env = {"AIAAS_FAULT": step, "AIAAS_FAULT_ERRNO": code_name, "AIAAS_FAULT_FLAG": str(flag)}
    registry = start_service("registry", tmp_path / "registry", env=env, module="tests.support.faulty_registry")
    try:
        client = SyncRegistryClient(registry.address, actor="disk-test")
        version = client.create_version("disk").version
        data = os.urandom(MiB + 3)
        flag.touch()
        with pytest.raises(grpc.RpcError) as info:
            client.upload_bytes("disk", version, "blob.bin", data)
        assert info.value.code() == expected, (info.value.code(), info.value.details())
        assert "nothing was stored" in (info.value.details() or "")
        assert_clean_details(info.value.details(), registry.home)
        small = tmp_path / "w.bin"
        small.write_bytes(data[:4096])  # small enough to go inline in CreateVersion
        with pytest.raises(grpc.RpcError) as inline:
            client.push("disk-inline", {"w.bin": small})
        assert inline.value.code() == expected, (inline.value.code(), inline.value.details())
        blobs = registry.home / "registry" / "blobs"
        assert not list((blobs / "tmp").iterdir()), "a partial blob was left behind"
        assert not client.get_version(("disk", version)).artifacts
        flag.unlink()  # the disk recovers: the same upload now works
        client.upload_bytes("disk", version, "blob.bin", data)
        assert client.download_bytes(("disk", version), "blob.bin") == data
    finally:
        registry.terminate()


def test_a_retried_set_alias_returns_the_first_move_and_moves_nothing(tmp_path: Path) -> None:
    registry = start_service("registry", tmp_path / "registry")
    try:
        with SyncRegistryClient(registry.address, actor="alias-test") as client:
            files = {"w.bin": tmp_path / "w.bin"}
            files["w.bin"].write_bytes(b"weights")
            one = client.push("aliased", files).version
            files["w.bin"].write_bytes(b"weights 2")
            two = client.push("aliased", files).version
            first = client.set_alias("aliased", "production", one, request_id="deploy-1")
            client.set_alias("aliased", "production", two)  # someone deploys in between
            retried = client.set_alias("aliased", "production", one, request_id="deploy-1")
            assert retried == first
            assert client.get_version(("aliased", "production")).version == two, "the retry moved the alias"
            assert len(client.alias_history("aliased", "production")) == 2
    finally:
        registry.terminate()
