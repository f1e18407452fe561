"""Drift with two worker processes on one port: the scores describe the service's traffic, not one
worker's share, and labelled feedback counts whichever worker receives it. Real supervisor, real workers,
a new connection per request (so the kernel spreads them over both workers), and ``GetDrift`` asked over
fresh connections (so both workers answer it)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from aiaas.monitoring.v1 import monitoring_pb2, monitoring_pb2_grpc
from aiaas.oip.v2 import grpc_service_pb2 as pb
from aiaas.oip.v2 import grpc_service_pb2_grpc
from aiaas_services.monitoring.drift import PSI_THRESHOLD, reference_stats
from tests.support.processes import ServiceProcess, start_service

WINDOW = 400  # per worker; 450 rows spread over two workers fit in their windows together
ROWS_PER_REQUEST = 10


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, np.ndarray, np.ndarray, Any]]:
    from aiaas_services.inference.examples import export_mlp

    root = tmp_path_factory.mktemp("drift-workers")
    x, y = load_digits(return_X_y=True)
    x_train, x_test, _, y_test = train_test_split(x.astype(np.float32), y, test_size=0.25, random_state=0)
    model = export_mlp(root / "models" / "digits" / "1" / "model.onnx", seed=3)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    predicted = session.run(None, {"input": x_train})[0].argmax(1)
    (model.parent / "reference.json").write_text(json.dumps(reference_stats(x_train, predicted, 10)))
    service = start_service(
        "inference",
        root / "home",
        env={
            "OTEL_TRACES_EXPORTER": "none",
            "AIAAS_INFERENCE_MODEL_REPOSITORY": str(root / "models"),
            "AIAAS_INFERENCE_WORKERS": "2",
            "AIAAS_INFERENCE_MONITORING_SAMPLE_EVERY": "1",
            "AIAAS_INFERENCE_MONITORING_WINDOW": str(WINDOW),
            "AIAAS_INFERENCE_MONITORING_INTERVAL_SECONDS": "0.3",
        },
        timeout=120,
    )
    try:
        yield service, x_test, y_test, session
    finally:
        assert service.terminate() == 0, service.log()[-3000:]


def send_spread(address: str, rows: np.ndarray, ids: str = "") -> None:
    """Each request on its own connection: the kernel picks a worker per connection. With ``ids``, request
    ``i`` carries the id ``{ids}{i}``."""
    for start in range(0, len(rows), ROWS_PER_REQUEST):
        x = np.ascontiguousarray(rows[start : start + ROWS_PER_REQUEST], dtype=np.float32)
        request_id = f"{ids}{start // ROWS_PER_REQUEST}" if ids else ""
        request = pb.ModelInferRequest(model_name="digits", id=request_id)
        request.inputs.append(pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=x.shape))
        request.raw_input_contents.append(x.tobytes())
        with grpc.insecure_channel(address) as channel:
            grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)


def reports(address: str) -> list[monitoring_pb2.GetDriftResponse]:
    """GetDrift over 8 fresh connections (both workers answer some); a worker that has not learnt of the
    model's traffic yet answers NOT_FOUND and is left out."""
    found = []
    for _ in range(8):
        with grpc.insecure_channel(address) as channel:
            stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
            try:
                found.append(stub.GetDrift(monitoring_pb2.GetDriftRequest(model_name="digits"), timeout=10))
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND, exc
    return found


def settled(address: str, done: Callable[[monitoring_pb2.GetDriftResponse], bool], log: str) -> list[Any]:
    """Reports once all 8 satisfy ``done`` (each worker publishes its counts every 0.3 s)."""
    deadline = time.monotonic() + 30
    while True:
        found = reports(address)
        if len(found) == 8 and all(done(r) for r in found):
            return found
        assert time.monotonic() < deadline, (found, log[-3000:])
        time.sleep(0.2)


def test_two_workers_score_the_traffic_of_both(fleet: tuple[ServiceProcess, np.ndarray, np.ndarray, Any]) -> None:
    service, x_test, _, _ = fleet
    held_out = x_test[:450]  # 45 requests: each worker gets fewer than its 400-row window holds
    send_spread(service.address, held_out)
    calm = settled(service.address, lambda r: r.window_rows == len(held_out) and r.windows == 2, service.log())
    for report in calm:
        assert report.reference.endswith("reference.json") and len(report.features) == 64
        assert report.max_psi < PSI_THRESHOLD and not report.drifted, report
        assert report.HasField("prediction_psi") and report.prediction_psi < PSI_THRESHOLD
    # Every worker adds up the same counts: the same PSI whichever worker answers.
    assert len({r.max_psi for r in calm}) == 1 and len({r.prediction_psi for r in calm}) == 1

    # The same digits, every pixel brighter, three times over: each worker gets more than its 400-row
    # window holds, so both windows hold only shifted rows (800 together).
    send_spread(service.address, np.clip(np.concatenate([held_out] * 3) + 4.0, 0, 16))
    shifted = settled(
        service.address, lambda r: r.windows == 2 and r.window_rows == 2 * WINDOW and r.drifted, service.log()
    )
    for report in shifted:
        assert report.max_psi > PSI_THRESHOLD, report
        assert sum(f.psi > PSI_THRESHOLD for f in report.features) > 10


def test_feedback_counts_whichever_worker_receives_it(
    fleet: tuple[ServiceProcess, np.ndarray, np.ndarray, Any],
) -> None:
    """40 requests with ids, each on its own connection, then the feedback of each on another fresh one:
    the kernel gives the two to different workers about half the time, and every feedback still finds its
    prediction; live accuracy, asked of both workers, counts exactly the 400 labelled rows."""
    service, x_test, y_test, session = fleet
    rows, labels = x_test[:400], y_test[:400]
    send_spread(service.address, rows, ids="spread-")
    right = session.run(None, {"input": rows})[0].argmax(1) == labels
    for i in range(len(rows) // ROWS_PER_REQUEST):
        part = slice(i * ROWS_PER_REQUEST, (i + 1) * ROWS_PER_REQUEST)
        request = monitoring_pb2.RecordFeedbackRequest(
            model_name="digits", request_id=f"spread-{i}", labels=labels[part].tolist()
        )
        with grpc.insecure_channel(service.address) as channel:
            reply = monitoring_pb2_grpc.MonitoringServiceStub(channel).RecordFeedback(request, timeout=30)
        assert reply.correct_rows == int(right[part].sum()), (i, reply)
    expected = float(right.mean())
    settled(
        service.address,
        lambda r: r.feedback_rows == len(rows) and r.HasField("live_accuracy") and r.live_accuracy == expected,
        service.log(),
    )
    for request_id, fragment in (("spread-0", "counts once per request"), ("never-sent", "send the inference")):
        request = monitoring_pb2.RecordFeedbackRequest(model_name="digits", request_id=request_id, labels=[1] * 10)
        with grpc.insecure_channel(service.address) as channel, pytest.raises(grpc.RpcError) as missing:
            monitoring_pb2_grpc.MonitoringServiceStub(channel).RecordFeedback(request, timeout=30)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND and fragment in (missing.value.details() or "")
