"""Drift monitoring with real processes: a registry holding an exported digits model whose training
checkpoint carries reference statistics, and an inference service scoring the live inputs against them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from aiaas.cli.main import main as cli
from aiaas.monitoring.v1 import monitoring_pb2, monitoring_pb2_grpc
from aiaas.oip.v2 import grpc_service_pb2 as pb
from aiaas.oip.v2 import grpc_service_pb2_grpc
from aiaas_services.monitoring.drift import PSI_THRESHOLD, reference_stats
from tests.support.processes import ServiceProcess, start_inference, start_service, wait_model_ready

WINDOW = 400


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, np.ndarray, np.ndarray, Any]]:
    from aiaas.client.registry import ONNX, SyncRegistryClient
    from aiaas_services.inference.examples import export_mlp

    root = tmp_path_factory.mktemp("drift")
    x, y = load_digits(return_X_y=True)
    x_train, x_test, _, y_test = train_test_split(x.astype(np.float32), y, test_size=0.25, random_state=0)
    model = export_mlp(root / "model.onnx", seed=3)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    predicted = session.run(None, {"input": x_train})[0].argmax(1)
    (root / "reference.json").write_text(json.dumps(reference_stats(x_train, predicted, 10)))

    env = {"OTEL_TRACES_EXPORTER": "none"}
    registry = start_service("registry", root / "registry", env=env)
    inference = None
    try:
        with SyncRegistryClient(registry.address) as client:
            # What training and export leave behind: the checkpoint has the reference, the ONNX version
            # names it in its `source` tag.
            checkpoint = client.push("digits-ckpt", {"reference.json": root / "reference.json"})
            exported = client.push(
                "digits", {"model.onnx": model}, format=ONNX, tags={"source": f"digits-ckpt:{checkpoint.version}"}
            )
            client.set_alias("digits", "production", exported.version)
        inference = start_inference(
            root / "inference",
            registry.address,
            "digits",
            {
                **env,
                "AIAAS_INFERENCE_MONITORING_SAMPLE_EVERY": "1",
                "AIAAS_INFERENCE_MONITORING_WINDOW": str(WINDOW),
                "AIAAS_INFERENCE_MONITORING_INTERVAL_SECONDS": "0.3",
            },
        )
        wait_model_ready(inference, "digits", 90)
        yield inference, x_test, y_test, session
    finally:
        if inference is not None:
            inference.terminate()
        registry.terminate()


def send(address: str, rows: np.ndarray, batch: int = 10, ids: str = "") -> None:
    with grpc.insecure_channel(address) as channel:
        stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for start in range(0, len(rows), batch):
            x = np.ascontiguousarray(rows[start : start + batch], dtype=np.float32)
            request = pb.ModelInferRequest(model_name="digits", id=f"{ids}{start}" if ids else "")
            request.inputs.append(pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=x.shape))
            request.raw_input_contents.append(x.tobytes())
            stub.ModelInfer(request, timeout=30)


def drift(address: str) -> monitoring_pb2.GetDriftResponse:
    with grpc.insecure_channel(address) as channel:
        stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
        deadline = time.monotonic() + 30
        while True:  # the reference is fetched from the registry in the background
            report = stub.GetDrift(monitoring_pb2.GetDriftRequest(model_name="digits"), timeout=10)
            if report.reference or time.monotonic() > deadline:
                return report
            time.sleep(0.2)


def test_held_out_rows_stay_below_the_threshold_and_shifted_rows_cross_it(
    served: tuple[ServiceProcess, np.ndarray, np.ndarray, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    inference, x_test, _, _ = served
    with grpc.insecure_channel(inference.address) as channel, pytest.raises(grpc.RpcError) as unknown:
        monitoring_pb2_grpc.MonitoringServiceStub(channel).GetDrift(monitoring_pb2.GetDriftRequest(model_name="nope"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND

    send(inference.address, x_test)  # 450 held-out rows: the window keeps the last 400
    calm = drift(inference.address)
    assert calm.reference == "registry digits-ckpt:1/reference.json", inference.log()[-2000:]
    assert calm.window_rows == WINDOW and len(calm.features) == 64
    assert calm.max_psi < PSI_THRESHOLD and not calm.drifted, calm
    assert calm.HasField("prediction_psi") and calm.prediction_psi < PSI_THRESHOLD

    send(inference.address, np.clip(x_test + 4.0, 0, 16))  # the same digits, every pixel brighter
    shifted = drift(inference.address)
    assert shifted.max_psi > PSI_THRESHOLD and shifted.drifted, shifted
    assert sum(f.psi > PSI_THRESHOLD for f in shifted.features) > 10
    assert shifted.features[0].psi == shifted.max_psi  # largest first

    time.sleep(1.0)  # a few background scorings for the sparkline
    capsys.readouterr()
    assert cli(["monitor", "digits", "--target", inference.address, "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "DRIFTED" in out and "max PSI history" in out and "feature" in out
    assert any(bar in out for bar in "▁▂▃▄▅▆▇█")


def test_feedback_tracks_live_accuracy_exactly(
    served: tuple[ServiceProcess, np.ndarray, np.ndarray, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    inference, x_test, y_test, session = served
    rows, labels = x_test[:60], y_test[:60]
    send(inference.address, rows, batch=20, ids="fb-")
    expected = session.run(None, {"input": rows})[0].argmax(1) == labels
    for start in (0, 20):
        chunk = ",".join(str(v) for v in labels[start : start + 20])
        capsys.readouterr()
        assert cli(["feedback", "digits", "--id", f"fb-{start}", "--labels", chunk, "--target", inference.address]) == 0
        assert f"{int(expected[start : start + 20].sum())}/20 right" in capsys.readouterr().out
    with grpc.insecure_channel(inference.address) as channel:
        stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
        reply = stub.RecordFeedback(
            monitoring_pb2.RecordFeedbackRequest(model_name="digits", request_id="fb-40", labels=labels[40:60].tolist())
        )
        assert reply.feedback_rows == 60 and reply.live_accuracy == pytest.approx(expected.mean())
        with pytest.raises(grpc.RpcError) as again:  # each request's feedback counts once
            stub.RecordFeedback(
                monitoring_pb2.RecordFeedbackRequest(model_name="digits", request_id="fb-40", labels=[1])
            )
        assert again.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as short:
            send(inference.address, rows[:3], batch=3, ids="three-")
            stub.RecordFeedback(
                monitoring_pb2.RecordFeedbackRequest(model_name="digits", request_id="three-0", labels=[1])
            )
        assert short.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "3 rows" in short.value.details()
    assert drift(inference.address).live_accuracy == pytest.approx(expected.mean())
