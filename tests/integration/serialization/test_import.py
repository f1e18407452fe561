"""ImportModel against real services: a clean model round-trips and can be quantized (with and without
calibration data); hostile or broken files are refused with INVALID_ARGUMENT and the service stays up."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TypeAlias

import grpc
import numpy as np
import onnx
import pytest
import safetensors.torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from onnx import TensorProto, helper

from aiaas.client.registry import DATASET, ONNX, READY, SyncRegistryClient
from aiaas.common.v1 import common_pb2
from aiaas.serialization.v1 import serialization_pb2 as pb
from aiaas.serialization.v1 import serialization_pb2_grpc
from aiaas_services.datasets import load_splits
from aiaas_services.modelzoo import build_module
from tests.integration.serialization.checkpoints import train_checkpoint
from tests.support.models import onnx_bytes
from tests.support.processes import ServiceProcess

Stub: TypeAlias = serialization_pb2_grpc.SerializationServiceStub


def import_requests(
    data: bytes, name: str, task: str = "", digest: str | None = None, size: int | None = None
) -> Iterator[pb.ImportModelRequest]:
    header = pb.ImportHeader(model_name=name, task=task, size_bytes=len(data) if size is None else size)
    yield pb.ImportModelRequest(header=header)
    for start in range(0, len(data), 64 * 1024):
        yield pb.ImportModelRequest(chunk=data[start : start + 64 * 1024])
    yield pb.ImportModelRequest(sha256=digest or hashlib.sha256(data).hexdigest())


@pytest.fixture(scope="module")
def digits_onnx(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A trained digits MLP exported by plain torch.onnx, as a user would bring it."""
    folder = train_checkpoint("mlp", tmp_path_factory.mktemp("import-mlp"), epochs=10)
    module = build_module(json.loads((folder / "spec.json").read_text()))
    module.load_state_dict(safetensors.torch.load_file(folder / "weights.safetensors"))
    return onnx_bytes(module.eval())


def test_import_round_trips_and_quantizes(
    serialization: Stub, registry: SyncRegistryClient, digits_onnx: bytes, tmp_path: Path
) -> None:
    response = serialization.ImportModel(
        import_requests(digits_onnx, "imported-digits", task="classification"), timeout=60
    )
    assert response.opset == 17
    assert [t.name for t in response.signature.inputs] == ["input"]
    assert list(response.signature.inputs[0].shape) == [-1, 64]
    version = registry.get_version((response.registered.model_name, response.registered.version))
    assert version.status == READY and version.format == ONNX and version.variant == "fp32"
    assert version.tags["task"] == "classification"
    assert registry.download_bytes((version.model_name, version.version), "model.onnx") == digits_onnx

    # without data: fp32 parity is checked on generated inputs; INT8 is not proven on them, so REJECTED
    options = common_pb2.ExportOptions(variants=["fp32", "int8-dynamic", "int8-static"])
    request = pb.StartExportJobRequest(source=response.registered, options=options)
    job = serialization.StartExportJob(request, timeout=30).job
    list(serialization.WatchExportJob(pb.WatchExportJobRequest(job_id=job.job_id), timeout=120))
    job = serialization.GetExportJob(pb.GetExportJobRequest(job_id=job.job_id), timeout=10).job
    assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.failure_reason
    fp32, *int8 = job.reports
    assert fp32.accepted and fp32.settings["proof_data"].startswith("generated inputs")
    assert fp32.worst_row_cosine > 0.9999
    for report in int8:
        assert not report.accepted and report.reason.startswith(f"not proven: {report.variant} needs representative")
        assert not report.registered.model_name  # nothing deployable was made

    # with an uploaded .npz (x for calibration, y so the proof reports accuracy) int8-static is proven
    static = pb.StartExportJobRequest(
        source=response.registered, options=common_pb2.ExportOptions(variants=["int8-static"])
    )
    splits = load_splits({"sklearn": "digits"}, 0)
    npz = tmp_path / "calibration.npz"
    np.savez(npz, x=splits.x_test, y=splits.y_test)
    data = registry.push("digits-calibration", {"calibration.npz": npz}, format=DATASET)
    static.options.calibration.calibration_data.CopyFrom(
        common_pb2.VersionRef(model_name=data.model_name, version=data.version)
    )
    job = serialization.StartExportJob(static, timeout=30).job
    list(serialization.WatchExportJob(pb.WatchExportJobRequest(job_id=job.job_id), timeout=120))
    job = serialization.GetExportJob(pb.GetExportJobRequest(job_id=job.job_id), timeout=10).job
    assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.failure_reason
    report = job.reports[0]
    assert report.metric_name == "accuracy" and report.reference_metric_value > 0.9
    if report.accepted:
        assert report.reference_metric_value - report.metric_value <= 0.01 + 1e-9
        assert report.top1_agreement >= 0.99
    else:
        assert report.reason.startswith("no INT8 setting passed the proof") and report.candidates
    assert registry.get_version(
        (report.registered.model_name, report.registered.version)
    ).lineage.parent_model_name == ("imported-digits")


