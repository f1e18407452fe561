"""The registry over gRPC on SQLite and PostgreSQL: models, versions, artifacts, aliases, watch, GC."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import random
from pathlib import Path

import grpc
import pytest

from aiaas.client.registry import (
    FAILED,
    ONNX,
    PENDING,
    READY,
    REJECTED,
    ArtifactCorrupted,
    RegistryClient,
    inline_artifact,
    version_ref,
)
from aiaas.registry.v1 import registry_pb2
from tests.integration.registry.conftest import blob_dir
from tests.support.processes import ServiceProcess


async def ready_version(client: RegistryClient, model: str, content: bytes | None = None) -> int:
    """Create a version with one artifact and make it READY; returns its number."""
    version = await client.create_version(model, format=ONNX, variant="fp32", required_artifacts=["model.onnx"])
    await client.upload_bytes(model, version.version, "model.onnx", content or os.urandom(1000))
    await client.set_status((model, version.version), READY)
    return version.version


async def expect_code(code: grpc.StatusCode, awaitable: object, fragment: str = "") -> str:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await awaitable  # type: ignore[misc]
    assert failure.value.code() == code, failure.value.details()
    assert fragment.lower() in (failure.value.details() or "").lower()
    return failure.value.details() or ""


async def test_models_crud_validation_and_pages(client: RegistryClient, model_name: str) -> None:
    created = await client.create_model(model_name, description="d", tags={"team": "a"})
    assert created.name == model_name and created.latest_version == 0
    await expect_code(grpc.StatusCode.ALREADY_EXISTS, client.create_model(model_name), "already exists")
    assert (await client.create_model(model_name, exist_ok=True)).name == model_name
    updated = await client.update_model(model_name, description="", tags={"x": "1"}, remove_tags=["team"])
    assert updated.description == "" and dict(updated.tags) == {"x": "1"}
    for bad in ("../etc", "a/b", ".hidden", "", "x" * 129, "sp ace"):
        await expect_code(grpc.StatusCode.INVALID_ARGUMENT, client.create_model(bad), "invalid model name")
    await expect_code(grpc.StatusCode.NOT_FOUND, client.get_model(model_name + "-nope"), "not found")

    for i in range(5):
        await client.create_model(f"{model_name}-p{i}")
    names, token = [], ""
    while True:
        page = await client.stub.ListModels(
            registry_pb2.ListModelsRequest(page_size=2, page_token=token, name_prefix=f"{model_name}-p")
        )
        assert len(page.models) <= 2
        names += [m.name for m in page.models]
        token = page.next_page_token
        if not token:
            break
    assert names == [f"{model_name}-p{i}" for i in range(5)]
    await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.stub.ListModels(registry_pb2.ListModelsRequest(page_token="garbage!")),
        "page_token",
    )


async def test_versions_lifecycle_and_filters(client: RegistryClient, model_name: str) -> None:
    lineage = registry_pb2.Lineage(training_job_id="job-1", dataset_digest="ab" * 32, hyperparameters={"lr": "0.1"})
    v1 = await client.create_version(
        model_name, format=ONNX, variant="fp32", metrics={"acc": 0.9}, lineage=lineage, required_artifacts=["a.bin"]
    )
    assert (v1.version, v1.status, v1.created_by) == (1, PENDING, "tester")
    assert v1.lineage.hyperparameters["lr"] == "0.1"
    details = await expect_code(
        grpc.StatusCode.FAILED_PRECONDITION, client.set_status((model_name, 1), READY), "not uploaded"
    )
    assert "a.bin" in details
    await client.upload_bytes(model_name, 1, "a.bin", b"hello")
    ready = await client.set_status((model_name, 1), READY)
    assert ready.status == READY and [a.name for a in ready.artifacts] == ["a.bin"]
    await expect_code(grpc.StatusCode.FAILED_PRECONDITION, client.upload_bytes(model_name, 1, "b.bin", b"x"), "PENDING")
    v2 = await client.create_version(model_name, variant="int8", lineage=registry_pb2.Lineage(parent_version=1))
    await client.set_status((model_name, v2.version), REJECTED, "over tolerance")
    await expect_code(grpc.StatusCode.FAILED_PRECONDITION, client.set_status((model_name, 2), READY), "final")
    updated = await client.update_version((model_name, 1), metrics={"f1": 0.8}, description="best")
    assert dict(updated.metrics) == pytest.approx({"acc": 0.9, "f1": 0.8}) and updated.description == "best"

    assert [v.version for v in await client.list_versions(model_name)] == [2, 1]
    assert [v.version for v in await client.list_versions(model_name, status=READY)] == [1]
    assert [v.version for v in await client.list_versions(model_name, parent_version=1)] == [2]
    for _i in range(3):
        await client.create_version(model_name)
    page = await client.stub.ListVersions(registry_pb2.ListVersionsRequest(model_name=model_name, page_size=2))
    assert [v.version for v in page.versions] == [5, 4] and page.next_page_token
    await expect_code(grpc.StatusCode.NOT_FOUND, client.get_version((model_name, 99)), "no version 99")
    await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT, client.stub.GetVersion(registry_pb2.GetVersionRequest()), "version"
    )


async def test_upload_download_dedup_and_resume(client: RegistryClient, model_name: str, tmp_path: Path) -> None:
    content = os.urandom(3 * 1024 * 1024 + 123)
    digest = hashlib.sha256(content).hexdigest()
    v = await client.create_version(model_name)
    first = await client.upload_bytes(model_name, v.version, "w.bin", content, media_type="application/x-test")
    assert (first.artifact.sha256, first.artifact.size_bytes, first.deduplicated) == (digest, len(content), False)
    again = await client.upload_bytes(model_name, v.version, "copy.bin", content)
    assert again.deduplicated and again.artifact.sha256 == digest
    await client.set_status((model_name, v.version), READY)

    assert await client.download_bytes((model_name, v.version), "w.bin") == content
    offset = 2 * 1024 * 1024 + 7
    description, chunks = await client.download_chunks((model_name, v.version), "w.bin", offset=offset)
    assert description.offset == offset and description.version == v.version
    assert b"".join([c async for c in chunks]) == content[offset:]

    # A download interrupted earlier left a .part file: download_to resumes from its end.
    target = tmp_path / "w.bin"
    (tmp_path / "w.bin.part").write_bytes(content[:offset])
    seen: list[int] = []
    artifact = await client.download_to((model_name, v.version), "w.bin", target, progress=lambda d, t: seen.append(d))
    assert target.read_bytes() == content and artifact.sha256 == digest
    assert seen[0] > offset and seen[-1] == len(content)
    # A .part that is not a prefix of the artifact fails the digest check, is discarded, and the
    # download restarts from 0; one longer than the artifact is discarded too.
    (tmp_path / "bad.part").write_bytes(b"\0" * offset)
    await client.download_to((model_name, v.version), "w.bin", tmp_path / "bad")
    assert (tmp_path / "bad").read_bytes() == content and not (tmp_path / "bad.part").exists()
    (tmp_path / "long.part").write_bytes(b"\0" * (len(content) + 1))
    await client.download_to((model_name, v.version), "w.bin", tmp_path / "long")
    assert (tmp_path / "long").read_bytes() == content
    await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.download_bytes((model_name, v.version), "../w.bin"),
        "invalid artifact name",
    )
    description, chunks = await client.download_chunks((model_name, v.version), "w.bin", offset=len(content))
    assert [c async for c in chunks] == []
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await client.download_chunks((model_name, v.version), "w.bin", offset=len(content) + 1)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def temp_files(registry: ServiceProcess) -> list[Path]:
    return list((blob_dir(registry) / "tmp").glob("*.part"))


async def test_wrong_digest_leaves_nothing(client: RegistryClient, registry: ServiceProcess, model_name: str) -> None:
    v = await client.create_version(model_name)

    async def requests(digest: str):  # type: ignore[no-untyped-def]
        yield registry_pb2.UploadArtifactRequest(
            header=registry_pb2.UploadHeader(model_name=model_name, version=v.version, artifact_name="x.bin")
        )
        yield registry_pb2.UploadArtifactRequest(chunk=b"a" * 5000)
        if digest:
            yield registry_pb2.UploadArtifactRequest(sha256=digest)

    await expect_code(grpc.StatusCode.DATA_LOSS, client.stub.UploadArtifact(requests("0" * 64)), "mismatch")
    await expect_code(grpc.StatusCode.INVALID_ARGUMENT, client.stub.UploadArtifact(requests("")), "sha256")
    await expect_code(grpc.StatusCode.INVALID_ARGUMENT, client.stub.UploadArtifact(requests("XYZ")), "hex")
    assert list((await client.get_version((model_name, v.version))).artifacts) == []
    assert temp_files(registry) == []
    digest = hashlib.sha256(b"a" * 5000).hexdigest()
    assert not (blob_dir(registry) / "sha256" / digest[:2] / digest).exists()


async def test_a_version_created_with_its_artifacts_inline_is_whole_and_ready(
    client: RegistryClient, model_name: str
) -> None:
    weights, card = os.urandom(70_000), b'{"kind": "mlp"}'
    files = [inline_artifact("weights.bin", weights, "application/x-test"), inline_artifact("spec.json", card)]
    version = await client.create_version(
        model_name, required_artifacts=["weights.bin", "spec.json"], artifacts=files, ready=True
    )
    assert version.status == READY
    stored = {a.name: (a.sha256, a.size_bytes, a.media_type) for a in version.artifacts}
    assert stored == {
        "weights.bin": (hashlib.sha256(weights).hexdigest(), len(weights), "application/x-test"),
        "spec.json": (hashlib.sha256(card).hexdigest(), len(card), "application/octet-stream"),
    }
    assert await client.download_bytes((model_name, version.version), "weights.bin") == weights
    await client.set_alias(model_name, "production", version.version)  # usable at once
    stream = client.watch(after_sequence=0, model_names=[model_name])
    events = [await asyncio.wait_for(anext(stream), 5) for _ in range(4)]
    await stream.aclose()
    assert [(e.type, e.status) for e in events[1:3]] == [
        (registry_pb2.EVENT_TYPE_VERSION_CREATED, PENDING),  # same transaction: never visible PENDING
        (registry_pb2.EVENT_TYPE_VERSION_STATUS_CHANGED, READY),
    ]
    assert events[3].type == registry_pb2.EVENT_TYPE_ALIAS_MOVED

    # Without `ready` the artifacts are stored and the version stays PENDING for more uploads.
    pending = await client.create_version(
        model_name, required_artifacts=["a", "b"], artifacts=[inline_artifact("a", b"1")]
    )
    assert pending.status == PENDING and [a.name for a in pending.artifacts] == ["a"]
    await client.upload_bytes(model_name, pending.version, "b", b"2")
    assert (await client.set_status((model_name, pending.version), READY)).status == READY


async def test_a_refused_inline_creation_leaves_nothing(
    client: RegistryClient, registry: ServiceProcess, model_name: str
) -> None:
    content = os.urandom(5000)
    digest = hashlib.sha256(content).hexdigest()
    wrong = registry_pb2.InlineArtifact(name="w.bin", content=content, sha256="0" * 64)
    await expect_code(
        grpc.StatusCode.DATA_LOSS, client.create_version(model_name, artifacts=[wrong], ready=True), "mismatch"
    )
    bad_hex = registry_pb2.InlineArtifact(name="w.bin", content=content, sha256="XYZ")
    await expect_code(grpc.StatusCode.INVALID_ARGUMENT, client.create_version(model_name, artifacts=[bad_hex]), "hex")
    twice = [inline_artifact("w.bin", content), inline_artifact("w.bin", b"other")]
    await expect_code(grpc.StatusCode.INVALID_ARGUMENT, client.create_version(model_name, artifacts=twice), "repeat")
    unsafe = [inline_artifact("../w.bin", content)]
    await expect_code(grpc.StatusCode.INVALID_ARGUMENT, client.create_version(model_name, artifacts=unsafe), "name")
    missing = client.create_version(
        model_name, required_artifacts=["w.bin", "spec.json"], artifacts=[inline_artifact("w.bin", content)], ready=True
    )
    await expect_code(grpc.StatusCode.FAILED_PRECONDITION, missing, "spec.json")
    await expect_code(
        grpc.StatusCode.FAILED_PRECONDITION, client.create_version(model_name, ready=True), "no artifacts"
    )
    no_model = client.create_version(model_name, create_model=False, artifacts=[inline_artifact("w.bin", content)])
    await expect_code(grpc.StatusCode.NOT_FOUND, no_model, "create_model")  # refused by the transaction
    await expect_code(grpc.StatusCode.NOT_FOUND, client.get_model(model_name))  # not even the model was created
    assert temp_files(registry) == []
    assert not (blob_dir(registry) / "sha256" / digest[:2] / digest).exists()


async def test_stream_cut_mid_upload_leaves_nothing(
    client: RegistryClient, registry: ServiceProcess, model_name: str
) -> None:
    v = await client.create_version(model_name)
    sent = asyncio.Event()

    async def requests():  # type: ignore[no-untyped-def]
        yield registry_pb2.UploadArtifactRequest(
            header=registry_pb2.UploadHeader(model_name=model_name, version=v.version, artifact_name="cut.bin")
        )
        for _ in range(4):
            yield registry_pb2.UploadArtifactRequest(chunk=os.urandom(1024 * 1024))
        sent.set()
        await asyncio.sleep(60)  # the client goes away before sending the digest

    call = client.stub.UploadArtifact(requests())
    await asyncio.wait_for(sent.wait(), 10)
    for _ in range(50):  # the server has the partial file open
        if temp_files(registry):
            break
        await asyncio.sleep(0.05)
    assert temp_files(registry), "expected a partial upload in progress"
    call.cancel()
    for _ in range(100):
        if not temp_files(registry):
            break
        await asyncio.sleep(0.05)
    assert temp_files(registry) == []
    assert list((await client.get_version((model_name, v.version))).artifacts) == []


async def test_32_concurrent_creations_number_1_to_32(client: RegistryClient, model_name: str) -> None:
    await client.create_model(model_name)
    created = await asyncio.gather(*[client.create_version(model_name) for _ in range(32)])
    assert sorted(v.version for v in created) == list(range(1, 33))
    assert (await client.get_model(model_name)).latest_version == 32


async def test_concurrent_alias_moves_only_reach_ready_versions(client: RegistryClient, model_name: str) -> None:
    ready = [await ready_version(client, model_name) for _ in range(3)]
    pending = [(await client.create_version(model_name)).version for _ in range(2)]
    failed = (await client.create_version(model_name)).version
    await client.set_status((model_name, failed), FAILED, "boom")
    rng = random.Random(7)
    targets = [rng.choice([*ready, *pending, failed]) for _ in range(40)]

    async def move(target: int) -> bool:
        try:
            await client.set_alias(model_name, "production", target, reason="race")
            return True
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION and "READY" in (exc.details() or "")
            return False

    outcomes = await asyncio.gather(*[move(t) for t in targets])
    assert outcomes == [t in ready for t in targets]
    current = (await client.get_model(model_name)).aliases["production"]
    assert current in ready
    history = await client.alias_history(model_name, "production")
    assert len(history) == sum(outcomes)
    assert history[0].to_version == current
    # The history chains: each move starts where the previous one ended.
    for newer, older in itertools.pairwise(history):
        assert newer.from_version == older.to_version
    await expect_code(grpc.StatusCode.INVALID_ARGUMENT, client.set_alias(model_name, "42", ready[0]), "alias")


async def test_rollback_history_and_delete(client: RegistryClient, model_name: str) -> None:
    v1, v2 = await ready_version(client, model_name), await ready_version(client, model_name)
    await expect_code(grpc.StatusCode.NOT_FOUND, client.rollback(model_name, "production"), "no alias")
    await client.set_alias(model_name, "production", v1, actor="alice", reason="first deploy")
    await expect_code(grpc.StatusCode.FAILED_PRECONDITION, client.rollback(model_name, "production"), "earlier")
    await client.set_alias(model_name, "production", v2, actor="bob", reason="better")
    assert (await client.get_version(f"{model_name}@production")).version == v2
    move = await client.rollback(model_name, "production", actor="carol", reason="regression")
    assert (move.from_version, move.to_version, move.actor, move.reason) == (v2, v1, "carol", "regression")
    assert (await client.get_version(version_ref((model_name, "production")))).version == v1
    history = await client.alias_history(model_name, "production")
    assert [(m.from_version, m.to_version, m.actor) for m in history] == [
        (v2, v1, "carol"),
        (v1, v2, "bob"),
        (0, v1, "alice"),
    ]
    assert list((await client.get_version((model_name, v1))).aliases) == ["production"]
    await expect_code(
        grpc.StatusCode.FAILED_PRECONDITION, client.set_status((model_name, v1), REJECTED, "x"), "aliased"
    )
    deleted = await client.delete_alias(model_name, "production")
    assert (deleted.from_version, deleted.to_version) == (v1, 0)
    await expect_code(grpc.StatusCode.NOT_FOUND, client.get_version(f"{model_name}@production"), "no alias")


async def test_delete_model_needs_force_when_aliased(client: RegistryClient, model_name: str) -> None:
    v = await ready_version(client, model_name)
    await client.set_alias(model_name, "staging", v)
    await expect_code(grpc.StatusCode.FAILED_PRECONDITION, client.delete_model(model_name), "force")
    assert (await client.get_model(model_name)).aliases["staging"] == v
    assert await client.delete_model(model_name, force=True) == 1
    await expect_code(grpc.StatusCode.NOT_FOUND, client.get_model(model_name))


async def test_watcher_resumes_without_missing_events(client: RegistryClient, model_name: str) -> None:
    await client.create_model(model_name)
    stream = client.watch(after_sequence=0, model_names=[model_name])
    replayed = await asyncio.wait_for(anext(stream), 5)
    assert (replayed.type, replayed.model_name) == (registry_pb2.EVENT_TYPE_MODEL_CREATED, model_name)
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.2)  # the watcher has caught up and is parked waiting for new events
    v = await ready_version(client, model_name)
    event = await asyncio.wait_for(first, 5)
    assert (event.type, event.version) == (registry_pb2.EVENT_TYPE_VERSION_CREATED, v)
    last = event.sequence
    await stream.aclose()  # disconnect

    await client.set_alias(model_name, "production", v)  # happens while nobody watches
    v2 = (await client.create_version(model_name)).version
    resumed = client.watch(after_sequence=last, model_names=[model_name])
    got = [await asyncio.wait_for(anext(resumed), 5) for _ in range(4)]
    await resumed.aclose()
    assert [e.type for e in got] == [
        registry_pb2.EVENT_TYPE_VERSION_UPDATED,  # the artifact upload, recorded for the audit trail
        registry_pb2.EVENT_TYPE_VERSION_STATUS_CHANGED,
        registry_pb2.EVENT_TYPE_ALIAS_MOVED,
        registry_pb2.EVENT_TYPE_VERSION_CREATED,
    ]
    assert got[0].actor == "tester" and got[1].status == READY
    assert got[2].alias == "production" and got[3].version == v2
    assert [e.sequence for e in got] == sorted(e.sequence for e in got) and got[0].sequence > last

    # The unfiltered log is gap-free from 1.
    everything = client.watch(after_sequence=0)
    sequences = [(await asyncio.wait_for(anext(everything), 5)).sequence for _ in range(6)]
    await everything.aclose()
    assert sequences == list(range(1, 7))  # this test alone wrote six events


async def test_garbage_collection_removes_only_unreferenced_blobs(
    client: RegistryClient, registry: ServiceProcess, model_name: str
) -> None:
    shared, alone = os.urandom(2000), os.urandom(3000)
    v1 = await client.create_version(model_name)
    await client.upload_bytes(model_name, v1.version, "shared.bin", shared)
    other = model_name + "-other"
    v2 = await client.create_version(other)
    await client.upload_bytes(other, v2.version, "shared.bin", shared)
    await client.upload_bytes(other, v2.version, "alone.bin", alone)
    await client.delete_model(other)
    dry = await client.collect_garbage(dry_run=True)
    assert dry.blobs_deleted >= 1 and dry.bytes_freed >= len(alone)
    report = await client.collect_garbage()
    assert report.blobs_deleted >= 1 and report.bytes_freed >= len(alone)
    assert await client.download_bytes((model_name, v1.version), "shared.bin") == shared
    if registry.env.get("backend"):
        alone_digest = hashlib.sha256(alone).hexdigest()
        assert not (blob_dir(registry) / "sha256" / alone_digest[:2] / alone_digest).exists()


async def test_client_refuses_bytes_that_rotted_on_the_server(
    client: RegistryClient, registry: ServiceProcess, model_name: str, tmp_path: Path
) -> None:
    content = os.urandom(100_000)
    v = await client.create_version(model_name)
    stored = await client.upload_bytes(model_name, v.version, "a.bin", content)
    digest = stored.artifact.sha256
    (blob_dir(registry) / "sha256" / digest[:2] / digest).write_bytes(b"\1" * len(content))  # bit rot
    with pytest.raises(ArtifactCorrupted, match="expected"):
        await client.download_to((model_name, v.version), "a.bin", tmp_path / "a.bin")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ArtifactCorrupted):
        await client.download_bytes((model_name, v.version), "a.bin")
