"""FP16 and INT8 variants of an FP32 ONNX model.

Which variant runs fast where is a fact we record with each one: ONNX Runtime's CUDA provider has no
INT8 kernels (INT8 nodes fall back to the CPU and get slower, onnxruntime issues 9115 and 10267), so
FP16 is the GPU variant and INT8 the CPU one.

``reduce_range``: on x86 CPUs without VNNI (this one has AVX2 only) ONNX Runtime multiplies u8
activations by s8 weights with ``vpmaddubsw``, whose int16 pair sums can saturate; 7-bit weights
(reduce_range) rule that out at a small cost in resolution. ``cpu_has_vnni()`` lets the caller turn it
on automatically where it matters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.transformers import float16

from aiaas.wire import VARIANTS as VARIANTS  # the names are wire-level; re-exported for the pipeline

CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
PREFERRED_PROVIDER = {
    "fp32": "CPUExecutionProvider",  # runs well on either; the CPU is always there
    "fp16": "CUDAExecutionProvider",
    "int8-dynamic": "CPUExecutionProvider",
    "int8-static": "CPUExecutionProvider",
}
# Ops ONNX Runtime's CPU provider has no FP16 kernel for in the graphs we make; they stay FP32 (the
# converter inserts Casts around them) so the FP16 model still runs, and is provable, on a CPU.
FP16_CPU_BLOCKED_OPS = ["LayerNormalization", "SkipLayerNormalization", "Softmax", "Gelu", "Erf"]


@dataclasses.dataclass(frozen=True)
class QuantizationSettings:
    """How INT8 variants are made."""

    per_channel: bool = False
    reduce_range: bool = False
    method: str = "minmax"
    num_samples: int = 256

    def as_dict(self, variant: str) -> dict[str, str]:
        result = {"variant": variant}
        if variant.startswith("int8"):
            result |= {"per_channel": str(self.per_channel).lower(), "reduce_range": str(self.reduce_range).lower()}
            result |= {"weight_type": "int8", "activation_type": "uint8"}
        if variant == "int8-static":
            result |= {"format": "QDQ", "calibration_method": self.method, "calibration_samples": str(self.num_samples)}
        if variant == "fp16":
            result |= {"keep_io_types": "true", "fp32_ops": ",".join(FP16_CPU_BLOCKED_OPS)}
        return result


def cpu_has_vnni(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU has AVX512-VNNI or AVX-VNNI (INT8 dot products without saturation)."""
    try:
        flags = cpuinfo.read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


class ArrayCalibrationReader(CalibrationDataReader):
    """Feeds calibration samples one small batch at a time to ONNX Runtime's calibrator."""

    def __init__(self, x: np.ndarray, input_name: str = "input", batch_size: int = 32) -> None:
        self._batches: Iterator[np.ndarray] = iter(
            [x[i : i + batch_size].astype(np.float32) for i in range(0, len(x), batch_size)]
        )
        self._input_name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._input_name: batch}


def make_fp16(fp32: Path, destination: Path) -> None:
    """FP16 weights and compute; inputs and outputs stay FP32 so clients do not change."""
    model = onnx.load(str(fp32))
    converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=FP16_CPU_BLOCKED_OPS)
    onnx.save(converted, str(destination))


def make_int8_dynamic(fp32: Path, destination: Path, settings: QuantizationSettings) -> None:
    """INT8 weights, activations quantized on the fly per batch; needs no calibration data."""
    quantize_dynamic(
        str(fp32),
        str(destination),
        per_channel=settings.per_channel,
        reduce_range=settings.reduce_range,
        weight_type=QuantType.QInt8,
    )


def make_int8_static(
    fp32: Path, destination: Path, calibration_x: np.ndarray, settings: QuantizationSettings, input_name: str = "input"
) -> None:
    """INT8 in QDQ format with activation ranges calibrated on ``calibration_x`` (the training split)."""
    if settings.method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {settings.method!r}")
    if len(calibration_x) == 0:
        raise ValueError("int8-static needs calibration samples, got none")
    sample = calibration_x[: settings.num_samples] if settings.num_samples > 0 else calibration_x
    extra: dict[str, object] = {}
    model = onnx.load(str(fp32))
    if settings.method == "percentile":
        extra["CalibPercentile"] = 99.99
    quantize_static(
        str(fp32),
        str(destination),
        ArrayCalibrationReader(sample, input_name),
        quant_format=QuantFormat.QDQ,
        per_channel=settings.per_channel,
        reduce_range=settings.reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CALIBRATION_METHODS[settings.method],
        nodes_to_exclude=activation_matmuls(model),
        extra_options=extra,
    )


def activation_matmuls(model: onnx.ModelProto) -> list[str]:
    """MatMul nodes whose two inputs are both activations (attention's Q@K^T and weights@V).

    Quantizing them buys little (no weights to shrink, tiny per-head matrices) and costs a
    Quantize/Dequantize pair per input at run time, so static INT8 leaves them in FP32.
    """
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "MatMul" and n.name and not any(i in constants for i in n.input)
    ]
