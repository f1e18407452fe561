"""Registry processes with blobs encrypted at rest: local folder and S3 (moto), key rotation, restarts, wrong keys."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import grpc
import pytest

from aiaas.client.registry import READY, RegistryClient
from aiaas_services.registry.encryption import HEADER_BYTES
from aiaas_services.registry.sealing import SEGMENT_BYTES, TAG_BYTES
from tests.support.processes import ServiceProcess, start_service

MiB = 1024 * 1024
MARKER = b"plaintext-marker:digits-mlp-weights;"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def content_of(size: int) -> bytes:
    """Recognisable bytes: a repeated marker with random filler, so any leak of plaintext is findable."""
    body = (MARKER + os.urandom(28)) * (size // (len(MARKER) + 28) + 1)
    return body[:size]


def start(home: Path, key_file: Path, env: dict[str, str] | None = None) -> ServiceProcess:
    settings = {"AIAAS_REGISTRY_ENCRYPTION_KEY_FILE": str(key_file), "OTEL_TRACES_EXPORTER": "none", **(env or {})}
    return start_service("registry", home, env=settings)


def rotate(home: Path, key_file: Path, env: dict[str, str] | None = None) -> str:
    """``aiaas-registry rotate-keys`` as an operator runs it, with the registry's settings."""
    full_env = {
        **os.environ,
        "AIAAS_HOME": str(home),
        "AIAAS_REGISTRY_ENCRYPTION_KEY_FILE": str(key_file),
        **(env or {}),
    }
    return registry_command("rotate-keys", full_env)


