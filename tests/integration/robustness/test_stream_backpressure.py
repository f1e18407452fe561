"""ModelStreamInfer under a client that floods requests and never reads a reply: the server stops reading
at its in-flight bound, so HTTP/2 flow control holds the client back and the server's memory stays flat."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from aiaas.oip.v2 import grpc_service_pb2 as oip
from aiaas.oip.v2 import grpc_service_pb2_grpc as oip_grpc
from tests.support.models import export_digits_mlp
from tests.support.processes import ServiceProcess, serve

ROWS = 1024  # 1024 x 64 float32 = 256 KiB a request
FLOOD = 800  # 200 MiB in all
MiB = 1024 * 1024


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _request() -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(model_name="digits")
    request.inputs.add(name="input", datatype="FP32", shape=[ROWS, 64])
    request.raw_input_contents.append(np.ones((ROWS, 64), dtype="<f4").tobytes())
    return request


@pytest.fixture(scope="module")
def inference_big_batches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """Inference on the digits MLP, taking 1024-row requests (the batch limit is enforced)."""
    home = tmp_path_factory.mktemp("stream-flood")
    export_digits_mlp(home / "models" / "digits" / "1" / "model.onnx")
    env = {"AIAAS_INFERENCE_MODEL_REPOSITORY": str(home / "models"), "AIAAS_INFERENCE_MAX_BATCH_SIZE": str(ROWS)}
    yield from serve("inference", home, env=env)


def test_flooding_a_stream_without_reading_keeps_server_memory_bounded(inference_big_batches: ServiceProcess) -> None:
    inference_standalone = inference_big_batches
    pid = inference_standalone.process.pid
    template = _request()
    with grpc.insecure_channel(inference_standalone.address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        warm = list(stub.ModelStreamInfer(iter([template] * 4), timeout=60))  # allocate what a stream needs
        assert len(warm) == 4 and not any(r.error_message for r in warm)
        baseline = _rss_mib(pid)
        sent = 0
        stop = threading.Event()

        def flood() -> Iterator[oip.ModelInferRequest]:
            nonlocal sent
            for _ in range(FLOOD):
                if stop.is_set():
                    return
                sent += 1
                yield template

        call = stub.ModelStreamInfer(flood(), timeout=120)  # replies are never read
        peak = baseline
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            peak = max(peak, _rss_mib(pid))
            time.sleep(0.1)
        stop.set()
        call.cancel()
    growth = peak - baseline
    assert sent < FLOOD // 2, f"the client got {sent} of {FLOOD} requests out: nothing held it back"
    assert growth < 100, f"server RSS grew {growth:.0f} MiB (from {baseline:.0f}) while {sent} requests were sent"
    assert inference_standalone.process.poll() is None
