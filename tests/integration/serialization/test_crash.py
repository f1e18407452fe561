"""A serialization service killed (SIGKILL) mid-export leaves nothing READY: after a restart on the same
home, the job is FAILED and every version it had created is FAILED (or was never made)."""

from __future__ import annotations

import time
from pathlib import Path

import grpc

from aiaas.client.registry import PENDING, READY, SyncRegistryClient
from aiaas.common.v1 import common_pb2
from aiaas.serialization.v1 import serialization_pb2 as pb
from aiaas.serialization.v1 import serialization_pb2_grpc
from tests.support.processes import ServiceProcess, start_service


def test_kill_mid_export_leaves_nothing_ready(
    registry_process: ServiceProcess,
    registry: SyncRegistryClient,
    checkpoints: dict[str, tuple[str, int]],
    tmp_path: Path,
) -> None:
    env = {
        "AIAAS_SERIALIZATION_REGISTRY_TARGET": registry_process.address,
        "AIAAS_SERIALIZATION_LATENCY_REPEATS": "20000",
    }
    home = tmp_path / "serialization"
    service = start_service("serialization", home, env=env)
    model, version = checkpoints["transformer"]
    with grpc.insecure_channel(service.address) as channel:
        stub = serialization_pb2_grpc.SerializationServiceStub(channel)
        request = pb.StartExportJobRequest(
            source=common_pb2.VersionRef(model_name=model, version=version),
            options=common_pb2.ExportOptions(variants=["fp32", "fp16", "int8-dynamic"]),
            target_model_name="crash-onnx",
        )
        job = stub.StartExportJob(request, timeout=30).job
        # wait until the first variant is registered and the second is being proven (20000 timed runs
        # per latency number make that take seconds): the job is mid-way with a version behind it
        for event in stub.WatchExportJob(pb.WatchExportJobRequest(job_id=job.job_id), timeout=120):
            if event.message == "proving fp16":
                break
    service.kill()
    restarted = start_service("serialization", home, env=env)
    try:
        with grpc.insecure_channel(restarted.address) as channel:
            stub = serialization_pb2_grpc.SerializationServiceStub(channel)
            final = stub.GetExportJob(pb.GetExportJobRequest(job_id=job.job_id), timeout=10).job
        assert final.state == common_pb2.JOB_STATE_FAILED
        assert "stopped while this job ran" in final.failure_reason
        deadline = time.monotonic() + 20
        versions = registry.list_versions("crash-onnx")
        while time.monotonic() < deadline and any(v.status == PENDING for v in versions):
            time.sleep(0.2)
            versions = registry.list_versions("crash-onnx")
        assert versions, "the fp32 variant was registered before the kill"
        time.sleep(3)  # an orphaned worker (there must be none) would have registered more by now
        versions = registry.list_versions("crash-onnx")
        reported = {r.registered.version for r in final.reports}
        for v in versions:
            assert v.status != PENDING, v
            assert v.status != READY or v.version in reported, v  # READY only if fully proven and recorded
        assert any(v.variant == "fp16" and v.status != READY for v in versions) or len(versions) == len(reported)
    finally:
        restarted.terminate()
