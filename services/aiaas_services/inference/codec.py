"""Protocol messages <-> domain values for ModelInfer (proto in, arrays out; arrays in, proto out).

Kept apart from the servicer so it is unit-tested without a server, and lean: raw contents become
numpy views (``np.frombuffer``), outputs become one ``tobytes()`` each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from aiaas.oip.v2 import grpc_service_pb2 as pb
from aiaas_services.inference.model import LoadedModel
from aiaas_services.inference.tensors import V2_TO_NUMPY, decode_contents, decode_raw, encode_raw
from aiaas_services.runtime.errors import InvalidArgument

ModelInferRequest = pb.ModelInferRequest
ModelInferResponse = pb.ModelInferResponse


def request_variant(request: pb.ModelInferRequest) -> str:
    """The ``variant`` request parameter (a string), or ''."""
    if not request.parameters or "variant" not in request.parameters:
        return ""
    param = request.parameters["variant"]
    if param.WhichOneof("parameter_choice") != "string_param":
        raise InvalidArgument("parameter 'variant' must be a string such as 'fp32' or 'int8-dynamic'")
    variant: str = param.string_param
    return variant


def decode_inputs(request: pb.ModelInferRequest, model: LoadedModel) -> dict[str, np.ndarray]:
    """The request's input tensors as arrays, checked against the model's names and datatypes."""
    raw = request.raw_input_contents
    tensors = request.inputs
    if raw and len(raw) != len(tensors):
        raise InvalidArgument(
            f"raw_input_contents has {len(raw)} entries for {len(tensors)} inputs; send one per input, in order"
        )
    arrays: dict[str, np.ndarray] = {}
    limit = model.max_elements
    signature = model.inputs_by_name
    for index, tensor in enumerate(tensors):
        name = tensor.name
        info = signature.get(name)
        datatype = tensor.datatype
        if info is None or datatype != info.datatype or name in arrays:
            _tensor_error(model, name, datatype, arrays)
        shape = tuple(tensor.shape)
        count = math.prod(shape)
        if count > limit or (shape and min(shape) < 0):
            if min(shape) < 0:
                raise InvalidArgument(f"input {name!r}: shape {list(shape)} has a negative dimension")
            raise InvalidArgument(
                f"input {name!r}: shape {list(shape)} has {count} elements, more than the limit of {limit}"
            )
        if raw:
            if tensor.HasField("contents"):
                raise InvalidArgument(f"input {name!r}: send either raw_input_contents or contents, not both")
            arrays[name] = decode_raw(raw[index], datatype, shape, name)
        else:
            arrays[name] = decode_contents(tensor.contents, datatype, shape, name)
    return arrays


def _tensor_error(model: LoadedModel, name: str, datatype: str, seen: dict[str, np.ndarray]) -> None:
    """Raise the precise error for an unknown, repeated or mistyped input."""
    info = model.input_info(name)
    if info is None:
        expected = ", ".join(repr(i.name) for i in model.inputs)
        raise InvalidArgument(f"model {model.name}: unknown input {name!r}; the model takes {expected}")
    if name in seen:
        raise InvalidArgument(f"input {name!r} appears twice")
    detail = "" if datatype in V2_TO_NUMPY else " (not a V2 datatype)"
    raise InvalidArgument(
        f"model {model.name}: input {name!r} has datatype {datatype!r}{detail}, the model expects {info.datatype}"
    )


def output_selection(request: pb.ModelInferRequest, model: LoadedModel) -> Sequence[int] | None:
    """Indices of the requested outputs (None = all), each checked to exist."""
    if not request.outputs:
        return None
    indices: list[int] = []
    for wanted in request.outputs:
        index = model.output_index.get(wanted.name)
        if index is None:
            have = ", ".join(repr(o.name) for o in model.outputs)
            raise InvalidArgument(f"model {model.name}: unknown output {wanted.name!r}; the model has {have}")
        indices.append(index)
    return indices


def encode_response(
    request: pb.ModelInferRequest, model: LoadedModel, outputs: Sequence[np.ndarray], selected: Sequence[int] | None
) -> pb.ModelInferResponse:
    """A ModelInferResponse with raw output contents (the request id echoed).

    Filled in place (``outputs.add()``, ``shape.extend``): building sub-messages and handing them to the
    constructor copies each one again.
    """
    infos = model.outputs
    response = pb.ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id)
    tensors = response.outputs
    raw = response.raw_output_contents
    for index in range(len(outputs)) if selected is None else selected:
        array = outputs[index]
        info = infos[index]
        tensor = tensors.add()
        tensor.name = info.name
        tensor.datatype = info.datatype
        tensor.shape.extend(array.shape)
        raw.append(encode_raw(array, info.datatype))
    return response
