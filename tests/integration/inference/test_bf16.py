"""BF16 in and out: a model that takes and returns bfloat16, served over gRPC (typed client and raw stub), REST
with JSON numbers and REST with binary tensors; every door gives the same bits.

ONNX Runtime's ``session.run`` refuses bfloat16 arrays, so these requests go through the OrtValue runner
(inference/ortvalues.py); the answers are checked against the model's float32 arithmetic rounded to bfloat16.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import ml_dtypes
import numpy as np
import onnx
import pytest
import requests
from onnx import numpy_helper

from aiaas.client.inference import SyncInferenceClient
from aiaas.oip.v2 import grpc_service_pb2 as pb
from tests.support.processes import ServiceProcess

BF16 = np.dtype(ml_dtypes.bfloat16)


def reference(model_path: Path, x: np.ndarray) -> np.ndarray:
    """The model's own arithmetic in numpy: float32 layers between the two casts, rounded to bfloat16."""
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(model_path)).graph.initializer}
    hidden = np.maximum(x.astype(np.float32) @ weights["w1"] + weights["b1"], 0)
    return (hidden @ weights["w2"]).astype(BF16)


def grpc_raw(stub: Any, x: np.ndarray) -> tuple[str, list[int], bytes]:
    request = pb.ModelInferRequest(model_name="bf16")
    request.inputs.add(name="input", datatype="BF16", shape=list(x.shape))
    request.raw_input_contents.append(x.tobytes())
    reply = stub.ModelInfer(request, timeout=30)
    return reply.outputs[0].datatype, list(reply.outputs[0].shape), reply.raw_output_contents[0]


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return (np.random.default_rng(7).standard_normal((5, 64)) * 3).astype(BF16)


def test_bf16_metadata_and_config_name_the_datatype(stub: Any, standalone: ServiceProcess) -> None:
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="bf16"))
    assert [(t.datatype, list(t.shape)) for t in (*meta.inputs, *meta.outputs)] == [
        ("BF16", [-1, 64]),
        ("BF16", [-1, 10]),
    ]
    config = stub.ModelConfig(pb.ModelConfigRequest(name="bf16")).config
    assert config.input[0].data_type == pb.TYPE_BF16 and config.output[0].data_type == pb.TYPE_BF16
    rest = requests.get(f"{standalone.http_url}/v2/models/bf16", timeout=10).json()
    assert rest["inputs"][0]["datatype"] == "BF16" and rest["outputs"][0]["datatype"] == "BF16"


def test_bf16_answers_are_equal_bit_for_bit_over_every_door(
    stub: Any, standalone: ServiceProcess, model_repository: Path, x: np.ndarray
) -> None:
    datatype, shape, raw = grpc_raw(stub, x)
    assert (datatype, shape, len(raw)) == ("BF16", [5, 10], 5 * 10 * 2)
    answer = np.frombuffer(raw, BF16).reshape(shape)
    expected = reference(model_repository / "bf16" / "1" / "model.onnx", x)
    # One rounding step of bfloat16 at most (ORT's float32 sums may differ from numpy's in the last bits).
    np.testing.assert_allclose(answer.astype(np.float32), expected.astype(np.float32), rtol=2**-7, atol=1e-2)
    assert np.abs(answer.astype(np.float32)).max() > 0.1  # not all zeros

    typed = SyncInferenceClient.connect(standalone.address).infer("bf16", {"input": x}).outputs["output"]
    assert typed.dtype == BF16 and typed.tobytes() == raw

    url = f"{standalone.http_url}/v2/models/bf16/infer"
    as_json = {"inputs": [{"name": "input", "shape": [5, 64], "datatype": "BF16", "data": x.astype(float).tolist()}]}
    reply = requests.post(url, data=json.dumps(as_json), timeout=30)
    assert reply.status_code == 200, reply.text
    out = reply.json()["outputs"][0]
    assert (out["datatype"], out["shape"]) == ("BF16", [5, 10])
    assert np.asarray(out["data"], np.float32).astype(BF16).tobytes() == raw  # JSON numbers hold bfloat16 exactly
    assert np.asarray(out["data"], np.float32).tobytes() == answer.astype(np.float32).tobytes()

    header = json.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [5, 64], "datatype": "BF16", "parameters": {"binary_data_size": 640}}
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    reply = requests.post(
        url, data=header + x.tobytes(), headers={"Inference-Header-Content-Length": str(len(header))}, timeout=30
    )
    assert reply.status_code == 200, reply.text
    length = int(reply.headers["Inference-Header-Content-Length"])
    meta = json.loads(reply.content[:length])["outputs"][0]
    assert meta["datatype"] == "BF16" and meta["parameters"]["binary_data_size"] == len(raw)
    assert reply.content[length:] == raw


def test_bf16_needs_raw_contents_of_the_right_length(stub: Any) -> None:
    request = pb.ModelInferRequest(model_name="bf16")
    request.inputs.add(name="input", datatype="BF16", shape=[1, 64]).contents.fp32_contents.extend([1.0] * 64)
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(request, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "raw_input_contents" in (refused.value.details() or "")
    wrong = pb.ModelInferRequest(model_name="bf16")
    wrong.inputs.add(name="input", datatype="BF16", shape=[1, 64])
    wrong.raw_input_contents.append(b"\0" * 127)
    with pytest.raises(grpc.RpcError) as short:
        stub.ModelInfer(wrong, timeout=30)
    assert short.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "needs 128 bytes" in (short.value.details() or "")
