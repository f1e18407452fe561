"""The Open Inference Protocol through raw generated stubs against a real standalone server."""

from __future__ import annotations

import struct
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import json_format
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from aiaas.oip.v2 import grpc_service_pb2 as pb
from tests.support.processes import ServiceProcess

Tensor = pb.ModelInferRequest.InferInputTensor


def raw_request(model: str, **arrays: np.ndarray) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    names = {np.float32: "FP32", np.float16: "FP16", np.int32: "INT32", np.bool_: "BOOL"}
    for name, array in arrays.items():
        request.inputs.append(Tensor(name=name, datatype=names[array.dtype.type], shape=array.shape))
        request.raw_input_contents.append(array.tobytes())
    return request


def test_server_live_ready_and_metadata(stub) -> None:
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    meta = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert meta.name == "aiaas-inference" and "model_repository" in meta.extensions
    assert stub.ModelReady(pb.ModelReadyRequest(name="mlp")).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="mlp", version="1")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="mlp", version="7")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="ghost")).ready  # Triton's answer: not ready


def test_model_metadata_platform_is_tritons_and_config_names_the_provider(stub) -> None:
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="mlp"))
    assert meta.versions == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("input", "FP32", [-1, 64])]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [("output", "FP32", [-1, 10])]
    assert meta.platform == "onnxruntime_onnx"  # exactly Triton's name; clients match on it
    # onnxruntime-gpu lists CUDA as "available" without a GPU; the session falls back and the config says so.
    config = stub.ModelConfig(pb.ModelConfigRequest(name="mlp")).config
    assert config.parameters["execution_provider"].string_value == "CPUExecutionProvider"
    assert "CUDAExecutionProvider" in ort.get_available_providers()


def test_model_config_and_statistics(stub) -> None:
    config = stub.ModelConfig(pb.ModelConfigRequest(name="mlp")).config
    assert config.max_batch_size == 32 and list(config.input[0].dims) == [64]
    assert config.parameters["execution_provider"].string_value == "CPUExecutionProvider"
    assert config.instance_group[0].count == 2 and config.HasField("dynamic_batching")
    before = stub.ModelStatistics(pb.ModelStatisticsRequest(name="mlp")).model_stats[0]
    stub.ModelInfer(raw_request("mlp", input=np.ones((3, 64), np.float32)))
    after = stub.ModelStatistics(pb.ModelStatisticsRequest(name="mlp")).model_stats[0]
    assert after.inference_stats.success.count == before.inference_stats.success.count + 1
    assert after.inference_count >= before.inference_count + 3
    assert after.execution_count >= before.execution_count + 1


