"""Running models whose inputs or outputs are bfloat16: through OrtValues, since ``session.run`` refuses them.

ONNX Runtime's Python ``run()`` converts numpy arrays by their numpy type, and numpy has no bfloat16 (our
BF16 arrays are ``ml_dtypes.bfloat16``, which it rejects). An OrtValue made over the array's bytes with the
ONNX element type said explicitly carries them without a copy, and ``run_with_ort_values`` hands back
OrtValues whose bfloat16 bytes we copy out by address. Only models with a BF16 tensor take this path; every
other model keeps the plain ``session.run`` runner.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
import onnxruntime as ort
from onnx import TensorProto

from aiaas_services.inference.batching import StoppableRunFn
from aiaas_services.inference.tensors import BF16
from aiaas_services.runtime.errors import InvalidArgument

_BF16_TYPE = "tensor(bfloat16)"


def needs_ortvalues(session: ort.InferenceSession) -> bool:
    """Whether any input or output of the session is bfloat16."""
    return any(arg.type == _BF16_TYPE for arg in (*session.get_inputs(), *session.get_outputs()))


def _to_ortvalue(array: np.ndarray) -> ort.OrtValue:
    array = np.ascontiguousarray(array)  # the OrtValue reads the buffer as it lies: row-major, no strides
    if array.dtype == BF16:
        return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(array.view(np.uint16), TensorProto.BFLOAT16)
    return ort.OrtValue.ortvalue_from_numpy(array)


def _bf16_array(value: ort.OrtValue) -> np.ndarray:
    """A (CPU) bfloat16 OrtValue's contents as an ``ml_dtypes.bfloat16`` array we own."""
    shape = value.shape()
    size = value.tensor_size_in_bytes()
    if size == 0:
        return np.empty(shape, dtype=BF16)
    raw = (ctypes.c_char * size).from_address(value.data_ptr())
    return np.frombuffer(raw, dtype=np.uint16).copy().view(BF16).reshape(shape)


def ortvalue_runner(session: ort.InferenceSession) -> StoppableRunFn:
    """A run function over OrtValues for a model with BF16 tensors (``control``: RunOptions that may stop it).

    String tensors cannot become OrtValues in ONNX Runtime's Python API, so a model that mixes them with
    BF16 is refused when it loads.
    """
    if any(arg.type == "tensor(string)" for arg in (*session.get_inputs(), *session.get_outputs())):
        raise InvalidArgument(
            "the model has both string and bfloat16 tensors, which ONNX Runtime's Python API cannot run together; "
            "cast the bfloat16 tensors to float32 or float16 in the graph"
        )
    names = [arg.name for arg in session.get_outputs()]
    bf16 = [arg.type == _BF16_TYPE for arg in session.get_outputs()]
    run = session.run_with_ort_values

    def runner(feeds: dict[str, np.ndarray], control: Any = None) -> list[np.ndarray]:
        values = run(names, {name: _to_ortvalue(array) for name, array in feeds.items()}, control)
        return [_bf16_array(value) if is_bf16 else value.numpy() for value, is_bf16 in zip(values, bf16, strict=True)]

    return runner
