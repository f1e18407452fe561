"""A model's input signature, proof/calibration data checked against it, and generated inputs.

Proof and calibration data is an ``.npz`` with one array per input name (plus an optional ``y`` of
labels). Generated inputs respect each input's type and range (token ids within the vocabulary, masks of
0/1); they are good enough to check FP32/FP16 parity, never to prove a quantized variant.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx

LABELS = "y"
LEGACY_KEYS = ("x", "input")  # a single-input model may take its array under one of these names
GENERATED_ROWS = 128
GENERATED_SEQUENCE = 16  # length of a dynamic axis beyond the batch
NUMPY_TYPES: dict[int, type] = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.INT16: np.int16,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.UINT16: np.uint16,
    onnx.TensorProto.UINT32: np.uint32,
    onnx.TensorProto.UINT64: np.uint64,
    onnx.TensorProto.BOOL: np.bool_,
    onnx.TensorProto.STRING: np.object_,
}

DATATYPES: dict[str, type] = {
    "FP32": np.float32,
    "FP16": np.float16,
    "FP64": np.float64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "BOOL": np.bool_,
    "BYTES": np.object_,
}


class DataMismatch(ValueError):
    """Data that does not fit the model's inputs; the message names the input and what is expected."""


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One graph input."""

    name: str
    dtype: type  # numpy scalar type
    shape: tuple[int | str, ...]  # ints are fixed, strings are named dynamic axes ("" when unnamed)
    vocabulary: int = 0  # for integer ids feeding an embedding table: its number of rows

    def describe(self) -> str:
        dims = ", ".join(str(d) if isinstance(d, int) else (d or "?") for d in self.shape)
        return f"{np.dtype(self.dtype).name}[{dims}]"


def signature(model: onnx.ModelProto) -> list[InputSpec]:
    """The graph's inputs (initializers are not inputs), with vocabulary sizes found from Gather tables."""
    initializers = {i.name: i for i in model.graph.initializer}
    vocab: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[0] in initializers:
            table = initializers[node.input[0]]
            if table.dims:
                vocab[node.input[1]] = int(table.dims[0])
    specs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in tensor.shape.dim)
        dtype = NUMPY_TYPES.get(tensor.elem_type, np.float32)
        specs.append(InputSpec(value.name, dtype, shape, vocab.get(value.name, 0)))
    return specs


def spec_of(name: str, datatype: str, shape: list[int]) -> InputSpec:
    """An input from its registry signature (Open Inference Protocol datatype, -1 for a dynamic axis)."""
    dtype = DATATYPES.get(datatype, np.float32)
    return InputSpec(name, dtype, tuple(d if d >= 0 else "" for d in shape))


def signature_of(path: Path) -> list[InputSpec]:
    return signature(onnx.load(str(path), load_external_data=False))


def read_npz(payload: bytes, what: str) -> dict[str, np.ndarray]:
    """The arrays of an uploaded ``.npz`` (no pickles)."""
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
            return {name: np.asarray(archive[name]) for name in archive.files}
    except Exception as exc:
        raise DataMismatch(f"{what} is not a readable .npz of arrays ({type(exc).__name__})") from exc


def match(arrays: Mapping[str, np.ndarray], specs: list[InputSpec], what: str) -> dict[str, np.ndarray]:
    """The arrays as a feed for the model's inputs, checked and cast; raises DataMismatch naming the input."""
    arrays = {k: v for k, v in arrays.items() if k != LABELS}
    if len(specs) == 1 and specs[0].name not in arrays:
        legacy = [k for k in LEGACY_KEYS if k in arrays]
        if legacy and len(arrays) == 1:
            arrays = {specs[0].name: arrays[legacy[0]]}
    names = [s.name for s in specs]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise DataMismatch(
            f"{what} has no array for input {missing[0]!r} ({_expected(specs)}); it has {sorted(arrays) or 'none'}"
        )
    extra = sorted(set(arrays) - set(names))
    if extra:
        raise DataMismatch(
            f"{what} has array {extra[0]!r}, which is not an input of the model ({_expected(specs)}; 'y' for labels)"
        )
    feed = {spec.name: _fit(arrays[spec.name], spec, what) for spec in specs}
    rows = {name: len(array) for name, array in feed.items()}
    if len(set(rows.values())) > 1:
        raise DataMismatch(f"{what}: arrays have different numbers of rows {rows}; one row per sample in each")
    if not next(iter(rows.values()), 0):
        raise DataMismatch(f"{what} has no rows")
    return feed


def _expected(specs: list[InputSpec]) -> str:
    return "inputs: " + ", ".join(f"{s.name} {s.describe()}" for s in specs)


def _fit(array: np.ndarray, spec: InputSpec, what: str) -> np.ndarray:
    label = f"{what}: input {spec.name!r} expects {spec.describe()}, the array is {array.dtype.name}{list(array.shape)}"
    if array.ndim != len(spec.shape):
        raise DataMismatch(f"{label} (rank {array.ndim}, want {len(spec.shape)})")
    for axis, (want, got) in enumerate(zip(spec.shape, array.shape, strict=True)):
        if axis and isinstance(want, int) and want > 0 and want != got:
            raise DataMismatch(f"{label} (axis {axis} must be {want})")
    target = np.dtype(spec.dtype)
    kind = array.dtype.kind
    if target.kind == "O":
        if kind not in "USO":
            raise DataMismatch(f"{label} (want strings)")
        return array.astype(np.object_)
    if kind in "USO":
        raise DataMismatch(f"{label} (strings for a numeric input)")
    if target.kind in "iub" and kind == "f":
        raise DataMismatch(f"{label} (floats for an integer input)")
    if target.kind == "b" and kind in "iu" and not np.isin(array, (0, 1)).all():
        raise DataMismatch(f"{label} (a bool input takes 0/1)")
    return array.astype(target)


def labels_of(arrays: Mapping[str, np.ndarray]) -> np.ndarray | None:
    return np.asarray(arrays[LABELS]) if LABELS in arrays else None


def generate(specs: list[InputSpec], rows: int = GENERATED_ROWS, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs that respect each input's type and range: ids below the vocabulary, masks 0/1 (a prefix of
    ones, as a tokenizer pads), segment ids 0, floats standard normal, strings short words."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(max(2, GENERATED_SEQUENCE // 4), GENERATED_SEQUENCE + 1, size=rows)
    feed = {}
    for spec in specs:
        shape = [rows] + [d if isinstance(d, int) and d > 0 else GENERATED_SEQUENCE for d in spec.shape[1:]]
        dtype = np.dtype(spec.dtype)
        lowered = spec.name.lower()
        if dtype.kind == "O":
            words = np.array(["alpha", "beta", "gamma", "delta"], dtype=object)
            feed[spec.name] = words[rng.integers(0, len(words), size=shape)]
        elif dtype.kind == "b":
            feed[spec.name] = rng.integers(0, 2, size=shape).astype(np.bool_)
        elif dtype.kind in "iu":
            if "mask" in lowered and len(shape) >= 2:
                positions = np.arange(shape[1]).reshape(1, -1)
                mask = (positions < lengths.reshape(-1, 1)).astype(dtype)
                feed[spec.name] = np.broadcast_to(mask.reshape(rows, shape[1], *([1] * (len(shape) - 2))), shape).copy()
            elif spec.vocabulary:
                feed[spec.name] = rng.integers(0, spec.vocabulary, size=shape).astype(dtype)
            else:
                feed[spec.name] = np.zeros(shape, dtype)  # an id of unknown range: 0 is always valid
        else:
            feed[spec.name] = rng.standard_normal(shape).astype(dtype)
    return feed
