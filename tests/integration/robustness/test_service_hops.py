"""Calls between services: the caller's deadline travels with them, and a connection to the registry cut
in the middle of a model download (a fault proxy between inference and registry) loses nothing."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from aiaas.client.registry import ONNX, SyncRegistryClient
from aiaas.common.v1 import common_pb2
from aiaas.oip.v2 import grpc_service_pb2 as oip
from aiaas.oip.v2 import grpc_service_pb2_grpc as oip_grpc
from aiaas.registry.v1 import registry_pb2_grpc as rg
from aiaas.serialization.v1 import serialization_pb2 as ser
from aiaas.serialization.v1 import serialization_pb2_grpc as ser_grpc
from tests.support.fault_proxy import FaultProxy
from tests.support.models import export_digits_mlp
from tests.support.processes import start_service, wait_model_ready

MiB = 1024 * 1024


class _StallingRegistry(rg.RegistryServiceServicer):
    """A registry whose GetVersion records the time its caller gave it, then stalls until cancelled."""

    def __init__(self) -> None:
        self.remaining: list[float | None] = []
        self.arrived = threading.Event()

    def GetVersion(self, request, context):  # type: ignore[no-untyped-def]
        self.remaining.append(context.time_remaining())
        self.arrived.set()
        deadline = time.monotonic() + 10
        while context.is_active() and time.monotonic() < deadline:
            time.sleep(0.02)
        context.abort(grpc.StatusCode.NOT_FOUND, "stalled")


def test_the_callers_deadline_travels_to_the_registry(tmp_path: Path) -> None:
    fake = _StallingRegistry()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    rg.add_RegistryServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    serialization = start_service(
        "serialization",
        tmp_path / "serialization",
        env={"AIAAS_SERIALIZATION_REGISTRY_TARGET": f"127.0.0.1:{port}"},
    )
    try:
        request = ser.StartExportJobRequest(
            source=common_pb2.VersionRef(model_name="stalled", version=1),
            options=common_pb2.ExportOptions(variants=["fp32"]),
        )
        with grpc.insecure_channel(serialization.address) as channel:
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as info:
                ser_grpc.SerializationServiceStub(channel).StartExportJob(request, timeout=1.5)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert fake.arrived.wait(5)
        remaining = fake.remaining[0]
        # grpc-timeout travels rounded up to its unit, so a hair over 1.5 s; without propagation it is 60 s.
        assert remaining is not None and remaining < 1.6, f"the registry call was given {remaining}s, not <= 1.5s"
        assert time.monotonic() - started < 5
    finally:
        serialization.terminate()
        server.stop(0)


def test_registry_connection_cut_mid_download_loses_nothing(tmp_path: Path) -> None:
    registry = start_service("registry", tmp_path / "registry")
    model = tmp_path / "wide.onnx"
    export_digits_mlp(model, hidden=8192, seed=5)  # ~2.4 MB of ONNX: a download takes several chunks
    assert model.stat().st_size > 2 * MiB
    with SyncRegistryClient(registry.address, actor="proxy-test") as client:
        version = client.push("wide", {"model.onnx": model}, format=ONNX)
        client.set_alias("wide", "production", version.version)
    proxy = FaultProxy(registry.address, cut_after=MiB + MiB // 2)  # inside the model's bytes
    inference = start_service(
        "inference",
        tmp_path / "inference",
        env={
            "AIAAS_INFERENCE_REGISTRY_TARGET": proxy.address,
            "AIAAS_INFERENCE_MODELS": "wide",
            "AIAAS_INFERENCE_WATCH_BACKOFF_MAX_SECONDS": "1",
        },
    )
    try:
        rows = np.random.default_rng(1).uniform(0, 16, (3, 64)).astype("<f4")
        request = oip.ModelInferRequest(model_name="wide")
        request.inputs.add(name="input", datatype="FP32", shape=[3, 64])
        request.raw_input_contents.append(rows.tobytes())
        wait_model_ready(inference, "wide", 90)
        with grpc.insecure_channel(inference.address) as channel:
            reply = oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
        assert len(proxy.cuts) == 1 and proxy.connections >= 2, (proxy.cuts, proxy.connections)
        expected = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"input": rows})[0]
        served = np.frombuffer(reply.raw_output_contents[0], dtype="<f4").reshape(expected.shape)
        np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5)
        assert "wide" in inference.log() and "cannot load" in inference.log()
    finally:
        inference.terminate()
        proxy.close()
        registry.terminate()
