"""KServe V2 REST bodies <-> arrays: JSON tensors and Triton's binary tensor extension.

A request body is a JSON header, optionally followed by binary tensor data; the header's length is in
the ``Inference-Header-Content-Length`` HTTP header. An input carries either ``data`` (nested or flat,
row-major; BYTES as JSON strings) or ``parameters.binary_data_size`` (its bytes, in input order, after
the header; the same layout as gRPC's raw contents). Outputs come back as JSON ``data`` unless the
request asks for binary (``parameters.binary_data_output`` for all, an output's
``parameters.binary_data`` for one). The checks mirror the gRPC codec so both answer the same mistakes
with the same words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from aiaas_services.inference.codec import _tensor_error
from aiaas_services.inference.model import LoadedModel
from aiaas_services.inference.tensors import V2_TO_NUMPY, decode_raw, encode_raw
from aiaas_services.runtime.errors import InvalidArgument

HEADER_LENGTH = "inference-header-content-length"
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
# numpy dtypes orjson serialises natively; others (float16, bfloat16) go through float32, which holds them exactly
_NATIVE_KINDS = frozenset("biuf")


@dataclass
class RestInferRequest:
    """A parsed infer body: the JSON header and the binary part that followed it."""

    header: dict[str, Any]
    binary: memoryview
    inputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        """The request id to echo ('' when absent)."""
        value = self.header.get("id", "")
        return value if isinstance(value, str) else str(value)

    @property
    def parameters(self) -> dict[str, Any]:
        """Request-level parameters (an empty dict when absent)."""
        params = self.header.get("parameters")
        return params if isinstance(params, dict) else {}


def parse_request(body: bytes, header_length: str | None) -> RestInferRequest:
    """Split and parse the body; the JSON part must be an object with an ``inputs`` list."""
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError:
            raise InvalidArgument(
                f"Inference-Header-Content-Length must be an integer, got {header_length!r}"
            ) from None
        if not 0 <= length <= len(body):
            raise InvalidArgument(
                f"Inference-Header-Content-Length is {length} but the body has {len(body)} bytes; "
                "it must be the length of the JSON part"
            )
        text, binary = body[:length], memoryview(body)[length:]
    else:
        text, binary = body, memoryview(b"")
    try:
        header = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        hint = "" if header_length is not None else " (binary tensors need the Inference-Header-Content-Length header)"
        raise InvalidArgument(f"the request body is not valid JSON: {exc}{hint}") from None
    if not isinstance(header, dict):
        raise InvalidArgument("the request body must be a JSON object with an 'inputs' list")
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
        raise InvalidArgument("'inputs' must be a list of tensor objects {name, shape, datatype, data}")
    return RestInferRequest(header, binary, inputs)


def request_variant(request: RestInferRequest) -> str:
    """The ``variant`` request parameter (a string), or ''."""
    value = request.parameters.get("variant", "")
    if not isinstance(value, str):
        raise InvalidArgument("parameter 'variant' must be a string such as 'fp32' or 'int8-dynamic'")
    return value


def request_timeout_s(request: RestInferRequest) -> float | None:
    """Triton's ``timeout`` request parameter (microseconds) in seconds, or None."""
    value = request.parameters.get("timeout")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidArgument("parameter 'timeout' must be a non-negative integer number of microseconds")
    return value / 1e6


def _shape(tensor: dict[str, Any], name: str) -> tuple[int, ...]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InvalidArgument(f"input {name!r}: 'shape' must be a list of integers, got {shape!r}")
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"input {name!r}: shape {shape} has a negative dimension")
    return tuple(shape)


def _flat_strings(data: Any, name: str) -> list[str]:
    out: list[str] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, str):
            out.append(item)
        else:
            raise InvalidArgument(f"input {name!r}: BYTES data must be JSON strings, found {type(item).__name__}")
    return out


