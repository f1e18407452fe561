"""Messages <-> the service's records: the only place serialization's own data meets generated code."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

from aiaas.common.v1 import common_pb2
from aiaas.serialization.v1 import serialization_pb2 as pb
from aiaas_services.runtime.messages import same_named
from aiaas_services.serialization.pipeline.limits import Tolerance
from aiaas_services.serialization.pipeline.proof import Report
from aiaas_services.serialization.pipeline.validate import TensorInfo
from aiaas_services.serialization.records import (
    Calibration,
    EventRecord,
    ExportRequest,
    ExportSpec,
    Imported,
    ImportHeader,
    ImportPart,
    JobRecord,
    Ref,
    VariantRecord,
)

METHODS = {
    common_pb2.CALIBRATION_METHOD_UNSPECIFIED: "minmax",
    common_pb2.CALIBRATION_METHOD_MINMAX: "minmax",
    common_pb2.CALIBRATION_METHOD_ENTROPY: "entropy",
    common_pb2.CALIBRATION_METHOD_PERCENTILE: "percentile",
}
METHOD_NUMBERS = {"minmax": common_pb2.CALIBRATION_METHOD_MINMAX} | {
    name: number for number, name in METHODS.items() if number != common_pb2.CALIBRATION_METHOD_MINMAX
}


def ref_from(message: common_pb2.VersionRef) -> Ref:
    selector = message.WhichOneof("selector")
    return Ref(
        message.model_name,
        int(message.version) if selector == "version" else 0,
        message.alias if selector == "alias" else "",
    )


def ref_to(ref: Ref) -> common_pb2.VersionRef:
    message = common_pb2.VersionRef(model_name=ref.model_name)
    if ref.version:
        message.version = ref.version
    elif ref.alias:
        message.alias = ref.alias
    return message


def state_name(state: int) -> str:
    """JOB_STATE_RUNNING -> "RUNNING" ("" for unspecified; a number we do not know matches no job)."""
    if not state:
        return ""
    try:
        name: str = common_pb2.JobState.Name(state)
        return name.removeprefix("JOB_STATE_")
    except ValueError:
        return f"UNKNOWN_{state}"


def state_number(state: str) -> common_pb2.JobState:
    number: common_pb2.JobState = common_pb2.JobState.Value(f"JOB_STATE_{state}")
    return number


def spec_from(options: common_pb2.ExportOptions) -> ExportSpec:
    calibration = options.calibration
    return ExportSpec(
        variants=tuple(options.variants),
        opset=options.opset,
        calibration=Calibration(
            method=METHODS.get(calibration.method, "minmax"),
            per_channel=calibration.per_channel,
            num_samples=calibration.num_samples,
            data=ref_from(calibration.calibration_data),
            artifact=calibration.calibration_artifact,
        ),
        pruning_sparsity=options.pruning_sparsity,
        tolerances={
            name: Tolerance(**same_named(t, *(f.name for f in dataclasses.fields(Tolerance))))
            for name, t in options.tolerances.items()
        },
        reduce_range=options.reduce_range,
        set_alias=options.set_alias,
        fixed_quantization=options.fixed_quantization,
        keep_fp32=options.keep_fp32,
        structured_pruning=options.structured_pruning,
        unknown_method=calibration.method if calibration.method not in METHODS else 0,
    )


def spec_to(spec: ExportSpec) -> common_pb2.ExportOptions:
    calibration = common_pb2.CalibrationOptions(
        method=METHOD_NUMBERS.get(spec.calibration.method, common_pb2.CALIBRATION_METHOD_UNSPECIFIED),
        per_channel=spec.calibration.per_channel,
        num_samples=spec.calibration.num_samples,
        calibration_artifact=spec.calibration.artifact,
    )
    if spec.calibration.data.model_name:
        calibration.calibration_data.CopyFrom(ref_to(spec.calibration.data))
    return common_pb2.ExportOptions(
        variants=list(spec.variants),
        opset=spec.opset,
        calibration=calibration,
        pruning_sparsity=spec.pruning_sparsity,
        tolerances={name: common_pb2.VariantTolerance(**t.as_dict()) for name, t in spec.tolerances.items()},
        reduce_range=spec.reduce_range,
        set_alias=spec.set_alias,
        fixed_quantization=spec.fixed_quantization,
        keep_fp32=spec.keep_fp32,
        structured_pruning=spec.structured_pruning,
    )


def request_from(request: pb.StartExportJobRequest) -> ExportRequest:
    return ExportRequest(
        source=ref_from(request.source),
        spec=spec_from(request.options),
        request_id=request.request_id,
        target_model_name=request.target_model_name,
        training_job_id=request.training_job_id,
    )


# VariantReport, OutputProof and QuantizationCandidate fields: the domain Report's (and its parts') own.
_REPORT_FIELDS = [
    "variant",
    "accepted",
    "reason",
    "max_abs_error",
    "mean_abs_error",
    "cosine_similarity",
    "top1_agreement",
    "metric_name",
    "metric_value",
    "reference_metric_value",
    "size_bytes",
    "latency_ms_batch1",
    "latency_ms_batch32",
    "preferred_provider",
    "settings",
    "num_samples",
    "worst_row_cosine",
    "p1_cosine",
    "max_rel_error",
    "worst_rows",
    "failed",
    "limits",
    "latency_vs_fp32_batch32",
]
_OUTPUT_FIELDS = ["name", "worst_row_cosine", "p1_cosine", "max_abs_error", "max_rel_error", "worst_rows"]
_CANDIDATE_FIELDS = ["settings", "passed", "reason", "latency_ms_batch32", "worst_row_cosine"]


def report_to(report: Report, registered: Ref = Ref()) -> pb.VariantReport:
    """A variant's proof as the wire message."""
    message = pb.VariantReport(
        **same_named(report, *_REPORT_FIELDS),
        outputs=[pb.OutputProof(**same_named(o, *_OUTPUT_FIELDS)) for o in report.outputs],
        candidates=[pb.QuantizationCandidate(**same_named(c, *_CANDIDATE_FIELDS)) for c in report.candidates],
    )
    if registered.model_name:
        message.registered.CopyFrom(ref_to(registered))
    return message


