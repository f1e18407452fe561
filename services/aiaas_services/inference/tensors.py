"""Tensor codec: Open Inference Protocol tensors <-> numpy arrays, with no copies where the wire allows.

Raw contents are little-endian, row-major bytes; ``np.frombuffer`` views them in place. BYTES tensors
carry each element prefixed by its 4-byte little-endian length; they become numpy object arrays of
``str``: ONNX Runtime's Python binding carries string tensors as UTF-8 text only, so non-UTF-8 BYTES
elements are refused with INVALID_ARGUMENT rather than silently mangled. Typed ``contents`` fields follow the protocol's
mapping (INT8/INT16/INT32 in ``int_contents``; FP16 and BF16 have no typed field and must travel raw). BF16 arrays
are ``ml_dtypes.bfloat16`` (numpy has no bfloat16 of its own; tritonclient uses the same type).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import ml_dtypes
import numpy as np

from aiaas_services.runtime.errors import InvalidArgument

# V2 datatype -> numpy dtype (little-endian). BYTES -> object.
V2_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "BYTES": np.dtype(object),
}

BF16 = V2_TO_NUMPY["BF16"]

# ONNX Runtime's type strings (NodeArg.type) -> V2 datatype.
ORT_TO_V2: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(bfloat16)": "BF16",
    "tensor(string)": "BYTES",
}

# V2 datatype -> the typed-contents field that carries it.
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

_LENGTH = struct.Struct("<I")


def numpy_to_v2(dtype: np.dtype[Any]) -> str:
    """The V2 datatype name of a numpy dtype (object/str/bytes arrays are BYTES)."""
    if dtype.kind in ("O", "S", "U"):
        return "BYTES"
    for name, candidate in V2_TO_NUMPY.items():
        if candidate == dtype and name != "BYTES":
            return name
    raise InvalidArgument(f"numpy dtype {dtype} has no Open Inference Protocol datatype")


def element_count(shape: Sequence[int]) -> int:
    """Number of elements of a shape (1 for a scalar)."""
    return math.prod(int(dim) for dim in shape)


def _text(items: Sequence[bytes], name: str) -> np.ndarray:
    """BYTES elements as a 1-D object array of str (what ONNX Runtime's string tensors take)."""
    array = np.empty(len(items), dtype=object)
    try:
        array[:] = [item.decode("utf-8") for item in items]
    except UnicodeDecodeError as exc:
        raise InvalidArgument(
            f"input '{name}': a BYTES element is not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "ONNX Runtime string tensors carry UTF-8 only"
        ) from None
    return array


def decode_bytes_tensor(raw: bytes, count: int, name: str) -> np.ndarray:
    """BYTES elements (each a 4-byte LE length then the bytes) -> a 1-D object array of ``count`` str."""
    items: list[bytes] = []
    view = memoryview(raw)
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidArgument(f"input '{name}': BYTES element {len(items)} has a truncated length prefix")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidArgument(
                f"input '{name}': BYTES element {len(items)} claims {length} bytes, only {len(raw) - offset} remain"
            )
        items.append(bytes(view[offset : offset + length]))
        offset += length
    if len(items) != count:
        raise InvalidArgument(f"input '{name}': shape needs {count} BYTES elements, raw contents hold {len(items)}")
    return _text(items, name)


def encode_bytes_tensor(array: np.ndarray) -> bytes:
    """An array of bytes/str elements -> BYTES raw contents (4-byte LE length before each)."""
    parts: list[bytes] = []
    for item in array.reshape(-1):
        data = item.encode() if isinstance(item, str) else bytes(item)
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def decode_raw(raw: bytes, datatype: str, shape: Sequence[int], name: str) -> np.ndarray:
    """Raw contents -> an array of ``shape``; a zero-copy view for fixed-size datatypes."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return decode_bytes_tensor(raw, count, name).reshape(shape)
    dtype = V2_TO_NUMPY[datatype]
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise InvalidArgument(
            f"input '{name}': {datatype} shape {list(shape)} needs {expected} bytes, raw contents hold {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def decode_contents(contents: Any, datatype: str, shape: Sequence[int], name: str) -> np.ndarray:
    """Typed ``InferTensorContents`` -> an array of ``shape``."""
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidArgument(f"input '{name}': {datatype} has no typed contents field; send it in raw_input_contents")
    values = getattr(contents, field)
    count = element_count(shape)
    if len(values) != count:
        raise InvalidArgument(
            f"input '{name}': shape {list(shape)} needs {count} elements, {field} holds {len(values)}"
        )
    if datatype == "BYTES":
        return _text(list(values), name).reshape(shape)
    return np.asarray(values, dtype=V2_TO_NUMPY[datatype]).reshape(shape)


def encode_raw(array: np.ndarray, datatype: str) -> bytes:
    """An output array -> raw contents bytes (little-endian, row-major)."""
    if datatype == "BYTES":
        return encode_bytes_tensor(array)
    dtype = V2_TO_NUMPY[datatype]
    if array.dtype is not dtype and array.dtype != dtype:
        array = array.astype(dtype)
    return array.tobytes()
