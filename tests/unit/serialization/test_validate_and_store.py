"""Import validation on crafted files, the job store's event numbering, and request-option checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from aiaas.common.v1 import common_pb2
from aiaas.serialization.v1 import serialization_pb2 as pb
from aiaas_services.runtime.errors import InvalidArgument
from aiaas_services.serialization import codec
from aiaas_services.serialization.options import pipeline_options
from aiaas_services.serialization.pipeline import proof
from aiaas_services.serialization.pipeline.validate import InvalidModel, Limits, validate_bytes
from aiaas_services.serialization.records import (
    QUEUED,
    RUNNING,
    ExportRequest,
    ExportSpec,
    JobRecord,
    Ref,
    VariantRecord,
)
from aiaas_services.serialization.settings import SerializationSettings
from aiaas_services.serialization.store import JobStore


def model_bytes(weight: TensorProto, opset: int = 17, node_domain: str = "") -> bytes:
    node = helper.make_node("MatMul" if not node_domain else "Custom", ["input", "w"], ["output"], domain=node_domain)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4])],
        [weight],
    )
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(node_domain, 1)] if node_domain else [])
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def good_weight() -> TensorProto:
    return helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.eye(4, dtype=np.float32).reshape(-1))


def test_a_clean_model_passes_and_is_described() -> None:
    _model, info = validate_bytes(model_bytes(good_weight()), Limits())
    assert info.opset == 17
    assert info.inputs[0].name == "input" and info.inputs[0].shape == (-1, 4) and info.inputs[0].datatype == "FP32"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x0a\xff\xff\xff", "truncated or malformed"),
        (b"", "holds no graph"),
        (model_bytes(good_weight(), opset=8), "opset 8"),
        (model_bytes(good_weight(), node_domain="com.evil"), "com.evil"),
    ],
)
def test_broken_files_are_refused(data: bytes, words: str) -> None:
    with pytest.raises(InvalidModel, match=words):
        validate_bytes(data, Limits())


@pytest.mark.parametrize(
    ("location", "words"),
    [("../../etc/passwd", "outside the model's folder"), ("/etc/passwd", "outside"), ("data.bin", "external file")],
)
def test_external_data_is_refused_without_being_opened(location: str, words: str) -> None:
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 4], data_location=TensorProto.EXTERNAL)
    weight.external_data.add(key="location", value=location)
    with pytest.raises(InvalidModel, match=words):
        validate_bytes(model_bytes(weight), Limits())


def test_declared_sizes_are_checked_before_allocation() -> None:
    huge = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[100_000, 100_000], raw_data=b"\0" * 8)
    with pytest.raises(InvalidModel, match=r"37\.3 GiB"):
        validate_bytes(model_bytes(huge), Limits())
    short = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 4], raw_data=b"\0" * 8)
    with pytest.raises(InvalidModel, match="declares 64 bytes but holds 8"):
        validate_bytes(model_bytes(short), Limits())


def test_store_numbers_events_and_is_idempotent(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    request = ExportRequest(source=Ref("src", 2), request_id="r1")
    job, created = store.create(JobRecord("", "", Ref("src", 2), ExportSpec(), "m"), request, {"traceparent": "x"})
    again, created_again = store.create(JobRecord("", "", Ref("src", 2), ExportSpec()), request, {})
    assert created and not created_again and again.job_id == job.job_id and again.target_model_name == "m"

    def run(j: JobRecord) -> None:
        j.state = RUNNING

    store.update(job.job_id, run, ("state_changed", "running"), only_if=(QUEUED,))
    store.note(job.job_id, "exporting")
    # a transition guarded on QUEUED no longer applies
    assert store.update(job.job_id, run, ("message", "x"), only_if=(QUEUED,)) is None
    events = store.events(job.job_id)
    assert [e.sequence for e in events] == [1, 2, 3]
    assert [e.state for e in events] == [QUEUED, RUNNING, RUNNING]
    assert [e.sequence for e in store.events(job.job_id, after_sequence=2)] == [3]
    assert store.request_of(job.job_id) == (request, {"traceparent": "x"})
    assert store.ids_in_state(RUNNING) == [job.job_id]
    store.record_version(job.job_id, "m", 3)
    assert store.versions_of(job.job_id) == [("m", 3)]


def test_records_round_trip_through_the_store_and_the_codec(tmp_path: Path) -> None:
    options = common_pb2.ExportOptions(
        variants=["fp32", "int8-static"],
        opset=17,
        calibration=common_pb2.CalibrationOptions(
            method=common_pb2.CALIBRATION_METHOD_ENTROPY,
            per_channel=True,
            num_samples=64,
            calibration_data=common_pb2.VersionRef(model_name="data", alias="latest"),
            calibration_artifact="c.npz",
        ),
        tolerances={"int8-static": common_pb2.VariantTolerance(min_worst_row_cosine=0.97, max_metric_drop=0.02)},
        set_alias="production",
        fixed_quantization=True,
        keep_fp32="sensitive",
    )
    request = codec.request_from(
        pb.StartExportJobRequest(source=common_pb2.VersionRef(model_name="m", alias="best"), options=options)
    )
    assert request.source == Ref("m", 0, "best") and request.spec.calibration.data == Ref("data", 0, "latest")
    assert codec.spec_to(request.spec) == options
    store = JobStore(tmp_path / "jobs.db")
    job, _ = store.create(JobRecord("", "", Ref("m", 4), request.spec, "m-onnx"), request, {})
    report = proof.measure("fp32", {"o": np.eye(3)}, {"o": np.eye(3)}, "", None, None)
    report.candidates = [proof.Candidate({"per_channel": "true"}, True, "", 1.5, 0.99)]

    def add(j: JobRecord) -> None:
        j.reports.append(VariantRecord(report, Ref("m-onnx", 1)))

    store.update(job.job_id, add, VariantRecord(report, Ref("m-onnx", 1)))
    message = codec.job_to(store.get(job.job_id) or job)
    assert message.state == common_pb2.JOB_STATE_QUEUED and message.options == options
    assert message.source == common_pb2.VersionRef(model_name="m", version=4)
    assert message.reports[0].registered.version == 1 and message.reports[0].worst_row_cosine == 1.0
    assert message.reports[0].candidates[0].latency_ms_batch32 == 1.5
    assert message.created_at.seconds > 0
    event = codec.event_to(store.events(job.job_id)[-1])
    assert event.WhichOneof("event") == "variant" and event.variant.outputs[0].name == "o"


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (common_pb2.ExportOptions(variants=["int3"]), "unknown variant"),
        (common_pb2.ExportOptions(opset=7), "opset 7"),
        (common_pb2.ExportOptions(pruning_sparsity=1.5), "pruning_sparsity"),
        (common_pb2.ExportOptions(tolerances={"bf16": common_pb2.VariantTolerance()}), "bf16"),
        (common_pb2.ExportOptions(tolerances={"fp16": common_pb2.VariantTolerance(max_abs_error=-1)}), "non-negative"),
        (
            common_pb2.ExportOptions(tolerances={"fp16": common_pb2.VariantTolerance(min_worst_row_cosine=1.5)}),
            "at most 1",
        ),
        (common_pb2.ExportOptions(keep_fp32="everything"), "keep_fp32"),
    ],
)
def test_bad_options_are_invalid_arguments(options: common_pb2.ExportOptions, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        pipeline_options(codec.spec_from(options), SerializationSettings())


def test_reduce_range_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import aiaas_services.serialization.options as module

    follow = SerializationSettings(reduce_range_without_vnni=True)  # opt-in: the INT8 search tries both anyway
    monkeypatch.setattr(module, "cpu_has_vnni", lambda: False)
    assert pipeline_options(ExportSpec(), follow).quantization.reduce_range
    assert not pipeline_options(ExportSpec(), SerializationSettings()).quantization.reduce_range
    monkeypatch.setattr(module, "cpu_has_vnni", lambda: True)
    assert not pipeline_options(ExportSpec(), follow).quantization.reduce_range
    assert pipeline_options(ExportSpec(reduce_range=True), SerializationSettings()).quantization.reduce_range
    defaults = pipeline_options(ExportSpec(), SerializationSettings())
    assert defaults.variants == ("fp32",) and defaults.opset == 18 and defaults.quantization.method == "minmax"
