"""Vetting of uploaded ONNX files, done before anything allocates tensors or follows paths.

The order matters: parse the protobuf without external data, refuse external-data references (a
single uploaded file cannot carry them, and a path like ``../../etc/passwd`` must never be opened),
refuse tensors whose DECLARED size is absurd before the checker or ONNX Runtime would allocate them,
then check opsets and op domains, then run the full ONNX checker, then open an ONNX Runtime session.
"""

from __future__ import annotations

import dataclasses
import math
import posixpath
from collections.abc import Iterator
from pathlib import Path

import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError

# ONNX element type -> Open Inference Protocol datatype name.
V2_DATATYPES: dict[int, str] = {
    onnx.TensorProto.FLOAT: "FP32",
    onnx.TensorProto.FLOAT16: "FP16",
    onnx.TensorProto.DOUBLE: "FP64",
    onnx.TensorProto.BFLOAT16: "BF16",
    onnx.TensorProto.INT8: "INT8",
    onnx.TensorProto.INT16: "INT16",
    onnx.TensorProto.INT32: "INT32",
    onnx.TensorProto.INT64: "INT64",
    onnx.TensorProto.UINT8: "UINT8",
    onnx.TensorProto.UINT16: "UINT16",
    onnx.TensorProto.UINT32: "UINT32",
    onnx.TensorProto.UINT64: "UINT64",
    onnx.TensorProto.BOOL: "BOOL",
    onnx.TensorProto.STRING: "BYTES",
}
KNOWN_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})


class InvalidModel(ValueError):
    """The file is not an ONNX model we will accept; the message says why (and what to do)."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What an import may be."""

    min_opset: int = 13
    max_opset: int = 21
    max_tensor_bytes: int = 1 << 30


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 for a symbolic or unknown dimension


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What validation found."""

    opset: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]


def _tensor_info(value: onnx.ValueInfoProto) -> TensorInfo:
    tensor = value.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
    return TensorInfo(value.name, V2_DATATYPES.get(tensor.elem_type, "UNKNOWN"), shape)


def describe(model: onnx.ModelProto) -> ModelInfo:
    """Opset and graph inputs/outputs (initializers listed as inputs are not inputs)."""
    initializers = {i.name for i in model.graph.initializer}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    inputs = tuple(_tensor_info(v) for v in model.graph.input if v.name not in initializers)
    return ModelInfo(opset, inputs, tuple(_tensor_info(v) for v in model.graph.output))


def _all_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _all_graphs(attribute.g)
            for sub in attribute.graphs:
                yield from _all_graphs(sub)


def _all_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    for graph in _all_graphs(model.graph):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.TENSOR:
                    yield attribute.t
                yield from attribute.tensors


def _check_external_data(tensor: onnx.TensorProto) -> None:
    location = next((e.value for e in tensor.external_data if e.key == "location"), "")
    normalized = posixpath.normpath(location.replace("\\", "/")) if location else ""
    if not location or normalized.startswith("/") or normalized == ".." or normalized.startswith("../"):
        raise InvalidModel(
            f"tensor {tensor.name!r} points at external data {location!r} outside the model's folder; refused"
        )
    raise InvalidModel(
        f"tensor {tensor.name!r} keeps its data in the external file {location!r}, which an import cannot "
        "carry; save the model self-contained (onnx.save(model, path, save_as_external_data=False))"
    )


def _check_declared_size(tensor: onnx.TensorProto, limit: int) -> None:
    """Refuse huge DECLARED tensors and tensors whose payload does not match their dims, before any
    code materializes them."""
    if any(d < 0 for d in tensor.dims):
        raise InvalidModel(f"tensor {tensor.name!r} declares a negative dimension {list(tensor.dims)}")
    elements = math.prod(tensor.dims)
    itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize if tensor.data_type else 1
    declared = elements * itemsize
    if declared > limit:
        raise InvalidModel(
            f"tensor {tensor.name!r} declares {list(tensor.dims)} elements ({declared / 2**30:.1f} GiB), over the "
            f"{limit / 2**30:.1f} GiB per-tensor limit"
        )
    if tensor.HasField("raw_data") and tensor.data_type != onnx.TensorProto.STRING and len(tensor.raw_data) != declared:
        raise InvalidModel(
            f"tensor {tensor.name!r} declares {declared} bytes but holds {len(tensor.raw_data)}; the file is corrupt"
        )


def validate_bytes(data: bytes, limits: Limits) -> tuple[onnx.ModelProto, ModelInfo]:
    """Parse and vet an uploaded model; raises InvalidModel with the reason."""
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise InvalidModel("not a valid ONNX protobuf (truncated or malformed file)") from exc
    if not model.HasField("graph") or not model.graph.node:
        raise InvalidModel("the file parses but holds no graph (truncated, or not an ONNX model)")
    for tensor in _all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
            _check_external_data(tensor)
        _check_declared_size(tensor, limits.max_tensor_bytes)
    info = describe(model)
    if not limits.min_opset <= info.opset <= limits.max_opset:
        raise InvalidModel(
            f"default-domain opset {info.opset} is outside the supported {limits.min_opset}..{limits.max_opset}; "
            "re-export with a supported opset"
        )
    local_functions = {f.domain for f in model.functions}
    declared_domains = {o.domain for o in model.opset_import}
    used_domains = {n.domain for g in _all_graphs(model.graph) for n in g.node}
    unknown = sorted((declared_domains | used_domains) - KNOWN_DOMAINS - local_functions)
    if unknown:
        raise InvalidModel(f"custom operator domain(s) {', '.join(map(repr, unknown))} are not supported")
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise InvalidModel(f"the ONNX checker refused the model: {str(exc).splitlines()[0][:300]}") from exc
    if not info.inputs or not info.outputs:
        raise InvalidModel("the model has no inputs or no outputs")
    return model, info


def validate_file(path: Path, limits: Limits) -> ModelInfo:
    """Vet the model at ``path`` and prove ONNX Runtime can load it."""

    _model, info = validate_bytes(path.read_bytes(), limits)
    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types for unloadable graphs
        first_line = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise InvalidModel(f"ONNX Runtime cannot load the model: {first_line}") from exc
    return info
