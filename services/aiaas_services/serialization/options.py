"""Request options (``ExportOptions`` messages) -> validated pipeline options, and reports -> messages.

Used by the service to refuse bad requests up front (INVALID_ARGUMENT) and by the worker to run them.
"""

from __future__ import annotations

from aiaas.common.v1 import common_pb2
from aiaas.serialization.v1 import serialization_pb2 as pb
from aiaas_services.runtime.errors import InvalidArgument
from aiaas_services.serialization.pipeline import export, limits, proof, run
from aiaas_services.serialization.pipeline.variants import FP32_LEVELS, VARIANTS, QuantizationSettings, cpu_has_vnni
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
    tolerances = {name: tolerance(name, limit) for name, limit in options.tolerances.items()}
    if options.keep_fp32 and options.keep_fp32 not in FP32_LEVELS:
        raise InvalidArgument(f"options.keep_fp32 must be one of {', '.join(FP32_LEVELS)}, got {options.keep_fp32!r}")
    reduce_range = options.reduce_range or (settings.reduce_range_without_vnni and not cpu_has_vnni())
    quantization = QuantizationSettings(
        per_channel=calibration.per_channel,
        reduce_range=reduce_range,
        method=METHODS[calibration.method],
        num_samples=calibration.num_samples or settings.calibration_samples,
        keep_fp32=options.keep_fp32 or "none",
    )
    return run.PipelineOptions(
        variants=names,
        opset=opset,
        pruning_sparsity=options.pruning_sparsity,
        quantization=quantization,
        search_int8=not options.fixed_quantization,
        tolerances=tolerances,
        exporter=settings.exporter,
        optimization=settings.ort_optimization,
        latency_repeats=settings.latency_repeats,
        threads=settings.proof_threads,
    )


def tolerance(name: str, limit: common_pb2.VariantTolerance) -> limits.Tolerance:
    """One variant's overrides, checked: non-negative, and agreement/cosine limits at most 1."""
    values = limits.Tolerance(
        max_abs_error=limit.max_abs_error,
        max_metric_drop=limit.max_metric_drop,
        min_top1_agreement=limit.min_top1_agreement,
        min_worst_row_cosine=limit.min_worst_row_cosine,
        min_p1_cosine=limit.min_p1_cosine,
        max_rel_error=limit.max_rel_error,
    )
    fractions = (values.min_top1_agreement, values.min_worst_row_cosine, values.min_p1_cosine)
    if min(values.as_dict().values(), default=0.0) < 0 or max(fractions) > 1:
        raise InvalidArgument(
            f"options.tolerances[{name}] must be non-negative (agreement and cosine limits at most 1)"
        )
    return values


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
        worst_row_cosine=report.worst_row_cosine,
        p1_cosine=report.p1_cosine,
        max_rel_error=report.max_rel_error,
        worst_rows=report.worst_rows,
        outputs=[
            pb.OutputProof(
                name=o.name,
                worst_row_cosine=o.worst_row_cosine,
                p1_cosine=o.p1_cosine,
                max_abs_error=o.max_abs_error,
                max_rel_error=o.max_rel_error,
                worst_rows=o.worst_rows,
            )
            for o in report.outputs
        ],
        candidates=[
            pb.QuantizationCandidate(
                settings=c.settings,
                passed=c.passed,
                reason=c.reason,
                latency_ms_batch32=c.latency_ms_batch32,
                worst_row_cosine=c.worst_row_cosine,
            )
            for c in report.candidates
        ],
        failed=report.failed,
        latency_vs_fp32_batch32=report.latency_vs_fp32_batch32,
        limits=report.limits,
    )
