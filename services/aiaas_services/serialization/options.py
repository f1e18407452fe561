"""Request options (``ExportOptions`` messages) -> validated pipeline options, and reports -> messages.

Used by the service to refuse bad requests up front (INVALID_ARGUMENT) and by the worker to run them.
"""

from __future__ import annotations

from aiaas.common.v1 import common_pb2
from aiaas.serialization.v1 import serialization_pb2 as pb
from aiaas_services.runtime.errors import InvalidArgument
from aiaas_services.serialization.pipeline import export, proof, run
from aiaas_services.serialization.pipeline.variants import VARIANTS, QuantizationSettings, cpu_has_vnni
from aiaas_services.serialization.settings import SerializationSettings

METHODS = {
    common_pb2.CALIBRATION_METHOD_UNSPECIFIED: "minmax",
    common_pb2.CALIBRATION_METHOD_MINMAX: "minmax",
    common_pb2.CALIBRATION_METHOD_ENTROPY: "entropy",
    common_pb2.CALIBRATION_METHOD_PERCENTILE: "percentile",
}
MAX_CALIBRATION_SAMPLES = 10_000


def pipeline_options(options: common_pb2.ExportOptions, settings: SerializationSettings) -> run.PipelineOptions:
    """Check the request's options; raises InvalidArgument with what to fix."""
    try:
        names = run.validate_variants(list(options.variants))
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc
    opset = options.opset or settings.default_opset
    if not export.MIN_OPSET <= opset <= export.MAX_OPSET:
        raise InvalidArgument(f"options.opset {opset} is outside the supported {export.MIN_OPSET}..{export.MAX_OPSET}")
    if not 0.0 <= options.pruning_sparsity < 1.0:
        raise InvalidArgument(f"options.pruning_sparsity must be in [0, 1), got {options.pruning_sparsity}")
    calibration = options.calibration
    if calibration.method not in METHODS:
        raise InvalidArgument(f"options.calibration.method {calibration.method} is not a known method")
    if not 0 <= calibration.num_samples <= MAX_CALIBRATION_SAMPLES:
        raise InvalidArgument(f"options.calibration.num_samples must be 0..{MAX_CALIBRATION_SAMPLES}")
    unknown = sorted(set(options.tolerances) - set(VARIANTS))
    if unknown:
        raise InvalidArgument(f"options.tolerances names unknown variant(s) {', '.join(unknown)}")
    tolerances = {}
    for name, limit in options.tolerances.items():
        if (
            min(limit.max_abs_error, limit.max_metric_drop, limit.min_top1_agreement) < 0
            or limit.min_top1_agreement > 1
        ):
            raise InvalidArgument(f"options.tolerances[{name}] must be non-negative (min_top1_agreement at most 1)")
        tolerances[name] = proof.Tolerance(limit.max_abs_error, limit.max_metric_drop, limit.min_top1_agreement)
    reduce_range = options.reduce_range or (settings.reduce_range_without_vnni and not cpu_has_vnni())
    quantization = QuantizationSettings(
        per_channel=calibration.per_channel,
        reduce_range=reduce_range,
        method=METHODS[calibration.method],
        num_samples=calibration.num_samples or settings.calibration_samples,
    )
    return run.PipelineOptions(
        variants=names,
        opset=opset,
        pruning_sparsity=options.pruning_sparsity,
        quantization=quantization,
        tolerances=tolerances,
        exporter=settings.exporter,
        optimization=settings.ort_optimization,
        latency_repeats=settings.latency_repeats,
        threads=settings.proof_threads,
    )


def report_message(report: proof.Report) -> pb.VariantReport:
    """The proof numbers as the wire message."""
    return pb.VariantReport(
        variant=report.variant,
        accepted=report.accepted,
        reason=report.reason,
        max_abs_error=report.max_abs_error,
        mean_abs_error=report.mean_abs_error,
        cosine_similarity=report.cosine_similarity,
        top1_agreement=report.top1_agreement,
        metric_name=report.metric_name,
        metric_value=report.metric_value,
        reference_metric_value=report.reference_metric_value,
        size_bytes=report.size_bytes,
        latency_ms_batch1=report.latency_ms_batch1,
        latency_ms_batch32=report.latency_ms_batch32,
        preferred_provider=report.preferred_provider,
        settings=report.settings,
        num_samples=report.num_samples,
    )
