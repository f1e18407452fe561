# mypy: disable-error-code="arg-type"
# (requests types `json=` as JsonType, which nested dict literals of mixed values do not narrow to)
"""The KServe V2 REST front door driven with `requests`, checked against the gRPC side of the same server.

Answers must equal gRPC's bit for bit: JSON floats are printed in the shortest form that reads back to
the same float32, and binary tensors are the same bytes gRPC carries in raw contents.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from aiaas.oip.v2 import grpc_service_pb2 as pb
from tests.integration.inference.test_protocol import raw_request
from tests.support.processes import ServiceProcess

Tensor = pb.ModelInferRequest.InferInputTensor


@pytest.fixture(scope="module")
def url(standalone: ServiceProcess) -> str:
    return standalone.http_url


def grpc_outputs(stub: Any, model: str, **arrays: np.ndarray) -> list[bytes]:
    return list(stub.ModelInfer(raw_request(model, **arrays)).raw_output_contents)


def binary_body(header: dict[str, Any], *chunks: bytes) -> tuple[bytes, dict[str, str]]:
    text = json.dumps(header).encode()
    return text + b"".join(chunks), {"Inference-Header-Content-Length": str(len(text))}


def split_binary(response: requests.Response) -> tuple[dict[str, Any], bytes]:
    length = int(response.headers["Inference-Header-Content-Length"])
    return json.loads(response.content[:length]), response.content[length:]


def test_health_server_and_model_metadata(url: str) -> None:
    assert requests.get(f"{url}/v2/health/live", timeout=5).status_code == 200
    assert requests.get(f"{url}/v2/health/ready", timeout=5).status_code == 200
    server = requests.get(f"{url}/v2", timeout=5).json()
    assert server["name"] == "aiaas-inference" and "binary_tensor_data" in server["extensions"]
    meta = requests.get(f"{url}/v2/models/mlp", timeout=5).json()
    assert meta == {
        "name": "mlp",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 10]}],
    }
    assert requests.get(f"{url}/v2/models/mlp/versions/1", timeout=5).json() == meta
    assert requests.get(f"{url}/v2/models/mlp/ready", timeout=5).status_code == 200
    assert requests.get(f"{url}/v2/models/mlp/versions/1/ready", timeout=5).status_code == 200
    config = requests.get(f"{url}/v2/models/mlp/config", timeout=5).json()
    assert config["max_batch_size"] == 32 and config["input"][0]["dims"] == [64]
    assert config["parameters"]["execution_provider"]["string_value"] == "CPUExecutionProvider"
    openapi = requests.get(f"{url}/v2/openapi.json", timeout=5).json()
    assert "/v2/models/{name}/infer" in openapi["paths"]


def test_repository_index_and_statistics(url: str) -> None:
    index = requests.post(f"{url}/v2/repository/index", json={"ready": True}, timeout=5).json()
    assert {"name": "mlp", "version": "1", "state": "READY", "reason": ""} in index
    before = requests.get(f"{url}/v2/models/mlp/stats", timeout=5).json()["model_stats"][0]
    body = {"inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32", "data": [0.5] * 128}]}
    assert requests.post(f"{url}/v2/models/mlp/infer", json=body, timeout=5).status_code == 200
    after = requests.get(f"{url}/v2/models/mlp/versions/1/stats", timeout=5).json()["model_stats"][0]
    assert after["inference_stats"]["success"]["count"] == before["inference_stats"]["success"]["count"] + 1
    assert isinstance(after["inference_count"], int) and after["inference_count"] >= before["inference_count"] + 2


def test_infer_json_flat_and_nested_equal_grpc_bit_for_bit(url: str, stub: Any) -> None:
    x = np.random.default_rng(3).standard_normal((3, 64)).astype(np.float32)
    expected = grpc_outputs(stub, "mlp", input=x)[0]
    for data in (x.reshape(-1).tolist(), x.tolist()):
        body = {"id": "r-1", "inputs": [{"name": "input", "shape": [3, 64], "datatype": "FP32", "data": data}]}
        reply = requests.post(f"{url}/v2/models/mlp/infer", json=body, timeout=5)
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        assert answer["id"] == "r-1" and answer["model_name"] == "mlp" and answer["model_version"] == "1"
        (out,) = answer["outputs"]
        assert (out["name"], out["datatype"], out["shape"]) == ("output", "FP32", [3, 10])
        assert np.asarray(out["data"], np.float32).tobytes() == expected


def test_infer_binary_tensors_equal_grpc_bytes(url: str, stub: Any) -> None:
    x = np.random.default_rng(4).standard_normal((5, 64)).astype(np.float32)
    expected = grpc_outputs(stub, "mlp", input=x)[0]
    header = {
        "inputs": [
            {"name": "input", "shape": [5, 64], "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}
        ],
        "outputs": [{"name": "output", "parameters": {"binary_data": True}}],
    }
    body, headers = binary_body(header, x.tobytes())
    reply = requests.post(f"{url}/v2/models/mlp/infer", data=body, headers=headers, timeout=5)
    assert reply.status_code == 200, reply.text
    answer, raw = split_binary(reply)
    assert answer["outputs"][0]["parameters"] == {"binary_data_size": len(expected)}
    assert raw == expected
    # binary in, JSON out (no binary output asked for)
    header.pop("outputs")
    body, headers = binary_body(header, x.tobytes())
    reply = requests.post(f"{url}/v2/models/mlp/infer", data=body, headers=headers, timeout=5)
    assert "Inference-Header-Content-Length" not in reply.headers
    assert np.asarray(reply.json()["outputs"][0]["data"], np.float32).tobytes() == expected


def test_bytes_fp16_bool_and_int_datatypes(url: str, stub: Any) -> None:
    words = [["alpha", "beta"], ["gamma", "ünïcode"]]
    body = {"inputs": [{"name": "input", "shape": [2, 2], "datatype": "BYTES", "data": words}]}
    out = requests.post(f"{url}/v2/models/bytes/infer", json=body, timeout=5).json()["outputs"][0]
    assert (out["datatype"], out["shape"], out["data"]) == ("BYTES", [2, 2], ["alpha", "beta", "gamma", "ünïcode"])
    # BYTES binary: 4-byte little-endian length before each element, as over gRPC
    raw = b"".join(struct.pack("<I", len(w.encode())) + w.encode() for row in words for w in row)
    header = {
        "inputs": [
            {"name": "input", "shape": [2, 2], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}
        ],
        "parameters": {"binary_data_output": True},
    }
    data, headers = binary_body(header, raw)
    reply = requests.post(f"{url}/v2/models/bytes/infer", data=data, headers=headers, timeout=5)
    assert split_binary(reply)[1] == raw

    half = np.array([[1.0, -2.5, 0.25, 8.0], [0.1, 30000.0, -0.0, 3.14]], np.float16)
    expected = grpc_outputs(stub, "fp16", input=half)[0]
    body = {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP16", "data": half.astype(float).tolist()}]}
    out = requests.post(f"{url}/v2/models/fp16/infer", json=body, timeout=5).json()["outputs"][0]
    assert out["datatype"] == "FP16" and np.asarray(out["data"], np.float16).tobytes() == expected

    flags = [[True, False, True]]
    body = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "BOOL", "data": flags}]}
    assert requests.post(f"{url}/v2/models/bool/infer", json=body, timeout=5).json()["outputs"][0]["data"] == [
        False,
        True,
        False,
    ]

    a, b = np.arange(32, dtype=np.int32).reshape(2, 16), np.full((2, 16), 7, np.int32)
    expected_pair = grpc_outputs(stub, "add_sub", a=a, b=b)
    body = {
        "inputs": [
            {"name": n, "shape": [2, 16], "datatype": "INT32", "data": v.tolist()} for n, v in (("a", a), ("b", b))
        ]
    }
    reply = requests.post(f"{url}/v2/models/add_sub/infer", json=body, timeout=5)
    assert reply.status_code == 200, reply.text
    got = [np.asarray(o["data"], np.int32).tobytes() for o in reply.json()["outputs"]]
    assert [o["name"] for o in reply.json()["outputs"]] == ["sum", "difference"] and got == expected_pair


BAD_REQUESTS = [
    # (path, body or raw bytes, extra headers, status, words the message must contain)
    ("mlp/infer", b"{not json", {}, 400, "not valid JSON"),
    ("mlp/infer", b"[1, 2]", {}, 400, "JSON object"),
    (
        "mlp/infer",
        {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "INT32", "data": [0] * 64}]},
        {},
        400,
        "expects FP32",
    ),
    (
        "mlp/infer",
        {"inputs": [{"name": "input", "shape": [1, 63], "datatype": "FP32", "data": [0] * 63}]},
        {},
        400,
        "dimension 1 is 63",
    ),
    (
        "mlp/infer",
        {"inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32", "data": [0] * 64}]},
        {},
        400,
        "needs 128 elements",
    ),
    (
        "mlp/infer",
        {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": ["x"] * 64}]},
        {},
        400,
        "FP32 numbers",
    ),
    (
        "mlp/infer",
        {"inputs": [{"name": "input", "shape": [1, -64], "datatype": "FP32", "data": []}]},
        {},
        400,
        "negative",
    ),
    (
        "mlp/infer",
        {"inputs": [{"name": "nope", "shape": [1], "datatype": "FP32", "data": [0]}]},
        {},
        400,
        "unknown input",
    ),
    ("mlp/infer", {"inputs": []}, {}, 400, "missing input"),
    (
        "mlp/infer",
        {"inputs": [{"name": "input", "shape": [33, 64], "datatype": "FP32", "data": [0] * 33 * 64}]},
        {},
        400,
        "max_batch_size 32",
    ),
    (
        "mlp/infer",
        {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "parameters": {"binary_data_size": 256}}]},
        {"Inference-Header-Content-Length": "HEADER"},
        400,
        "past the end",
    ),
    (
        "mlp/infer",
        {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}]},
        {"Inference-Header-Content-Length": "999999"},
        400,
        "Inference-Header-Content-Length",
    ),
    (
        "mlp/infer",
        {
            "inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}],
            "outputs": [{"name": "zz"}],
        },
        {},
        400,
        "unknown output",
    ),
    ("ghost/infer", {"inputs": []}, {}, 404, "ghost"),
    ("mlp/versions/9/infer", {"inputs": []}, {}, 404, "version '9'"),
    (
        "bytes/infer",
        {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "BYTES", "data": [1, 2]}]},
        {},
        400,
        "JSON strings",
    ),
]


@pytest.mark.parametrize(("path", "body", "headers", "status", "words"), BAD_REQUESTS)
def test_bad_requests_get_the_right_status_and_an_actionable_json_message(
    url: str, path: str, body: Any, headers: dict[str, str], status: int, words: str
) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    if headers.get("Inference-Header-Content-Length") == "HEADER":
        headers = {"Inference-Header-Content-Length": str(len(data))}
    reply = requests.post(f"{url}/v2/models/{path}", data=data, headers=headers, timeout=5)
    assert reply.status_code == status, reply.text
    message = reply.json()["error"]
    assert words in message and "Traceback" not in message
    assert requests.get(f"{url}/v2/health/ready", timeout=5).status_code == 200  # still serving


def test_unknown_endpoints_and_methods(url: str) -> None:
    reply = requests.get(f"{url}/v3/whatever", timeout=5)
    assert reply.status_code == 404 and "/v2" in reply.json()["error"]
    reply = requests.get(f"{url}/v2/models/mlp/infer", timeout=5)
    assert reply.status_code == 405 and "POST" in reply.json()["error"]
    assert requests.get(f"{url}/v2/models/ghost/ready", timeout=5).status_code == 404


def test_grpc_refuses_a_batch_over_max_batch_size_too(stub: Any) -> None:
    import grpc

    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(raw_request("mlp", input=np.zeros((33, 64), np.float32)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "max_batch_size 32" in info.value.details()


def test_traceparent_header_continues_the_callers_trace(url: str, standalone: ServiceProcess) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}
    headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    assert requests.post(f"{url}/v2/models/mlp/infer", json=body, headers=headers, timeout=5).status_code == 200
    spans_file = Path(standalone.home) / "traces" / "inference.jsonl"
    deadline = time.monotonic() + 15
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not found:
        if spans_file.exists():
            for line in spans_file.read_text().splitlines():
                span = json.loads(line)
                if span.get("trace_id") == trace_id:
                    found.append(span)
        time.sleep(0.2)
    assert found, f"no span of trace {trace_id} in {spans_file}"
    server = [s for s in found if s["name"] == "POST /v2/models/{name}/infer"]
    assert server and server[0]["parent_id"] == "00f067aa0ba902b7"


def test_prometheus_counts_rest_requests_by_route_and_status(url: str, standalone: ServiceProcess) -> None:
    (metrics_file,) = Path(standalone.home).glob("*.port.metrics")
    body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}
    assert requests.post(f"{url}/v2/models/mlp/infer", json=body, timeout=5).status_code == 200
    assert requests.post(f"{url}/v2/models/ghost/infer", json=body, timeout=5).status_code == 404
    text = requests.get(f"http://127.0.0.1:{metrics_file.read_text()}/metrics", timeout=5).text
    ok = 'aiaas_http_server_duration_seconds_count{method="POST",route="/v2/models/{name}/infer",status="200"}'
    missing = 'aiaas_http_server_duration_seconds_count{method="POST",route="/v2/models/{name}/infer",status="404"}'
    assert ok in text and missing in text