def registry_command(command: str, env: dict[str, str] | None = None) -> str:
    """``aiaas-registry <command>``'s output (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "-m", "aiaas_services.registry", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def stored_files(home: Path) -> list[Path]:
    return sorted(p for p in (home / "registry" / "blobs" / "sha256").glob("*/*") if p.is_file())


async def push_and_check(address: str, content: bytes, model: str) -> tuple[int, str]:
    async with grpc.aio.insecure_channel(address) as channel:
        client = RegistryClient(channel)
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"enc-{os.getpid()}-{model}.bin"
        path.write_bytes(content)
        try:
            version = await client.push(model, {"weights.bin": path}, inline_bytes=0)
        finally:
            path.unlink()
        assert version.status == READY
        return version.version, version.artifacts[0].sha256


async def fetch(address: str, model: str, version: int, offset: int = 0) -> bytes:
    async with grpc.aio.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 * MiB)]) as channel:
        client = RegistryClient(channel)
        if offset == 0:
            return await client.download_bytes((model, version), "weights.bin")
        _, chunks = await client.download_chunks((model, version), "weights.bin", offset=offset)
        return b"".join([chunk async for chunk in chunks])


async def test_local_blobs_are_ciphertext_and_survive_rotation_and_restart(tmp_path: Path) -> None:
    home, keys = tmp_path / "home", tmp_path / "registry.keys"
    old, new = new_key(), new_key()
    keys.write_text(old + "\n")
    content = content_of(2 * SEGMENT_BYTES + 12345)
    digest = hashlib.sha256(content).hexdigest()

    service = start(home, keys)
    try:
        version, stored_digest = await push_and_check(service.address, content, "enc-local")
        assert stored_digest == digest  # the address is the plaintext's
        (blob,) = stored_files(home)
        assert blob.name == digest
        ciphertext = blob.read_bytes()
        assert MARKER not in ciphertext and MARKER[:12] not in ciphertext
        assert hashlib.sha256(ciphertext).hexdigest() != digest
        assert await fetch(service.address, "enc-local", version) == content
        resume_at = SEGMENT_BYTES + 3
        assert await fetch(service.address, "enc-local", version, resume_at) == content[resume_at:]
    finally:
        service.terminate()

    keys.write_text(f"{new}\n{old}\n")  # new key first; the old one still unwraps during the rotation
    assert "1 re-wrapped" in rotate(home, keys)
    assert blob.read_bytes() == ciphertext  # the blob was not rewritten

    keys.write_text(new + "\n")  # the old key is gone for good
    service = start(home, keys)
    try:
        assert await fetch(service.address, "enc-local", version) == content
        # Same bytes again: deduplicated against the encrypted blob, still one file.
        again, _ = await push_and_check(service.address, content, "enc-local-2")
        assert await fetch(service.address, "enc-local-2", again, 7) == content[7:]
        assert len(stored_files(home)) == 1
    finally:
        service.terminate()

    keys.write_text(old + "\n")  # a wrong key: refused, nothing served, nothing lost
    service = start(home, keys)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await fetch(service.address, "enc-local", version)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "keyring does not hold" in (refused.value.details() or "")
    finally:
        service.terminate()
    assert blob.read_bytes() == ciphertext

    # No key at all: the registry will not start (it would otherwise serve ciphertext).
    with pytest.raises(RuntimeError, match="holds encrypted blobs but no encryption key is configured"):
        start_service("registry", home, env={"OTEL_TRACES_EXPORTER": "none"})


async def test_a_segment_altered_mid_stream_ends_the_download_with_data_loss(tmp_path: Path) -> None:
    home, keys = tmp_path / "home", tmp_path / "registry.keys"
    keys.write_text(new_key())
    content = content_of(6 * SEGMENT_BYTES + 99)
    service = start(home, keys)
    try:
        version, _ = await push_and_check(service.address, content, "enc-rot")
        (blob,) = stored_files(home)
        stored = bytearray(blob.read_bytes())
        stored[HEADER_BYTES + 3 * (SEGMENT_BYTES + TAG_BYTES) + 1000] ^= 0x01  # inside the fourth segment
        blob.write_bytes(bytes(stored))
        for offset in (0, SEGMENT_BYTES + 7):  # a full download and a resumed one
            received = bytearray()
            async with grpc.aio.insecure_channel(service.address) as channel:
                client = RegistryClient(channel)
                _, chunks = await client.download_chunks(("enc-rot", version), "weights.bin", offset=offset)
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    async for chunk in chunks:
                        received += chunk
            assert failed.value.code() == grpc.StatusCode.DATA_LOSS
            assert "segment 3" in (failed.value.details() or "")
            # What came before the altered segment was authenticated; nothing from it or after it came out.
            assert bytes(received) == content[offset : 3 * SEGMENT_BYTES]
    finally:
        service.terminate()


def test_generate_key_prints_a_usable_key(tmp_path: Path) -> None:
    out = registry_command("generate-key").strip()
    assert len(base64.b64decode(out, validate=True)) == 32


def test_unreadable_key_file_stops_the_start_with_a_clear_message(tmp_path: Path) -> None:
    keys = tmp_path / "bad.keys"
    keys.write_text("# no keys yet\n")
    with pytest.raises(RuntimeError, match="holds no keys"):
        start(tmp_path / "home", keys)


def keys_under(s3: Any, prefix: str) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket="sealed", Prefix=prefix).get("Contents", [])]


async def test_s3_blobs_are_ciphertext_and_survive_rotation(s3_endpoint: str, tmp_path: Path) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **_boto_credentials())
    s3.create_bucket(Bucket="sealed")
    env = {
        **CREDENTIALS,
        "AIAAS_REGISTRY_BLOB_STORE": "s3://sealed/registry",
        "AIAAS_REGISTRY_S3_ENDPOINT_URL": s3_endpoint,
        "AIAAS_REGISTRY_S3_PART_SIZE": str(5 * MiB),
    }
    home, keys = tmp_path / "home", tmp_path / "registry.keys"
    old, new = new_key(), new_key()
    keys.write_text(old)
    content = content_of(6 * MiB + 5)  # a multipart upload of two parts
    digest = hashlib.sha256(content).hexdigest()

    service = start(home, keys, env)
    try:
        version, _ = await push_and_check(service.address, content, "enc-s3")
        blob_key = f"registry/sha256/{digest[:2]}/{digest}"
        assert keys_under(s3, "registry/sha256/") == [blob_key]
        (envelope_key,) = keys_under(s3, "registry/keys/")
        ciphertext = s3.get_object(Bucket="sealed", Key=blob_key)["Body"].read()
        assert MARKER not in ciphertext and len(ciphertext) > len(content)
        envelope = s3.get_object(Bucket="sealed", Key=envelope_key)["Body"].read()
        assert base64.b64decode(old) not in envelope and old.encode() not in envelope
    finally:
        service.terminate()

    keys.write_text(f"{new}\n{old}\n")
    assert "1 re-wrapped" in rotate(home, keys, env)
    assert s3.get_object(Bucket="sealed", Key=blob_key)["Body"].read() == ciphertext

    keys.write_text(new)
    service = start(home, keys, env)
    try:
        assert await fetch(service.address, "enc-s3", version) == content
        assert await fetch(service.address, "enc-s3", version, 5 * MiB + 1) == content[5 * MiB + 1 :]
        async with grpc.aio.insecure_channel(service.address) as channel:
            client = RegistryClient(channel)
            await client.delete_model("enc-s3")
            assert (await client.collect_garbage()).blobs_deleted == 1
        assert keys_under(s3, "registry/sha256/") == [] and keys_under(s3, "registry/keys/") == []
    finally:
        service.terminate()


def _boto_credentials() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