def _model(
    initializer: TensorProto, nodes: list[onnx.NodeProto] | None = None, domains: dict[str, int] | None = None
) -> bytes:
    graph = helper.make_graph(
        nodes or [helper.make_node("MatMul", ["input", initializer.name], ["output"])],
        "hostile",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4])],
        [initializer],
    )
    opsets = [helper.make_opsetid("", 17)] + [helper.make_opsetid(d, v) for d, v in (domains or {}).items()]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def external_data_model(location: str) -> bytes:
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 4], data_location=TensorProto.EXTERNAL)
    weight.external_data.add(key="location", value=location)
    weight.external_data.add(key="length", value="64")
    return _model(weight)


def huge_declared_tensor_model() -> bytes:
    # 50000 x 50000 float32 = 10 GB declared, a few bytes on the wire
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[50_000, 50_000], raw_data=b"\0" * 16)
    return _model(weight)


def custom_domain_model() -> bytes:
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.ones(16, np.float32))
    node = helper.make_node("Exfiltrate", ["input", "w"], ["output"], domain="com.evil")
    return _model(weight, [node], {"com.evil": 1})


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("truncated", "truncated or malformed"),
        ("etc-passwd", "outside the model's folder"),
        ("external-sibling", "external file"),
        ("10gb-tensor", "GiB"),
        ("custom-domain", "com.evil"),
        ("not-onnx", "truncated or malformed"),
        ("short-stream", "truncated upload"),
        ("old-opset", "opset 9"),
    ],
)
def test_hostile_imports_are_refused(
    serialization: Stub, serialization_process: ServiceProcess, digits_onnx: bytes, case: str, words: str
) -> None:
    size = None
    if case == "truncated":
        data = digits_onnx[: len(digits_onnx) // 2]
    elif case == "etc-passwd":
        data = external_data_model("../../etc/passwd")
    elif case == "external-sibling":
        data = external_data_model("weights.bin")
    elif case == "10gb-tensor":
        data = huge_declared_tensor_model()
    elif case == "custom-domain":
        data = custom_domain_model()
    elif case == "not-onnx":
        data = b"\xff\xfe this is not a protobuf \x00\x01" * 10
    elif case == "short-stream":
        data, size = digits_onnx, len(digits_onnx) + 1000
    else:
        model = onnx.load_from_string(digits_onnx)
        model.opset_import[0].version = 9
        data = model.SerializeToString()
    with pytest.raises(grpc.RpcError) as error:
        serialization.ImportModel(import_requests(data, f"hostile-{case}", size=size), timeout=60)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
    assert words in error.value.details()
    with grpc.insecure_channel(serialization_process.address) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.SERVING


def test_digest_mismatch_and_protocol_errors(serialization: Stub, digits_onnx: bytes) -> None:
    with pytest.raises(grpc.RpcError) as error:
        serialization.ImportModel(import_requests(digits_onnx, "bad-digest", digest="0" * 64), timeout=30)
    assert "sha256 mismatch" in error.value.details()
    with pytest.raises(grpc.RpcError) as error:
        serialization.ImportModel(iter([pb.ImportModelRequest(chunk=b"abc")]), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "header" in error.value.details()
