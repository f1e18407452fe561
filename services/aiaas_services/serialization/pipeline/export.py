"""PyTorch -> ONNX: export with a dynamic batch axis, check, optimize with ONNX Runtime, stamp metadata.

The module takes RAW features and carries its standardization as buffers, so the exported graph needs
no preprocessing outside it. We try the dynamo exporter (``torch.export``) first because it is the
supported path going forward, and fall back to the TorchScript exporter when it cannot trace a module.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path

import onnx
import onnxruntime as ort
import torch
from torch.nn.utils import prune

log = logging.getLogger(__name__)

# Opset 18: the dynamo exporter's native opset, and well inside what onnx 1.23, onnxruntime 1.31 and
# its quantization tools support; pinned so every export of every architecture is the same.
DEFAULT_OPSET = 18
MIN_OPSET = 13  # QDQ quantization needs per-axis QuantizeLinear (opset 13)
MAX_OPSET = 21
INPUT_NAME = "input"
OUTPUT_NAME = "output"
BATCH_AXIS = "batch"


class ExportError(RuntimeError):
    """The module could not be exported or the exported graph failed its checks."""


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """Where the FP32 model is and how it was made."""

    path: Path
    exporter: str  # "dynamo" or "torchscript"
    opset: int
    optimization: str  # ORT graph optimization level the saved graph went through

    def settings(self) -> dict[str, str]:
        return {"exporter": self.exporter, "opset": str(self.opset), "ort_optimization": self.optimization}


def prune_weights(module: torch.nn.Module, sparsity: float) -> float:
    """Zero the smallest-magnitude ``sparsity`` share of all Linear/Conv weights (global L1 pruning).

    Returns the sparsity actually reached over those weights. The pruning is made permanent
    (``prune.remove``) so the export sees plain tensors with zeros.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"pruning_sparsity must be in [0, 1), got {sparsity}")
    targets = [(m, "weight") for m in module.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    if sparsity == 0.0 or not targets:
        return 0.0
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=sparsity)
    for m, name in targets:
        prune.remove(m, name)
    zeros = sum(int((m.weight == 0).sum()) for m, _ in targets)
    total = sum(m.weight.numel() for m, _ in targets)
    return zeros / total


def _export_dynamo(module: torch.nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            opset_version=opset,
            verbose=False,
        )
    if program is None:
        raise ExportError("the dynamo exporter returned no program")
    program.save(str(path), external_data=False)


def _export_torchscript(module: torch.nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: BATCH_AXIS}, OUTPUT_NAME: {0: BATCH_AXIS}},
            opset_version=opset,
        )


def _name_batch_axis(model: onnx.ModelProto) -> None:
    """Make the first dimension of the input and output the symbolic ``batch`` axis (exporters name
    it differently, e.g. ``s0``); a fixed first dimension means the export froze the batch size."""
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if not dims:
            continue
        if dims[0].HasField("dim_value"):
            raise ExportError(f"{value.name} has a fixed batch dimension {dims[0].dim_value}; expected a dynamic one")
        dims[0].dim_param = BATCH_AXIS


def check_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """Full ONNX checker plus strict shape inference; returns the model with inferred shapes."""
    try:
        onnx.checker.check_model(model, full_check=True)
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the exported graph failed the ONNX checker: {exc}") from exc


def optimize_for_runtime(source: Path, destination: Path, level: str = "basic") -> None:
    """Let ONNX Runtime fold constants and fuse nodes, and save that graph.

    Only ``basic`` (or ``extended``) so the file stays portable across providers; ``all`` would bake
    in CPU-specific layouts.
    """
    levels = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    }
    if level not in levels:
        raise ValueError(f"optimization level must be one of {', '.join(levels)}, got {level!r}")
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[level]
    options.optimized_model_filepath = str(destination)
    options.intra_op_num_threads = 1
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def set_metadata(path: Path, metadata: Mapping[str, str]) -> None:
    """Write key/value pairs into the model's ``metadata_props`` (lineage and signature travel with the
    file, so a copy outside the registry still says where it came from)."""
    model = onnx.load(str(path))
    existing = {p.key: p for p in model.metadata_props}
    for key, value in metadata.items():
        if key in existing:
            existing[key].value = value
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.save(model, str(path))


def export_fp32(
    module: torch.nn.Module,
    num_features: int,
    workdir: Path,
    opset: int = DEFAULT_OPSET,
    exporter: str = "auto",
    optimization: str = "basic",
) -> ExportResult:
    """Export ``module`` to ``workdir/fp32.onnx``: checked, shape-inferred and ORT-optimized.

    ``exporter`` is "auto" (dynamo, falling back to torchscript), "dynamo" or "torchscript".
    """
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} is outside the supported range {MIN_OPSET}..{MAX_OPSET}")
    workdir.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    example = torch.randn(2, num_features)
    raw = workdir / "exported.onnx"
    used = exporter
    if exporter in ("auto", "dynamo"):
        try:
            _export_dynamo(module, example, raw, opset)
            used = "dynamo"
        except Exception as exc:  # the dynamo exporter raises many kinds; any of them means "fall back"
            if exporter == "dynamo":
                raise ExportError(f"the dynamo exporter failed: {type(exc).__name__}: {exc}") from exc
            log.info("dynamo export failed (%s); falling back to the TorchScript exporter", type(exc).__name__)
            used = "torchscript"
    if used == "torchscript":
        try:
            _export_torchscript(module, example, raw, opset)
        except Exception as exc:
            raise ExportError(f"the TorchScript exporter failed: {type(exc).__name__}: {exc}") from exc
    elif used != "dynamo":
        raise ExportError(f"exporter must be auto, dynamo or torchscript, got {exporter!r}")
    model = onnx.load(str(raw))
    _name_batch_axis(model)
    model = check_graph(model)
    checked = workdir / "checked.onnx"
    onnx.save(model, str(checked))
    final = workdir / "fp32.onnx"
    optimize_for_runtime(checked, final, optimization)
    # ORT leaves the pre-fusion value_info behind; drop it and re-infer so the saved graph checks clean
    # (the quantizers run strict shape inference on it).
    optimized = onnx.load(str(final))
    del optimized.graph.value_info[:]
    onnx.save(check_graph(optimized), str(final))
    return ExportResult(path=final, exporter=used, opset=opset, optimization=optimization)
