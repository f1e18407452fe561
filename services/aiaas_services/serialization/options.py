"""A request's ExportSpec -> validated pipeline options.

Used by the service to refuse bad requests up front (INVALID_ARGUMENT) and by the worker to run them.
"""

from __future__ import annotations

from aiaas_services.runtime.errors import InvalidArgument
from aiaas_services.serialization.pipeline import export, limits, run, structured
from aiaas_services.serialization.pipeline.variants import (
    CALIBRATION_METHODS,
    FP32_LEVELS,
    VARIANTS,
    QuantizationSettings,
    cpu_has_vnni,
)
from aiaas_services.serialization.records import ExportSpec
from aiaas_services.serialization.settings import SerializationSettings

MAX_CALIBRATION_SAMPLES = 10_000


def pipeline_options(spec: ExportSpec, settings: SerializationSettings) -> run.PipelineOptions:
    """Check the request's options; raises InvalidArgument with what to fix."""
    try:
        names = run.validate_variants(list(spec.variants))
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc
    opset = spec.opset or settings.default_opset
    if not export.MIN_OPSET <= opset <= export.MAX_OPSET:
        raise InvalidArgument(f"options.opset {opset} is outside the supported {export.MIN_OPSET}..{export.MAX_OPSET}")
    if not 0.0 <= spec.pruning_sparsity < 1.0:
        raise InvalidArgument(f"options.pruning_sparsity must be in [0, 1), got {spec.pruning_sparsity}")
    if not 0.0 <= spec.structured_pruning <= structured.MAX_FRACTION:
        raise InvalidArgument(
            f"options.structured_pruning must be in [0, {structured.MAX_FRACTION}] (the fraction of hidden units "
            f"removed per layer), got {spec.structured_pruning}"
        )
    calibration = spec.calibration
    if spec.unknown_method or calibration.method not in CALIBRATION_METHODS:
        raise InvalidArgument(f"options.calibration.method {spec.unknown_method} is not a known method")
    if not 0 <= calibration.num_samples <= MAX_CALIBRATION_SAMPLES:
        raise InvalidArgument(f"options.calibration.num_samples must be 0..{MAX_CALIBRATION_SAMPLES}")
    unknown = sorted(set(spec.tolerances) - set(VARIANTS))
    if unknown:
        raise InvalidArgument(f"options.tolerances names unknown variant(s) {', '.join(unknown)}")
    for name, tolerance in spec.tolerances.items():
        check_tolerance(name, tolerance)
    if spec.keep_fp32 and spec.keep_fp32 not in FP32_LEVELS:
        raise InvalidArgument(f"options.keep_fp32 must be one of {', '.join(FP32_LEVELS)}, got {spec.keep_fp32!r}")
    reduce_range = spec.reduce_range or (settings.reduce_range_without_vnni and not cpu_has_vnni())
    quantization = QuantizationSettings(
        per_channel=calibration.per_channel,
        reduce_range=reduce_range,
        method=calibration.method,
        num_samples=calibration.num_samples or settings.calibration_samples,
        keep_fp32=spec.keep_fp32 or "none",
    )
    return run.PipelineOptions(
        variants=names,
        opset=opset,
        pruning_sparsity=spec.pruning_sparsity,
        structured_pruning=spec.structured_pruning,
        quantization=quantization,
        search_int8=not spec.fixed_quantization,
        tolerances=dict(spec.tolerances),
        exporter=settings.exporter,
        optimization=settings.ort_optimization,
        latency_repeats=settings.latency_repeats,
        threads=settings.proof_threads,
    )


def check_tolerance(name: str, tolerance: limits.Tolerance) -> None:
    """One variant's overrides: non-negative, and agreement/cosine limits at most 1."""
    fractions = (tolerance.min_top1_agreement, tolerance.min_worst_row_cosine, tolerance.min_p1_cosine)
    if min(tolerance.as_dict().values(), default=0.0) < 0 or max(fractions) > 1:
        raise InvalidArgument(
            f"options.tolerances[{name}] must be non-negative (agreement and cosine limits at most 1)"
        )
