"""Drift for imported models: ``aiaas import model.onnx --calibration data.npz`` registers reference statistics
with the version, and an inference service serving the import scores live traffic against them. Real
registry, serialization and inference processes; the digits MLP as an ONNX file made elsewhere."""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from aiaas.cli.main import main as cli
from aiaas.client.registry import SyncRegistryClient
from aiaas.monitoring.v1 import monitoring_pb2, monitoring_pb2_grpc
from aiaas.oip.v2 import grpc_service_pb2 as pb
from aiaas.oip.v2 import grpc_service_pb2_grpc
from aiaas_services.inference.examples import export_mlp
from aiaas_services.monitoring.drift import PSI_THRESHOLD
from tests.support.processes import ServiceProcess, start_service

NAME = "imported-drift"


def send(address: str, rows: np.ndarray) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for start in range(0, len(rows), 10):
            x = np.ascontiguousarray(rows[start : start + 10], dtype=np.float32)
            request = pb.ModelInferRequest(model_name=NAME)
            request.inputs.append(pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=x.shape))
            request.raw_input_contents.append(x.tobytes())
            stub.ModelInfer(request, timeout=30)


def drift(address: str, rows: int) -> monitoring_pb2.GetDriftResponse:
    """GetDrift once the window holds ``rows`` rows and the reference has arrived from the registry."""
    deadline = time.monotonic() + 30
    with grpc.insecure_channel(address) as channel:
        stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
        while True:
            report = stub.GetDrift(monitoring_pb2.GetDriftRequest(model_name=NAME), timeout=10)
            if (report.reference and report.window_rows == rows) or time.monotonic() > deadline:
                return report
            time.sleep(0.2)


def test_import_with_calibration_data_gives_drift_a_reference(
    serialization_process: ServiceProcess,
    registry_process: ServiceProcess,
    registry: SyncRegistryClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    x, y = load_digits(return_X_y=True)
    x_train, x_test, _, _ = train_test_split(x.astype(np.float32), y, test_size=0.25, random_state=0)
    model = export_mlp(tmp_path / "model.onnx", seed=3)
    np.savez(tmp_path / "calibration.npz", input=x_train, y=np.zeros(len(x_train)))  # "y" is ignored
    capsys.readouterr()
    argv = ["import", str(model), "--name", NAME, "--calibration", str(tmp_path / "calibration.npz")]
    assert cli([*argv, "--target", serialization_process.address]) == 0
    out = capsys.readouterr().out
    assert f"drift reference statistics from {len(x_train)} calibration rows" in out, out

    version = registry.get_version((NAME, 1))
    assert {a.name for a in version.artifacts} == {"model.onnx", "reference.json"}
    stats = json.loads(registry.download_bytes((NAME, 1), "reference.json"))
    assert stats["rows"] == len(x_train) and len(stats["features"]) == 64
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    predicted = session.run(None, {"input": x_train})[0].argmax(1)
    assert stats["classes"] == pytest.approx(np.bincount(predicted, minlength=10) / len(predicted))

    # Refused before anything is registered: calibration data that does not fit the model.
    np.savez(tmp_path / "narrow.npz", input=x_train[:, :10])
    capsys.readouterr()
    narrow = ["import", str(model), "--name", NAME, "--calibration", str(tmp_path / "narrow.npz")]
    assert cli([*narrow, "--target", serialization_process.address]) != 0
    assert "axis 1 must be 64" in capsys.readouterr().err
    assert [v.version for v in registry.list_versions(NAME)] == [1]

    registry.set_alias(NAME, "production", 1)
    inference = start_service(
        "inference",
        tmp_path / "inference",
        env={
            "OTEL_TRACES_EXPORTER": "none",
            "AIAAS_INFERENCE_REGISTRY_TARGET": registry_process.address,
            "AIAAS_INFERENCE_MODELS": NAME,
            "AIAAS_INFERENCE_MONITORING_SAMPLE_EVERY": "1",
            "AIAAS_INFERENCE_MONITORING_WINDOW": "400",
            "AIAAS_INFERENCE_MONITORING_INTERVAL_SECONDS": "0.3",
        },
        timeout=120,
    )
    try:
        with grpc.insecure_channel(inference.address) as channel:
            stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
            deadline = time.monotonic() + 90
            while not stub.ModelReady(pb.ModelReadyRequest(name=NAME)).ready:
                assert time.monotonic() < deadline, inference.log()[-3000:]
                time.sleep(0.2)
        send(inference.address, x_test[:400])
        calm = drift(inference.address, 400)
        assert calm.reference == f"registry {NAME}:1/reference.json", inference.log()[-2000:]
        assert calm.max_psi < PSI_THRESHOLD and not calm.drifted, calm
        assert calm.HasField("prediction_psi") and calm.prediction_psi < PSI_THRESHOLD
        send(inference.address, np.clip(x_test[:400] + 4.0, 0, 16))
        shifted = drift(inference.address, 400)
        assert shifted.max_psi > PSI_THRESHOLD and shifted.drifted, shifted
    finally:
        inference.terminate()
