"""The proof gate on a real pretrained transformer (MiniLM exported with token-id inputs) and on oddly
shaped models, through the real services: per-row proof, data checked against the signature, INT8 chosen
by proof, and failures that are whole and visible."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from aiaas.client.registry import DATASET, READY, REJECTED, SyncRegistryClient
from aiaas.common.v1 import common_pb2
from aiaas.serialization.v1 import serialization_pb2 as pb
from aiaas.serialization.v1 import serialization_pb2_grpc
from tests.integration.serialization.test_import import import_requests
from tests.support.minilm import SENTENCES, ExportedMiniLM
from tests.support.processes import ServiceProcess

Stub = serialization_pb2_grpc.SerializationServiceStub
# The first test pays for the session's MiniLM export and the INT8 search over it (minutes on 2 busy cores).
pytestmark = pytest.mark.timeout(1500)


def run_job(serialization: Stub, request: pb.StartExportJobRequest, timeout: float = 1200) -> pb.ExportJob:
    job = serialization.StartExportJob(request, timeout=60).job
    list(serialization.WatchExportJob(pb.WatchExportJobRequest(job_id=job.job_id), timeout=timeout))
    return serialization.GetExportJob(pb.GetExportJobRequest(job_id=job.job_id), timeout=10).job


@pytest.fixture(scope="module")
def minilm_refs(
    serialization: Stub, registry: SyncRegistryClient, minilm: ExportedMiniLM
) -> tuple[common_pb2.VersionRef, common_pb2.VersionRef]:
    """MiniLM imported as a user brings it (no task) and its sentences uploaded as a data set."""
    response = serialization.ImportModel(import_requests(minilm.onnx_path.read_bytes(), "minilm"), timeout=120)
    data = registry.push("minilm-sentences", {"calibration.npz": minilm.npz_path}, format=DATASET)
    return response.registered, common_pb2.VersionRef(model_name=data.model_name, version=data.version)


@pytest.fixture(scope="module")
def minilm_job(serialization: Stub, minilm_refs: tuple[common_pb2.VersionRef, common_pb2.VersionRef]) -> pb.ExportJob:
    """fp32, fp16 and the searched int8-dynamic, proven on the 64 sentences."""
    model, data = minilm_refs
    options = common_pb2.ExportOptions(variants=["fp32", "fp16", "int8-dynamic"])
    options.calibration.calibration_data.CopyFrom(data)
    return run_job(serialization, pb.StartExportJobRequest(source=model, options=options, target_model_name="minilm-x"))


def test_minilm_fp32_and_fp16_pass_with_worst_row_cosine(
    minilm_job: pb.ExportJob, registry: SyncRegistryClient
) -> None:
    assert minilm_job.state == common_pb2.JOB_STATE_SUCCEEDED, minilm_job.failure_reason
    reports = {r.variant: r for r in minilm_job.reports}
    for name in ("fp32", "fp16"):
        report = reports[name]
        assert report.accepted, (name, report.reason)
        assert report.worst_row_cosine >= 0.999 and report.p1_cosine >= report.worst_row_cosine
        assert report.num_samples == len(SENTENCES) and len(report.worst_rows) == 5
        assert report.outputs[0].name == "embedding" and report.limits["min_worst_row_cosine"] == (
            0.9999 if name == "fp32" else 0.999
        )
        assert "calibration.npz (64 rows" in report.settings["proof_data"]
        version = registry.get_version((report.registered.model_name, report.registered.version))
        assert version.status == READY and version.metrics["worst_row_cosine"] == report.worst_row_cosine
        assert [t.name for t in version.signature.inputs] == ["input_ids", "attention_mask", "token_type_ids"]


def test_minilm_int8_is_chosen_by_proof(minilm_job: pb.ExportJob, registry: SyncRegistryClient) -> None:
    reports = {r.variant: r for r in minilm_job.reports}
    int8 = reports["int8-dynamic"]
    assert len(int8.candidates) >= 3
    settings = {(c.settings["per_channel"], c.settings["keep_fp32"]) for c in int8.candidates}
    assert ("false", "none") in settings and ("true", "none") in settings  # per-tensor and per-channel tried
    assert ("true", "sensitive") in settings and ("true", "sensitive+ffn") in settings
    for candidate in int8.candidates:
        assert candidate.reason or candidate.passed  # every loser says why
    if int8.accepted:
        chosen = [c for c in int8.candidates if not c.reason]
        assert len(chosen) == 1 and chosen[0].passed
        assert int8.worst_row_cosine >= 0.98 and int8.p1_cosine >= 0.99
        assert all(c.latency_ms_batch32 >= chosen[0].latency_ms_batch32 for c in int8.candidates if c.passed)
        # its speed against FP32 at batch 32 is measured side by side and reported (the bench records it;
        # a timed assertion here would be noise on a shared machine)
        assert int8.latency_vs_fp32_batch32 > 0
        assert int8.settings["per_channel"] == chosen[0].settings["per_channel"]
    else:
        assert int8.reason.startswith("no INT8 setting passed the proof")
        assert all(not c.passed and c.reason for c in int8.candidates)
        version = registry.get_version((int8.registered.model_name, int8.registered.version))
        assert version.status == REJECTED


def test_minilm_per_tensor_7bit_int8_is_rejected_naming_the_worst_sentences(
    serialization: Stub, minilm_refs: tuple[common_pb2.VersionRef, common_pb2.VersionRef]
) -> None:
    model, data = minilm_refs
    options = common_pb2.ExportOptions(
        variants=["int8-dynamic"], reduce_range=True, fixed_quantization=True, calibration={"per_channel": False}
    )
    options.calibration.calibration_data.CopyFrom(data)
    job = run_job(serialization, pb.StartExportJobRequest(source=model, options=options, target_model_name="minilm-7"))
    assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.failure_reason
    report = job.reports[0]
    assert not report.accepted and not report.candidates
    assert report.settings["reduce_range"] == "true" and report.settings["per_channel"] == "false"
    assert report.worst_row_cosine < 0.98 and "worst-row cosine" in report.reason
    worst = [SENTENCES[i] for i in report.worst_rows]
    assert f"worst rows {', '.join(map(str, report.worst_rows))}" in report.reason
    assert len(set(worst)) == 5


def test_no_data_proves_parity_on_generated_inputs_and_refuses_int8(
    serialization_process: ServiceProcess,
    minilm_refs: tuple[common_pb2.VersionRef, common_pb2.VersionRef],
) -> None:
    model, _ = minilm_refs
    result = subprocess.run(
        [
            *(sys.executable, "-m", "aiaas.cli.main", "export", f"{model.model_name}:{model.version}"),
            *("--variants", "fp32,int8-dynamic", "--target-model", "minilm-nodata"),
            *("--target", serialization_process.address),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 4, result.stderr  # a requested variant was not accepted
    lines = result.stdout.splitlines()
    assert lines[3].split()[:2] == ["fp32", "READY"]
    assert lines[4].split()[:2] == ["int8-dynamic", "REJECTED"]
    assert "error: int8-dynamic REJECTED: not proven: int8-dynamic needs representative data" in result.stderr


def test_mismatched_calibration_data_names_the_input(
    serialization: Stub,
    registry: SyncRegistryClient,
    minilm: ExportedMiniLM,
    minilm_refs: tuple[common_pb2.VersionRef, common_pb2.VersionRef],
    tmp_path: Path,
) -> None:
    model, _ = minilm_refs
    wrong = tmp_path / "calibration.npz"
    np.savez(wrong, input_ids=minilm.feed["input_ids"], mask=minilm.feed["attention_mask"])
    data = registry.push("minilm-wrong", {"calibration.npz": wrong}, format=DATASET)
    options = common_pb2.ExportOptions(variants=["int8-static"])
    options.calibration.calibration_data.CopyFrom(
        common_pb2.VersionRef(model_name=data.model_name, version=data.version)
    )
    with pytest.raises(grpc.RpcError) as error:
        serialization.StartExportJob(pb.StartExportJobRequest(source=model, options=options), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no array for input 'attention_mask'" in error.value.details()


def odd_model() -> bytes:
    """Two inputs with awkward names and types (int32 ids, bool mask), a dynamic sequence axis."""
    rng = np.random.default_rng(0)
    table = helper.make_tensor("table", TensorProto.FLOAT, [100, 16], rng.standard_normal(1600).astype(np.float32))
    weight = helper.make_tensor("w", TensorProto.FLOAT, [16, 8], rng.standard_normal(128).astype(np.float32))
    nodes = [
        helper.make_node("Gather", ["table", "token ids:0"], ["emb"]),
        helper.make_node("Cast", ["keep/mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["m", "axes"], ["m3"]),
        helper.make_node("Mul", ["emb", "m3"], ["masked"]),
        helper.make_node("MatMul", ["masked", "w"], ["projected"]),
        helper.make_node("ReduceMean", ["projected", "axes1"], ["pooled.out"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "odd",
        [
            helper.make_tensor_value_info("token ids:0", TensorProto.INT32, ["n", "len"]),
            helper.make_tensor_value_info("keep/mask", TensorProto.BOOL, ["n", "len"]),
        ],
        [helper.make_tensor_value_info("pooled.out", TensorProto.FLOAT, ["n", 8])],
        [
            table,
            weight,
            helper.make_tensor("axes", TensorProto.INT64, [1], [2]),
            helper.make_tensor("axes1", TensorProto.INT64, [1], [1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_multi_input_oddly_named_model_exports(
    serialization: Stub, registry: SyncRegistryClient, tmp_path: Path
) -> None:
    response = serialization.ImportModel(import_requests(odd_model(), "odd-inputs"), timeout=60)
    rng = np.random.default_rng(1)
    npz = tmp_path / "calibration.npz"
    np.savez(npz, **{"token ids:0": rng.integers(0, 100, (48, 9)), "keep/mask": rng.integers(0, 2, (48, 9)) > 0})
    data = registry.push("odd-data", {"calibration.npz": npz}, format=DATASET)
    options = common_pb2.ExportOptions(variants=["fp32", "fp16", "int8-dynamic", "int8-static"])
    options.calibration.calibration_data.CopyFrom(
        common_pb2.VersionRef(model_name=data.model_name, version=data.version)
    )
    job = run_job(serialization, pb.StartExportJobRequest(source=response.registered, options=options))
    assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.failure_reason
    reports = {r.variant: r for r in job.reports}
    assert list(reports) == ["fp32", "fp16", "int8-dynamic", "int8-static"]
    for report in reports.values():
        assert not report.failed, (report.variant, report.reason)
        assert "internal error" not in report.reason
        assert report.registered.model_name and report.num_samples == 48
    assert reports["fp32"].accepted and reports["fp16"].accepted, reports["fp16"].reason
    assert reports["int8-static"].candidates  # searched, with the table