def test_infer_matches_onnxruntime_and_echoes_the_id(stub, model_repository) -> None:
    x = np.random.default_rng(1).standard_normal((5, 64)).astype(np.float32)
    request = raw_request("mlp", input=x)
    request.id = "req-42"
    response = stub.ModelInfer(request)
    assert response.id == "req-42" and response.model_name == "mlp" and response.model_version == "1"
    assert list(response.outputs[0].shape) == [5, 10] and response.outputs[0].datatype == "FP32"
    got = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(5, 10)
    session = ort.InferenceSession(str(model_repository / "mlp/1/model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got, session.run(None, {"input": x})[0], rtol=1e-5, atol=1e-6)


def test_typed_contents_give_the_same_answer_as_raw(stub) -> None:
    x = np.arange(2 * 64, dtype=np.float32).reshape(2, 64) / 100
    typed = pb.ModelInferRequest(
        model_name="mlp",
        inputs=[
            Tensor(
                name="input", datatype="FP32", shape=[2, 64], contents=pb.InferTensorContents(fp32_contents=x.ravel())
            )
        ],
    )
    a = stub.ModelInfer(typed).raw_output_contents[0]
    b = stub.ModelInfer(raw_request("mlp", input=x)).raw_output_contents[0]
    assert a == b


def test_fp16_tensors(stub) -> None:
    x = np.array([[0.5, 1.5, -2.0, 3.25]], dtype=np.float16)
    response = stub.ModelInfer(raw_request("fp16", input=x))
    assert response.outputs[0].datatype == "FP16"
    np.testing.assert_array_equal(np.frombuffer(response.raw_output_contents[0], np.float16).reshape(1, 4), x * 2)


def test_bytes_tensors_raw_and_typed(stub) -> None:
    items = ["héllo".encode(), b"", b"x" * 300, b"end"]
    raw = b"".join(struct.pack("<I", len(item)) + item for item in items)
    request = pb.ModelInferRequest(model_name="bytes", inputs=[Tensor(name="input", datatype="BYTES", shape=[2, 2])])
    request.raw_input_contents.append(raw)
    response = stub.ModelInfer(request)
    assert response.outputs[0].datatype == "BYTES" and list(response.outputs[0].shape) == [2, 2]
    assert response.raw_output_contents[0] == raw
    typed = pb.ModelInferRequest(
        model_name="bytes",
        inputs=[
            Tensor(name="input", datatype="BYTES", shape=[2, 2], contents=pb.InferTensorContents(bytes_contents=items))
        ],
    )
    assert stub.ModelInfer(typed).raw_output_contents[0] == raw


def test_bool_and_int32_with_two_inputs_and_output_selection(stub) -> None:
    flags = np.array([[True, False, True]])
    out = stub.ModelInfer(raw_request("bool", input=flags))
    assert np.frombuffer(out.raw_output_contents[0], np.bool_).tolist() == [False, True, False]
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 3, dtype=np.int32)
    request = raw_request("add_sub", a=a, b=b)
    request.outputs.add(name="difference")
    response = stub.ModelInfer(request)
    assert [o.name for o in response.outputs] == ["difference"] and len(response.raw_output_contents) == 1
    np.testing.assert_array_equal(np.frombuffer(response.raw_output_contents[0], np.int32).reshape(1, 16), a - b)


def test_stream_answers_stream_messages_in_order_with_errors_in_stream(stub) -> None:
    good = [raw_request("mlp", input=np.full((1, 64), i, np.float32)) for i in range(6)]
    for i, request in enumerate(good):
        request.id = f"s{i}"
    bad = pb.ModelInferRequest(model_name="no-such-model", id="bad")
    answers = list(stub.ModelStreamInfer(iter([*good[:3], bad, *good[3:]])))
    assert len(answers) == 7
    assert all(isinstance(a, pb.ModelStreamInferResponse) for a in answers)
    assert [a.infer_response.id for a in answers if not a.error_message] == [f"s{i}" for i in range(6)]
    assert answers[3].error_message.startswith("NOT_FOUND") and "no-such-model" in answers[3].error_message


def test_repository_index_unload_and_load(stub) -> None:
    index = {(m.name, m.version): m.state for m in stub.RepositoryIndex(pb.RepositoryIndexRequest()).models}
    assert index[("bool", "1")] == "READY"
    stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="bool"))
    assert not stub.ModelReady(pb.ModelReadyRequest(name="bool")).ready
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(raw_request("bool", input=np.ones((1, 3), np.bool_)))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and "not ready" in caught.value.details()
    stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="bool"))
    assert stub.ModelReady(pb.ModelReadyRequest(name="bool")).ready
    stub.ModelInfer(raw_request("bool", input=np.ones((1, 3), np.bool_)))
    with pytest.raises(grpc.RpcError) as missing:
        stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="ghost"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_resolves_the_method_symbol_ghz_asks_for(standalone: ServiceProcess) -> None:
    with grpc.insecure_channel(standalone.address) as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="inference.GRPCInferenceService.ModelInfer"
        )
        (answer,) = list(reflection.ServerReflectionInfo(iter([request])))
    assert answer.HasField("file_descriptor_response"), answer
    assert any(b"GRPCInferenceService" in proto for proto in answer.file_descriptor_response.file_descriptor_proto)


def test_metrics_endpoint_counts_per_model_and_version(stub, standalone: ServiceProcess) -> None:
    import pathlib
    import urllib.request

    stub.ModelInfer(raw_request("mlp", input=np.ones((1, 64), np.float32)))
    port_files = list(pathlib.Path(standalone.home).glob("*.port.metrics"))
    assert port_files, "metrics port file missing"
    text = urllib.request.urlopen(f"http://127.0.0.1:{port_files[0].read_text()}/metrics", timeout=5).read().decode()
    assert 'aiaas_inference_model_requests_total{model="mlp",outcome="success",version="1"}' in text
    assert 'aiaas_inference_model_batch_size_count{model="mlp",version="1"}' in text


GHZ = Path(__file__).resolve().parents[3] / "bench" / "ghz"


@pytest.mark.parametrize("name", ["mlp_raw", "mlp_typed", "transformer_raw"])
def test_ghz_request_files_are_answered(stub, name: str) -> None:
    request = json_format.Parse((GHZ / f"{name}.json").read_text(), pb.ModelInferRequest())
    response = stub.ModelInfer(request, timeout=10)
    assert list(response.outputs[0].shape) == [1, 10] and response.id == request.id
    if name.endswith("raw"):
        assert pb.ModelInferRequest.FromString((GHZ / f"{name}.bin").read_bytes()) == request