def _from_json(data: Any, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    count = math.prod(shape)
    if not isinstance(data, list):
        data = [data]
    if datatype == "BYTES":
        items = _flat_strings(data, name)
        if len(items) != count:
            raise InvalidArgument(
                f"input {name!r}: shape {list(shape)} needs {count} elements, data holds {len(items)}"
            )
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    dtype = V2_TO_NUMPY[datatype]
    try:
        array = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidArgument(f"input {name!r}: data is not a (nested) list of {datatype} numbers: {exc}") from None
    if array.size != count:
        raise InvalidArgument(f"input {name!r}: shape {list(shape)} needs {count} elements, data holds {array.size}")
    return array.reshape(shape)


def decode_inputs(request: RestInferRequest, model: LoadedModel) -> dict[str, np.ndarray]:
    """The request's input tensors as arrays, checked against the model's names and datatypes."""
    arrays: dict[str, np.ndarray] = {}
    signature = model.inputs_by_name
    limit = model.max_elements
    binary = request.binary
    offset = 0
    for tensor in request.inputs:
        name = tensor.get("name")
        datatype = tensor.get("datatype")
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise InvalidArgument("every input needs a string 'name' and 'datatype'")
        info = signature.get(name)
        if info is None or datatype != info.datatype or name in arrays:
            _tensor_error(model, name, datatype, arrays)
        shape = _shape(tensor, name)
        count = math.prod(shape)
        if count > limit:
            raise InvalidArgument(
                f"input {name!r}: shape {list(shape)} has {count} elements, more than the limit of {limit}"
            )
        params = tensor.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if "data" in tensor:
                raise InvalidArgument(f"input {name!r}: send either 'data' or parameters.binary_data_size, not both")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidArgument(f"input {name!r}: binary_data_size must be a non-negative integer")
            if offset + size > len(binary):
                raise InvalidArgument(
                    f"input {name!r}: binary_data_size {size} goes past the end of the body "
                    f"({len(binary) - offset} binary bytes left after the earlier inputs)"
                )
            arrays[name] = decode_raw(binary[offset : offset + size], datatype, shape, name)  # type: ignore[arg-type]
            offset += size
        elif "data" in tensor:
            arrays[name] = _from_json(tensor["data"], datatype, shape, name)
        else:
            raise InvalidArgument(f"input {name!r}: give 'data' or parameters.binary_data_size")
    if offset != len(binary):
        raise InvalidArgument(
            f"the body has {len(binary) - offset} binary bytes that no input's binary_data_size accounts for"
        )
    return arrays


def output_selection(request: RestInferRequest, model: LoadedModel) -> tuple[Sequence[int] | None, list[bool]]:
    """Indices of the requested outputs (None = all) and, per model output, whether it goes back binary."""
    default_binary = request.parameters.get("binary_data_output") is True
    binary = [default_binary] * len(model.outputs)
    wanted = request.header.get("outputs")
    if wanted is None:
        return None, binary
    if not isinstance(wanted, list) or not all(isinstance(w, dict) for w in wanted):
        raise InvalidArgument("'outputs' must be a list of objects {name, parameters}")
    indices: list[int] = []
    for entry in wanted:
        wanted_name = entry.get("name")
        index = model.output_index.get(wanted_name) if isinstance(wanted_name, str) else None
        if index is None:
            have = ", ".join(repr(o.name) for o in model.outputs)
            raise InvalidArgument(f"model {model.name}: unknown output {entry.get('name')!r}; the model has {have}")
        params = entry.get("parameters")
        if isinstance(params, dict) and "binary_data" in params:
            binary[index] = params["binary_data"] is True
        indices.append(index)
    return indices, binary


def _json_data(array: np.ndarray, datatype: str) -> Any:
    flat = array.reshape(-1)
    if datatype == "BYTES":
        return [x if isinstance(x, str) else bytes(x).decode("utf-8", "replace") for x in flat]
    if flat.dtype.kind not in _NATIVE_KINDS or (flat.dtype.itemsize < 4 and flat.dtype.kind == "f"):
        flat = flat.astype(np.float32)
    return np.ascontiguousarray(flat)


def encode_response(
    request: RestInferRequest,
    model: LoadedModel,
    outputs: Sequence[np.ndarray],
    selected: Sequence[int] | None,
    binary: Sequence[bool],
) -> tuple[bytes, int | None]:
    """The response body and, when it carries binary outputs, the length of its JSON part."""
    infos = model.outputs
    tensors = []
    chunks: list[bytes] = []
    for index in range(len(outputs)) if selected is None else selected:
        array = outputs[index]
        info = infos[index]
        tensor: dict[str, Any] = {"name": info.name, "datatype": info.datatype, "shape": list(array.shape)}
        if binary[index]:
            raw = encode_raw(array, info.datatype)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = _json_data(array, info.datatype)
        tensors.append(tensor)
    body: dict[str, Any] = {"model_name": model.name, "model_version": model.version, "outputs": tensors}
    if request.id:
        body["id"] = request.id
    header = orjson.dumps(body, option=_JSON_OPTIONS)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)
