"""Faults across process boundaries: a neighbour killed mid-work, the registry going away under the
inference service, and SIGTERM with requests in flight. Each loses nothing and leaves nothing half-made."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from aiaas.client.registry import ONNX, PYTORCH_CHECKPOINT, READY, SyncRegistryClient
from aiaas.common.v1 import common_pb2
from aiaas.oip.v2 import grpc_service_pb2 as oip
from aiaas.oip.v2 import grpc_service_pb2_grpc as oip_grpc
from aiaas.serialization.v1 import serialization_pb2 as ser
from aiaas.serialization.v1 import serialization_pb2_grpc as ser_grpc
from aiaas_services.inference.examples import export_mlp
from tests.integration.serialization.checkpoints import train_checkpoint
from tests.support.models import export_digits_mlp
from tests.support.processes import ServiceProcess, start_inference, start_service

ROW = np.random.default_rng(3).uniform(0, 16, (1, 64)).astype("<f4")


def infer_request(model: str) -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(model_name=model)
    request.inputs.add(name="input", datatype="FP32", shape=[1, 64])
    request.raw_input_contents.append(ROW.tobytes())
    return request


def wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


def test_serialization_killed_mid_export_leaves_nothing_half_made_ready(tmp_path: Path) -> None:
    registry = start_service("registry", tmp_path / "registry")
    env = {"AIAAS_SERIALIZATION_REGISTRY_TARGET": registry.address}
    serialization = start_service("serialization", tmp_path / "serialization", env=env)
    client = SyncRegistryClient(registry.address, actor="fault-test")
    try:
        folder = train_checkpoint("transformer", tmp_path / "ckpt", epochs=2)
        checkpoint = client.push(
            "fault-transformer",
            {"spec.json": folder / "spec.json", "weights.safetensors": folder / "weights.safetensors"},
            format=PYTORCH_CHECKPOINT,
        )
        with grpc.insecure_channel(serialization.address) as channel:
            stub = ser_grpc.SerializationServiceStub(channel)
            job = stub.StartExportJob(
                ser.StartExportJobRequest(
                    source=common_pb2.VersionRef(model_name=checkpoint.model_name, version=checkpoint.version),
                    options=common_pb2.ExportOptions(variants=["fp32", "fp16", "int8-dynamic", "int8-static"]),
                ),
                timeout=30,
            ).job

            def running() -> bool:
                state = stub.GetExportJob(ser.GetExportJobRequest(job_id=job.job_id), timeout=10).job.state
                return state == common_pb2.JOB_STATE_RUNNING

            wait_for(running, what="the export to start")
        serialization.kill()  # kill -9 in the middle of the export

        serialization = start_service("serialization", tmp_path / "serialization", env=env)
        with grpc.insecure_channel(serialization.address) as channel:
            stub = ser_grpc.SerializationServiceStub(channel)

            def ended() -> bool:
                state = stub.GetExportJob(ser.GetExportJobRequest(job_id=job.job_id), timeout=10).job.state
                return state in (common_pb2.JOB_STATE_FAILED, common_pb2.JOB_STATE_SUCCEEDED)

            wait_for(ended, timeout=180, what="the interrupted job to be failed or finished after restart")
            after = stub.GetExportJob(ser.GetExportJobRequest(job_id=job.job_id), timeout=10).job
        if after.state == common_pb2.JOB_STATE_FAILED:
            assert after.failure_reason, "a failed job says why"

        # Whatever was made: every READY version is complete (its model.onnx stored) and proven.
        try:
            versions = client.list_versions("fault-transformer-onnx")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND
            versions = []
        for version in versions:
            if version.status == READY:
                assert [a.name for a in version.artifacts] == ["model.onnx"], version
                assert version.metrics, f"READY without its proof: {version}"
    finally:
        client.close()
        serialization.terminate()
        registry.terminate()


def test_inference_keeps_serving_without_the_registry_and_catches_up(tmp_path: Path) -> None:
    registry = start_service("registry", tmp_path / "registry")
    port = registry.port
    client = SyncRegistryClient(registry.address, actor="fault-test")
    first = export_mlp(tmp_path / "v1.onnx", seed=1)
    second = export_mlp(tmp_path / "v2.onnx", seed=2)
    v1 = client.push("fault-mlp", {"model.onnx": first}, format=ONNX, variant="fp32")
    client.set_alias("fault-mlp", "production", v1.version)
    inference = start_inference(
        tmp_path / "inference", registry.address, "fault-mlp", {"AIAAS_INFERENCE_WATCH_BACKOFF_MAX_SECONDS": "1"}
    )
    client.close()
    try:
        with grpc.insecure_channel(inference.address) as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            wait_for(lambda: stub.ModelReady(oip.ModelReadyRequest(name="fault-mlp"), timeout=5).ready)
            assert stub.ModelInfer(infer_request("fault-mlp"), timeout=10).model_version == str(v1.version)

            registry.kill()  # the registry dies
            for _ in range(20):
                assert stub.ModelInfer(infer_request("fault-mlp"), timeout=10).model_version == str(v1.version)

            # It comes back on the same address; a deploy made now must reach the inference service.
            registry = start_service("registry", tmp_path / "registry", args=["--port", str(port)])
            with SyncRegistryClient(registry.address, actor="fault-test") as again:
                v2 = again.push("fault-mlp", {"model.onnx": second}, format=ONNX, variant="fp32")
                again.set_alias("fault-mlp", "production", v2.version)

            def serves_v2() -> bool:
                return stub.ModelInfer(infer_request("fault-mlp"), timeout=10).model_version == str(v2.version)

            wait_for(serves_v2, timeout=60, what="the alias move after the registry came back")
    finally:
        inference.terminate()
        registry.terminate()


def test_sigterm_with_requests_in_flight_completes_every_one(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    export_digits_mlp(repo / "digits" / "1" / "model.onnx")
    service: ServiceProcess = start_service(
        "inference",
        tmp_path / "home",
        args=["--grace-seconds", "20"],
        # 1 MiB requests (4096 rows): the advertised max_batch_size must allow them (larger is INVALID_ARGUMENT)
        env={"AIAAS_INFERENCE_MODEL_REPOSITORY": str(repo), "AIAAS_INFERENCE_MAX_BATCH_SIZE": "4096"},
    )
    request = oip.ModelInferRequest(model_name="digits")
    request.inputs.add(name="input", datatype="FP32", shape=[4096, 64])
    request.raw_input_contents.append(np.zeros((4096, 64), dtype="<f4").tobytes())
    outcomes: list[tuple[float, str]] = []
    stop = threading.Event()

    async def load() -> None:
        async with grpc.aio.insecure_channel(service.address) as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)

            async def caller() -> None:
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        await stub.ModelInfer(request, timeout=30)
                        outcomes.append((started, "OK"))
                    except grpc.aio.AioRpcError as exc:
                        outcomes.append((started, exc.code().name))
                        if exc.code() == grpc.StatusCode.UNAVAILABLE:
                            return

            await asyncio.gather(*(caller() for _ in range(16)))

    thread = threading.Thread(target=lambda: asyncio.run(load()))
    thread.start()
    wait_for(lambda: len(outcomes) > 20, what="load to be flowing")
    # The callers send nothing new from now on; the 16 requests in flight must all complete.
    stop.set()
    service.process.send_signal(15)
    thread.join(60)
    assert service.process.wait(30) == 0
    codes = {code for _, code in outcomes}
    assert codes == {"OK"}, f"requests in flight at SIGTERM failed: {sorted(codes)}"


pytestmark = pytest.mark.timeout(600)


def test_sigterm_ends_open_watch_streams_instead_of_waiting_out_the_grace(tmp_path: Path) -> None:
    """A WatchJob stream never ends on its own; draining ends it (UNAVAILABLE, resumable) so shutdown is quick."""
    from aiaas.training.v1 import training_pb2, training_pb2_grpc

    service = start_service(
        "training",
        tmp_path / "training",
        args=["--grace-seconds", "60"],
        env={"AIAAS_TRAINING_REGISTRY_TARGET": "127.0.0.1:1"},
    )
    spec = training_pb2.TrainingSpec(
        model_name="long-job",
        architecture=training_pb2.Architecture(mlp=training_pb2.MlpSpec(hidden_sizes=[32])),
        data=training_pb2.DataSpec(sklearn="digits"),
        epochs=5000,
        seed=1,
    )
    with grpc.insecure_channel(service.address) as channel:
        stub = training_pb2_grpc.TrainingServiceStub(channel)
        job = stub.StartTrainingJob(training_pb2.StartTrainingJobRequest(spec=spec), timeout=30).job
        stream = stub.WatchJob(training_pb2.WatchJobRequest(job_id=job.job_id), timeout=120)
        next(stream)  # the stream is open and answering
        started = time.monotonic()
        service.process.send_signal(15)
        with pytest.raises(grpc.RpcError) as ended:
            for _ in stream:
                pass
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "after_sequence" in (ended.value.details() or "")
    assert service.process.wait(60) == 0
    assert time.monotonic() - started < 30, "shutdown waited out the grace period"