def variant_to(variant: VariantRecord) -> pb.VariantReport:
    return report_to(variant.report, variant.registered)


def job_to(job: JobRecord) -> pb.ExportJob:
    message = pb.ExportJob(
        job_id=job.job_id,
        state=state_number(job.state),
        source=ref_to(job.source),
        options=spec_to(job.spec),
        reports=[variant_to(r) for r in job.reports],
        failure_reason=job.failure_reason,
        trace_id=job.trace_id,
        training_job_id=job.training_job_id,
        target_model_name=job.target_model_name,
    )
    for field, value in (
        ("created_at", job.created_at),
        ("started_at", job.started_at),
        ("finished_at", job.finished_at),
    ):
        if value:
            getattr(message, field).FromNanoseconds(int(value * 1e9))
    return message


def event_to(event: EventRecord) -> pb.WatchExportJobResponse:
    message = pb.WatchExportJobResponse(sequence=event.sequence, state=state_number(event.state))
    message.time.FromNanoseconds(int(event.time * 1e9))
    if event.kind == "variant" and event.variant is not None:
        message.variant.CopyFrom(variant_to(event.variant))
    elif event.kind == "message":
        message.message = event.text
    else:
        message.state_changed = event.text
    return message


async def import_parts(requests: AsyncIterator[pb.ImportModelRequest]) -> AsyncIterator[ImportPart]:
    """An ImportModel stream as records, in order."""
    async for message in requests:
        kind = message.WhichOneof("part") or ""
        if kind == "header":
            h = message.header
            header = ImportHeader(
                h.model_name,
                h.description,
                dict(h.tags),
                h.size_bytes,
                h.task,
                h.format,
                h.calibration_npz,
                h.calibration_text,
            )
            yield ImportPart(kind, header=header)
        else:
            yield ImportPart(kind, chunk=message.chunk, sha256=message.sha256)


def tensors_to(tensors: tuple[TensorInfo, ...]) -> list[common_pb2.TensorSpec]:
    return [common_pb2.TensorSpec(name=t.name, datatype=t.datatype, shape=t.shape) for t in tensors]


def imported_to(imported: Imported) -> pb.ImportModelResponse:
    return pb.ImportModelResponse(
        registered=ref_to(imported.registered),
        signature=common_pb2.Signature(inputs=tensors_to(imported.inputs), outputs=tensors_to(imported.outputs)),
        opset=imported.opset,
        reference_rows=imported.reference_rows,
    )
