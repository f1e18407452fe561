"""The registry with its blobs in an S3-compatible bucket: moto's server on loopback, not a real bucket."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import grpc
import pytest

from aiaas.client.registry import READY, RegistryClient
from aiaas.registry.v1 import registry_pb2
from tests.support.processes import ServiceProcess, serve

MiB = 1024 * 1024
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def bucket(s3_endpoint: str) -> Any:
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket="models")
    return s3


@pytest.fixture(scope="module")
def s3_registry(s3_endpoint: str, bucket: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    env = {
        **CREDENTIALS,
        "AIAAS_REGISTRY_BLOB_STORE": "s3://models/registry",
        "AIAAS_REGISTRY_S3_ENDPOINT_URL": s3_endpoint,
        "AIAAS_REGISTRY_S3_PART_SIZE": str(5 * MiB),
        "OTEL_TRACES_EXPORTER": "none",
    }
    yield from serve("registry", tmp_path_factory.mktemp("registry-s3"), env=env)


def keys(s3: Any, prefix: str) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket="models", Prefix=prefix).get("Contents", [])]


async def test_multipart_upload_download_dedup_and_gc(s3_registry: ServiceProcess, bucket: Any, tmp_path: Path) -> None:
    content = os.urandom(12 * MiB + 5)  # three parts of 5 MiB, the last one short
    digest = hashlib.sha256(content).hexdigest()
    source = tmp_path / "weights.bin"
    source.write_bytes(content)
    async with grpc.aio.insecure_channel(s3_registry.address) as channel:
        client = RegistryClient(channel)
        version = await client.push("s3-model", {"weights.bin": source})
        assert version.status == READY and version.artifacts[0].sha256 == digest
        assert keys(bucket, "registry/sha256/") == [f"registry/sha256/{digest[:2]}/{digest}"]
        assert keys(bucket, "registry/tmp/") == []
        assert bucket.list_multipart_uploads(Bucket="models").get("Uploads", []) == []

        await client.download_to(("s3-model", version.version), "weights.bin", tmp_path / "copy.bin")
        assert (tmp_path / "copy.bin").read_bytes() == content
        _, chunks = await client.download_chunks(("s3-model", version.version), "weights.bin", offset=7 * MiB)
        assert b"".join([c async for c in chunks]) == content[7 * MiB :]

        again = await client.create_version("s3-other")
        assert (await client.upload_file("s3-other", again.version, "w.bin", source)).deduplicated

        # A wrong digest leaves no object and no open multipart upload behind.
        async def wrong():  # type: ignore[no-untyped-def]
            header = registry_pb2.UploadHeader(model_name="s3-other", version=again.version, artifact_name="x.bin")
            yield registry_pb2.UploadArtifactRequest(header=header)
            yield registry_pb2.UploadArtifactRequest(chunk=os.urandom(6 * MiB))
            yield registry_pb2.UploadArtifactRequest(sha256="0" * 64)

        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await client.stub.UploadArtifact(wrong())
        assert failure.value.code() == grpc.StatusCode.DATA_LOSS
        assert bucket.list_multipart_uploads(Bucket="models").get("Uploads", []) == []
        assert len(keys(bucket, "registry/sha256/")) == 1

        small = await client.upload_bytes("s3-other", again.version, "small.bin", b"only here")
        await client.delete_model("s3-other")
        report = await client.collect_garbage()
        assert report.blobs_deleted == 1 and report.bytes_freed == len(b"only here")
        small_key = f"registry/sha256/{small.artifact.sha256[:2]}/{small.artifact.sha256}"
        assert small_key not in keys(bucket, "registry/sha256/")
        assert await client.download_bytes(("s3-model", version.version), "weights.bin") == content
