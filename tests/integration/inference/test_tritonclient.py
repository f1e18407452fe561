"""NVIDIA's own tritonclient (gRPC) against our server, run in .venv-triton as a user's client would be.

tritonclient pins protobuf < 7 while our services need protobuf 7, so the client runs in its own
virtual environment (``make triton-client`` builds it; ``make test`` does that first).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from tests.support.processes import ServiceProcess

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = Path(__file__).with_name("triton_client_script.py")


def triton_python() -> Path:
    """The interpreter of .venv-triton (or $AIAAS_TRITON_PYTHON)."""
    path = Path(os.environ.get("AIAAS_TRITON_PYTHON", ROOT / ".venv-triton" / "bin" / "python"))
    assert path.exists(), f"{path} is missing: run `make triton-client` (make test builds it)"
    return path


def run_triton_script(script: Path, address: str) -> dict[str, Any]:
    """Run ``script`` against ``address`` under NVIDIA's client (its own venv); what it found, as JSON."""
    completed = subprocess.run(
        [str(triton_python()), str(script), address],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    found: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return found


def test_tritonclient_drives_the_server(standalone: ServiceProcess, model_repository: Path) -> None:
    found = run_triton_script(SCRIPT, standalone.address)
    assert found["live"] and found["ready"] and found["model_ready"]
    assert found["server_name"] == "aiaas-inference"
    assert found["platform"] == "onnxruntime_onnx"
    assert found["max_batch_size"] == 32
    assert {"mlp", "bytes", "fp16"} <= set(found["index"])
    session = ort.InferenceSession(str(model_repository / "mlp/1/model.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input": np.asarray(found["mlp_input"], np.float32)})[0]
    np.testing.assert_allclose(np.asarray(found["mlp_output"]), expected, rtol=1e-5, atol=1e-6)
    assert found["mlp_id"] == "t-1"
    assert found["bytes"] == [["alpha", "beta"], ["gamma", ""]]
    assert found["fp16"] == [[2.0, -5.0, 0.5, 16.0]]
    assert found["bf16"][0] == "bfloat16"
    assert found["bf16"][1] == bf16_answer(standalone, found["bf16_input"]), "BF16 over gRPC, bit for bit"
    assert found["stream_ids"] == [f"stream-{i}" for i in range(5)]
    assert found["missing"] == "StatusCode.NOT_FOUND"
    assert found["stats_success"] >= 2


HTTP_SCRIPT = Path(__file__).with_name("triton_http_script.py")


def test_tritonclient_http_drives_the_rest_front_door(standalone: ServiceProcess) -> None:
    import grpc

    from aiaas.oip.v2 import grpc_service_pb2_grpc
    from tests.integration.inference.test_protocol import raw_request

    address = f"127.0.0.1:{standalone.http_port}"
    found = run_triton_script(HTTP_SCRIPT, address)
    assert found["live"] and found["ready"] and found["model_ready"] and not found["ghost_ready"]
    assert found["server_name"] == "aiaas-inference" and found["platform"] == "onnxruntime_onnx"
    assert found["max_batch_size"] == 32 and {"mlp", "bytes", "fp16"} <= set(found["index"])
    with grpc.insecure_channel(standalone.address) as channel:
        stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        x = np.asarray(found["mlp_input"], np.float32)
        expected = stub.ModelInfer(raw_request("mlp", input=x)).raw_output_contents[0]
    for key in ("mlp_output_False", "mlp_output_True", "mlp_output_default"):
        assert np.asarray(found[key], np.float32).tobytes() == expected, key  # bit for bit, JSON or binary
    assert found["mlp_id_False"] == "mlp-False" and found["mlp_id_True"] == "mlp-True"
    assert found["bytes_False"] == found["bytes_True"] == [["alpha", "beta"], ["gamma", ""]]
    assert found["fp16_False"] == found["fp16_True"] == [[2.0, -5.0, 0.5, 16.0]]
    assert found["missing"][0] == "404" and "missing-model" in found["missing"][1]
    assert found["bad_shape"][0] == "400" and "63" in found["bad_shape"][1]
    assert found["stats_success"] >= 3
    expected_bf16 = bf16_answer(standalone, found["bf16_input"])
    for binary_out in ("False", "True"):  # JSON numbers or binary bytes: the same bits as gRPC's
        assert found[f"bf16_{binary_out}"] == ["bfloat16", expected_bf16], binary_out


def bf16_answer(standalone: ServiceProcess, bits: list[list[int]]) -> list[list[int]]:
    """Our own gRPC answer of the bf16 model to an input given as bfloat16 bits, as bits."""
    import grpc

    from aiaas.oip.v2 import grpc_service_pb2 as pb
    from aiaas.oip.v2 import grpc_service_pb2_grpc

    x = np.asarray(bits, np.uint16)
    request = pb.ModelInferRequest(model_name="bf16")
    request.inputs.add(name="input", datatype="BF16", shape=list(x.shape))
    request.raw_input_contents.append(x.tobytes())
    with grpc.insecure_channel(standalone.address) as channel:
        reply = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert reply.outputs[0].datatype == "BF16"
    return np.frombuffer(reply.raw_output_contents[0], np.uint16).reshape(list(reply.outputs[0].shape)).tolist()
