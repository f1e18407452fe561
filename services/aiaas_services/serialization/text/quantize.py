"""INT8 variants of a text graph: the encoder alone is quantized (dynamic or static QDQ), then put back
behind the unchanged tokenizer.

What a setting can change, beyond the numeric path's per-channel / reduce-range / what-stays-FP32:
- ``fuse``: fuse the encoder's attention, LayerNorm and GELU into ONNX Runtime's contrib ops
  (``onnxruntime.transformers.optimizer``, model type bert) before quantizing, so INT8 runs inside fused
  kernels (dynamic INT8 turns the fused ``Attention`` into ``QAttention``) instead of around unfused ones.
- ``weights``: ``int8`` (u8 activations by s8 weights: fastest, but on AVX2 CPUs without VNNI the
  ``vpmaddubsw`` pair sums can saturate) or ``uint8`` (u8 by u8: no saturation, slower kernel).
- ``symmetric_activations``: activation ranges centred on 0 (static).
Static calibration runs the encoder on token ids of the calibration sentences, tokenized by the graph's
own tokenizer; ranges are computed once per (encoder, method) and reused by every candidate.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

from aiaas_services.runtime import custom_ops
from aiaas_services.serialization.pipeline import variants as makers
from aiaas_services.serialization.text import encoder as cut

WEIGHT_TYPES = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}


@dataclasses.dataclass(frozen=True)
class TextQuantization(makers.QuantizationSettings):
    """QuantizationSettings plus what only the text path tries (see the module docstring)."""

    fuse: bool = False
    weights: str = "int8"
    symmetric_activations: bool = False

    def as_dict(self, variant: str) -> dict[str, str]:
        result = super().as_dict(variant)
        if variant.startswith("int8"):
            result |= {"weight_type": self.weights, "fused_encoder": str(self.fuse).lower()}
            result |= {"quantized_part": "encoder (tokenizer kept as is)"}
        if variant == "int8-static":
            result |= {"symmetric_activations": str(self.symmetric_activations).lower(), "op_types": "MatMul"}
        return result


def of(settings: makers.QuantizationSettings) -> TextQuantization:
    """The request's settings as text settings (text-only fields at their defaults)."""
    if isinstance(settings, TextQuantization):
        return settings
    return TextQuantization(**dataclasses.asdict(settings))


class _Feeds(CalibrationDataReader):
    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._iter = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)


