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
from collections.abc import Callable, Iterator, Mapping, Sequence
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
# Ops whose INT8 form costs the most accuracy for the least speed: normalizations and softmax (small
# ranges, large dynamic range across rows) and embedding lookups (one row of the table per token).
SENSITIVE_OPS = frozenset(
    {"LayerNormalization", "SkipLayerNormalization", "Softmax", "Gather", "Pow", "ReduceMean", "Sqrt", "Div", "Erf"}
)
GELU_OPS = frozenset({"Erf", "Gelu", "FastGelu", "BiasGelu"})
FP32_LEVELS = ("none", "sensitive", "sensitive+ffn-out", "sensitive+ffn")


@dataclasses.dataclass(frozen=True)
class QuantizationSettings:
    """How INT8 variants are made."""

    per_channel: bool = False
    reduce_range: bool = False
    method: str = "minmax"
    num_samples: int = 256
    keep_fp32: str = "none"  # one of FP32_LEVELS: which nodes stay FP32

    def as_dict(self, variant: str) -> dict[str, str]:
        result = {"variant": variant}
        if variant.startswith("int8"):
            result |= {"per_channel": str(self.per_channel).lower(), "reduce_range": str(self.reduce_range).lower()}
            result |= {"weight_type": "int8", "activation_type": "uint8"}
            result |= {"keep_fp32": self.keep_fp32}
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


class FeedCalibrationReader(CalibrationDataReader):
    """Feeds calibration samples (one array per input name) a small batch at a time to the calibrator."""

    def __init__(self, feed: Mapping[str, np.ndarray], batch_size: int = 16) -> None:
        rows = len(next(iter(feed.values())))
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            [{k: v[i : i + batch_size] for k, v in feed.items()} for i in range(0, rows, batch_size)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def fp32_nodes(model: onnx.ModelProto, level: str) -> list[str]:
    """Nodes a FP32_LEVELS level keeps in FP32. "sensitive": SENSITIVE_OPS; "+ffn-out": the feed-forward
    MatMuls fed by a GELU (their inputs carry the outliers that 8 bits cannot span); "+ffn": the ones
    feeding a GELU too. Found by graph structure, not names, so any exporter's graph works."""
    if level not in FP32_LEVELS:
        raise ValueError(f"keep_fp32 must be one of {', '.join(FP32_LEVELS)}, got {level!r}")
    if level == "none":
        return []
    nodes = [n.name for n in model.graph.node if n.op_type in SENSITIVE_OPS and n.name]
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm") or not node.name:
            continue
        upstream = _reaches(node.input[:1], lambda t: [producer[t]] if t in producer else [], lambda n: n.input)
        downstream = _reaches(node.output, lambda t: consumers.get(t, []), lambda n: n.output)
        if (upstream and level != "sensitive") or (downstream and level == "sensitive+ffn"):
            nodes.append(node.name)
    return nodes


def _reaches(
    start: Sequence[str],
    step: Callable[[str], list[onnx.NodeProto]],
    onward: Callable[[onnx.NodeProto], Sequence[str]],
    hops: int = 4,
) -> bool:
    """Whether a GELU (Erf, Gelu, FastGelu) is within ``hops`` nodes of ``start`` in one direction."""
    frontier = list(start)
    for _ in range(hops):
        nodes = [n for t in frontier for n in step(t)]
        if any(n.op_type in GELU_OPS for n in nodes):
            return True
        frontier = [t for n in nodes if n.op_type not in ("MatMul", "Gemm") for t in onward(n)]
    return False


def make_fp16(fp32: Path, destination: Path) -> None:
    """FP16 weights and compute; inputs and outputs stay FP32 so clients do not change."""
    model = onnx.load(str(fp32))
    converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=FP16_CPU_BLOCKED_OPS)
    onnx.save(converted, str(destination))


def make_int8_dynamic(fp32: Path, destination: Path, settings: QuantizationSettings) -> None:
    """INT8 weights, activations quantized on the fly per batch; needs no calibration data."""
    excluded = fp32_nodes(onnx.load(str(fp32)), settings.keep_fp32)
    quantize_dynamic(
        str(fp32),
        str(destination),
        per_channel=settings.per_channel,
        reduce_range=settings.reduce_range,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=excluded,
    )


def make_int8_static(
    fp32: Path, destination: Path, calibration: Mapping[str, np.ndarray], settings: QuantizationSettings
) -> None:
    """INT8 in QDQ format with activation ranges calibrated on ``calibration`` (one array per input)."""
    if settings.method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {settings.method!r}")
    if not calibration or len(next(iter(calibration.values()))) == 0:
        raise ValueError("int8-static needs calibration samples, got none")
    limit = settings.num_samples if settings.num_samples > 0 else None
    sample = {k: v[:limit] for k, v in calibration.items()}
    extra: dict[str, object] = {}
    model = onnx.load(str(fp32))
    if settings.method == "percentile":
        extra["CalibPercentile"] = 99.99
    excluded = activation_matmuls(model) + fp32_nodes(model, settings.keep_fp32)
    quantize_static(
        str(fp32),
        str(destination),
        FeedCalibrationReader(sample),
        quant_format=QuantFormat.QDQ,
        per_channel=settings.per_channel,
        reduce_range=settings.reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CALIBRATION_METHODS[settings.method],
        nodes_to_exclude=excluded,
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