class Workspace:
    """One text graph's encoders (plain and fused), calibration token ids and range caches, made once and
    shared by every INT8 candidate of a job."""

    def __init__(self, text_graph: Path, workdir: Path, calibration: tuple[str, ...] = ()) -> None:
        self.text_graph = text_graph
        self.workdir = workdir / "int8-work"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.calibration = calibration
        self._encoders: dict[bool, Path] = {}
        self._feeds: list[dict[str, np.ndarray]] | None = None

    def encoder(self, fuse: bool) -> Path:
        """The encoder (token ids in), fused or as exported."""
        if fuse not in self._encoders:
            plain = self.workdir / "encoder.onnx"
            if not plain.exists():
                cut.extract(self.text_graph, plain)
            path = plain
            if fuse:
                path = self.workdir / "encoder-fused.onnx"
                fuse_encoder(plain, path)
            self._encoders[fuse] = path
        return self._encoders[fuse]

    def feeds(self) -> list[dict[str, np.ndarray]]:
        """Token ids of the calibration sentences, 16 per batch, as the served graph tokenizes them."""
        if self._feeds is None:
            if not self.calibration:
                raise ValueError("int8-static needs calibration sentences, got none")
            options = custom_ops.register(ort.SessionOptions())
            options.intra_op_num_threads = 1
            model = cut.tokenizer_model(self.text_graph)
            session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            texts = list(self.calibration)
            texts += texts[: (-len(texts)) % 16]  # whole batches, cycling from the start
            feeds = cut.token_batches(session, texts)
            # one shape for all batches: the histogram calibrators (entropy, percentile) stack them
            longest = max(f["input_ids"].shape[1] for f in feeds)
            self._feeds = [{k: np.pad(v, ((0, 0), (0, longest - v.shape[1]))) for k, v in f.items()} for f in feeds]
        return self._feeds

    def make(self, variant: str, settings: TextQuantization, destination: Path) -> None:
        """The INT8 text graph ``variant`` under ``settings`` at ``destination``."""
        if settings.weights not in WEIGHT_TYPES:
            raise ValueError(f"weights must be one of {', '.join(WEIGHT_TYPES)}, got {settings.weights!r}")
        source = self.encoder(settings.fuse)
        quantized = self.workdir / f"quantized-{destination.stem}.onnx"
        model = onnx.load(str(source))
        excluded = makers.fp32_nodes(model, settings.keep_fp32)
        if variant == "int8-dynamic":
            quantize_dynamic(
                str(source),
                str(quantized),
                per_channel=settings.per_channel,
                reduce_range=settings.reduce_range,
                weight_type=WEIGHT_TYPES[settings.weights],
                nodes_to_exclude=excluded,
                op_types_to_quantize=["MatMul", "Attention"],
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # contrib ops' outputs are float
            )
        elif variant == "int8-static":
            self._static(source, quantized, settings, excluded + makers.activation_matmuls(model))
        else:
            raise ValueError(f"{variant} is not an INT8 variant")
        cut.rejoin(self.text_graph, quantized, destination)
        quantized.unlink(missing_ok=True)

    def _static(self, source: Path, destination: Path, settings: TextQuantization, excluded: list[str]) -> None:
        if settings.method not in makers.CALIBRATION_METHODS:
            raise ValueError(f"calibration method must be one of {', '.join(makers.CALIBRATION_METHODS)}")
        feeds = self.feeds()
        limit = max(1, settings.num_samples // 16) if settings.num_samples > 0 else len(feeds)
        cache = self.workdir / f"ranges-{source.stem}-{settings.method}-{limit}.json"
        extra: dict[str, object] = {"ActivationSymmetric": settings.symmetric_activations}
        extra["DefaultTensorType"] = onnx.TensorProto.FLOAT
        if settings.method == "percentile":
            extra["CalibPercentile"] = 99.99
        logging.getLogger("root").setLevel(logging.ERROR)  # ORT's "consider pre-processing" warnings
        quantize_static(
            str(source),
            str(destination),
            _Feeds(feeds[:limit]),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul"],
            per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=WEIGHT_TYPES[settings.weights],
            calibrate_method=makers.CALIBRATION_METHODS[settings.method],
            nodes_to_exclude=excluded,
            extra_options=extra,
            calibration_cache_path=cache,
        )


def fuse_encoder(source: Path, destination: Path) -> dict[str, int]:
    """Fuse attention / LayerNorm / GELU of a BERT encoder into ONNX Runtime contrib ops; the counts of
    fused ops (an encoder no pattern matches is written back as it was)."""
    # the ORT transformers optimizer: loaded only when an encoder is fused (it pulls in heavy optional modules)
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(source), model_type="bert", num_heads=0, hidden_size=0, opt_level=0)
    optimized.save_model_to_file(str(destination))
    return {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}


def candidates(variant: str, base: makers.QuantizationSettings) -> list[TextQuantization]:
    """Settings worth trying for a BERT-style encoder on this CPU, fastest first: plain per-tensor (the
    baseline the gate must catch), then per-channel on the fused encoder with less and less INT8 (u8 weights
    against saturation; the sensitive ops, then the MatMuls after / around GELU kept FP32), symmetric
    activations (static), and the unfused encoder. Static keeps the request's calibration method: the
    histogram methods clip BERT's outlier channels and take minutes to calibrate, so they are not tried
    unless asked for."""
    text = of(base)
    change = dataclasses.replace
    plain = change(text, per_channel=False, reduce_range=False, keep_fp32="none", fuse=False, weights="int8")
    fused = change(text, per_channel=True, reduce_range=False, keep_fp32="none", fuse=True, weights="int8")
    tried = [
        plain,
        fused,
        change(fused, weights="uint8"),
        change(fused, keep_fp32="sensitive+ffn-out"),
        change(fused, keep_fp32="sensitive+ffn"),
        change(fused, keep_fp32="sensitive+ffn", fuse=False),
    ]
    if variant == "int8-static":
        tried.append(change(fused, keep_fp32="sensitive+ffn", symmetric_activations=True))
    return list(dict.fromkeys(tried))


# What the search keeps for all-MiniLM-L6-v2 on this project's AVX2 machine (the bench measures these):
# the fastest setting that passes for int8-dynamic, and the closest one for int8-static (REJECTED).
PREFERRED: dict[str, TextQuantization] = {
    "int8-dynamic": TextQuantization(per_channel=True, keep_fp32="sensitive+ffn", fuse=True),
    "int8-static": TextQuantization(per_channel=True, keep_fp32="sensitive+ffn", fuse=True),
}
