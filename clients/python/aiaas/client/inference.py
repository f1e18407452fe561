"""Client of the inference service (Open Inference Protocol over gRPC): numpy in, numpy out.

``InferenceClient`` is asyncio-based (``grpc.aio``); ``SyncInferenceClient`` is the same for scripts
and threads. Tensors travel as raw little-endian bytes; BYTES tensors (numpy object/str/bytes arrays)
carry each element with a 4-byte length prefix. Every call takes a ``timeout`` (seconds), sent as the
gRPC deadline: the server drops a queued request whose deadline passed (DEADLINE_EXCEEDED). Inference
and the other reads wait out a restart of the service within that deadline (up to ``restart_wait_s``,
default 30 s): on UNAVAILABLE they wait for the channel to reconnect and are sent again
(``aiaas.client.retry.call_across_restart``); load/unload and streams are never re-sent.

    async with grpc.aio.insecure_channel("127.0.0.1:8001") as channel:
        client = InferenceClient(channel)
        result = await client.infer("digits-mlp-onnx", {"input": x}, timeout=1.0)
        logits = result.outputs["output"]
"""

from __future__ import annotations

import functools
import struct
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import ml_dtypes
import numpy as np

from aiaas.client.channels import aio_channel, dial
from aiaas.client.retry import RESTART_WAIT_S, call_across_restart, call_across_restart_async
from aiaas.oip.v2 import grpc_service_pb2 as pb
from aiaas.oip.v2 import grpc_service_pb2_grpc

# V2 datatype -> numpy dtype (little-endian); BF16 is ml_dtypes.bfloat16, as tritonclient has it.
_DTYPES: dict[str, Any] = {
    "BOOL": "|b1",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
    "BF16": ml_dtypes.bfloat16,
}
_LENGTH = struct.Struct("<I")


def datatype_of(array: np.ndarray) -> str:
    """The V2 datatype of an array (object, str and bytes arrays are BYTES)."""
    if array.dtype.kind in ("O", "S", "U"):
        return "BYTES"
    for name, dtype in _DTYPES.items():
        if np.dtype(dtype) == array.dtype.newbyteorder("<") or np.dtype(dtype) == array.dtype:
            return name
    raise ValueError(f"arrays of dtype {array.dtype} have no Open Inference Protocol datatype")


def encode_tensor(array: np.ndarray) -> tuple[str, bytes]:
    """(datatype, raw bytes) of an array."""
    datatype = datatype_of(array)
    if datatype == "BYTES":
        parts = []
        for item in array.reshape(-1):
            data = item.encode() if isinstance(item, str) else bytes(item)
            parts += [_LENGTH.pack(len(data)), data]
        return datatype, b"".join(parts)
    return datatype, np.ascontiguousarray(array, dtype=np.dtype(_DTYPES[datatype])).tobytes()


def decode_tensor(raw: bytes, datatype: str, shape: Sequence[int]) -> np.ndarray:
    """Raw output bytes -> an array (a read-only view for fixed-size types; bytes objects for BYTES)."""
    if datatype == "BYTES":
        items: list[bytes] = []
        offset = 0
        while offset < len(raw):
            (length,) = _LENGTH.unpack_from(raw, offset)
            items.append(raw[offset + 4 : offset + 4 + length])
            offset += 4 + length
        array = np.empty(len(items), dtype=object)
        array[:] = items
        return array.reshape(shape)
    return np.frombuffer(raw, dtype=np.dtype(_DTYPES[datatype])).reshape(shape)


def build_request(
    model: str,
    inputs: Mapping[str, np.ndarray],
    version: str | int = "",
    outputs: Sequence[str] = (),
    request_id: str = "",
    variant: str = "",
) -> pb.ModelInferRequest:
    """A ModelInferRequest with raw input contents."""
    request = pb.ModelInferRequest(model_name=model, model_version=str(version or ""), id=request_id)
    for name, value in inputs.items():
        array = np.asarray(value)
        datatype, raw = encode_tensor(array)
        request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
        request.raw_input_contents.append(raw)
    for name in outputs:
        request.outputs.add(name=name)
    if variant:
        request.parameters["variant"].string_param = variant
    return request


@dataclass
class InferResult:
    """A decoded response: outputs by name, the version that answered and the echoed id."""

    model: str
    version: str
    id: str
    outputs: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_response(cls, response: pb.ModelInferResponse) -> InferResult:
        """Decode raw (or typed FP32/INT64/BYTES) output contents."""
        outputs: dict[str, np.ndarray] = {}
        for index, tensor in enumerate(response.outputs):
            if index < len(response.raw_output_contents):
                outputs[tensor.name] = decode_tensor(
                    response.raw_output_contents[index], tensor.datatype, list(tensor.shape)
                )
            else:
                values = (
                    tensor.contents.fp32_contents or tensor.contents.int64_contents or tensor.contents.bytes_contents
                )
                outputs[tensor.name] = np.asarray(list(values)).reshape(list(tensor.shape))
        return cls(response.model_name, response.model_version, response.id, outputs)


def top_k(scores: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    """(class index, score) of the k highest scores of each row."""
    k = max(1, min(k, scores.shape[-1]))
    order = np.argsort(-scores, axis=-1)[..., :k]
    return [[(int(i), float(row[i])) for i in idx] for row, idx in zip(scores, order, strict=True)]


def text_batch(texts: Sequence[str]) -> np.ndarray:
    """A list of strings as the 1-D BYTES tensor a text model takes (each sent as UTF-8)."""
    if isinstance(texts, str | bytes):
        raise TypeError("pass a list of strings, not one string")
    bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must all be str, got {bad[0]}")
    array = np.empty(len(texts), dtype=object)
    array[:] = list(texts)
    return array


class InferenceClient:
    """Async client of ``inference.GRPCInferenceService``."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        timeout: float | None = 10.0,
        restart_wait_s: float = RESTART_WAIT_S,
        on_wait: Callable[[grpc.RpcError, float], None] | None = None,
    ) -> None:
        self.stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        self.channel = channel
        self.timeout = timeout
        self.restart_wait_s = restart_wait_s  # 0 = fail at once when the server is away
        self.on_wait = on_wait  # told (error, seconds) when a call starts waiting for the server

    @classmethod
    def connect(
        cls,
        target: str | Sequence[str],
        timeout: float | None = 10.0,
        restart_wait_s: float = RESTART_WAIT_S,
        on_wait: Callable[[grpc.RpcError, float], None] | None = None,
    ) -> InferenceClient:
        """A client on a new insecure aio channel (call inside the event loop; ``close()`` when done).

        ``target``: one replica, ``a:p,b:p`` or a ``dns:///`` name, balanced as in ``SyncInferenceClient``.
        """
        return cls(aio_channel(target), timeout, restart_wait_s, on_wait)

    async def _read(self, call: Any, request: Any, timeout: float | None) -> Any:
        return await call_across_restart_async(call, request, timeout, self.channel, self.restart_wait_s, self.on_wait)

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close()

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        version: str | int = "",
        outputs: Sequence[str] = (),
        request_id: str = "",
        variant: str = "",
        timeout: float | None = None,
    ) -> InferResult:
        """Run one request; raises grpc.aio.AioRpcError with the server's status on failure."""
        request = build_request(model, inputs, version, outputs, request_id, variant)
        response = await self._read(self.stub.ModelInfer, request, timeout or self.timeout)
        return InferResult.from_response(response)

    async def infer_text(
        self, model: str, texts: Sequence[str], input_name: str = "text", version: str | int = "", variant: str = ""
    ) -> InferResult:
        """Send ``texts`` (list[str]) to a text model; outputs are its embedding, or logits/probabilities/label."""
        return await self.infer(model, {input_name: text_batch(texts)}, version, variant=variant)

    async def stream(
        self, requests: Iterable[pb.ModelInferRequest] | AsyncIterator[pb.ModelInferRequest]
    ) -> AsyncIterator[InferResult | str]:
        """ModelStreamInfer: yields a result per request, or the error message of a failed one."""
        async for answer in self.stub.ModelStreamInfer(requests):
            yield answer.error_message or InferResult.from_response(answer.infer_response)

    async def ready(self, model: str = "", version: str | int = "", timeout: float | None = None) -> bool:
        """Server readiness, or a model's."""
        if not model:
            response = await self._read(self.stub.ServerReady, pb.ServerReadyRequest(), timeout or self.timeout)
            return bool(response.ready)
        request = pb.ModelReadyRequest(name=model, version=str(version or ""))
        return bool((await self._read(self.stub.ModelReady, request, timeout or self.timeout)).ready)

    async def metadata(self, model: str, version: str | int = "") -> pb.ModelMetadataResponse:
        """Inputs, outputs, versions and platform (with the execution provider in use)."""
        request = pb.ModelMetadataRequest(name=model, version=str(version or ""))
        response: pb.ModelMetadataResponse = await self._read(self.stub.ModelMetadata, request, self.timeout)
        return response

    async def config(self, model: str, version: str | int = "") -> pb.ModelConfig:
        """The model's configuration (batching, instances, variant and provider in ``parameters``)."""
        request = pb.ModelConfigRequest(name=model, version=str(version or ""))
        config: pb.ModelConfig = (await self._read(self.stub.ModelConfig, request, self.timeout)).config
        return config

    async def statistics(self, model: str = "") -> pb.ModelStatisticsResponse:
        """Cumulative per-version statistics."""
        request = pb.ModelStatisticsRequest(name=model)
        response: pb.ModelStatisticsResponse = await self._read(self.stub.ModelStatistics, request, self.timeout)
        return response

    async def index(self) -> list[pb.RepositoryIndexResponse.ModelIndex]:
        """Every model version the server knows, with its state."""
        reply = await self._read(self.stub.RepositoryIndex, pb.RepositoryIndexRequest(), self.timeout)
        return list(reply.models)

    async def load(self, model: str) -> None:
        """Load (or reload) a model."""
        await self.stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name=model), timeout=None)

    async def unload(self, model: str) -> None:
        """Stop serving a model (queued requests finish)."""
        await self.stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name=model), timeout=None)


class SyncInferenceClient:
    """Blocking client over a ``grpc.Channel`` (scripts, the CLI, threads)."""

    def __init__(
        self,
        channel: grpc.Channel,
        timeout: float | None = 10.0,
        wait_for_ready: bool = False,
        restart_wait_s: float = RESTART_WAIT_S,
        on_wait: Callable[[grpc.RpcError, float], None] | None = None,
    ) -> None:
        self.stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        self.channel = channel
        self.timeout = timeout
        # Reads wait out a restart (UNAVAILABLE) for up to restart_wait_s within their deadline; 0 = fail at
        # once. wait_for_ready=True also holds each send until the channel connects (gRPC's own flag).
        self.wait_for_ready = wait_for_ready
        self.restart_wait_s = restart_wait_s
        self.on_wait = on_wait  # told (error, seconds) when a call starts waiting for the server

    @classmethod
    def connect(
        cls,
        target: str | Sequence[str],
        timeout: float | None = 10.0,
        wait_for_ready: bool = False,
        restart_wait_s: float = RESTART_WAIT_S,
        on_wait: Callable[[grpc.RpcError, float], None] | None = None,
    ) -> SyncInferenceClient:
        """A client on a new insecure channel to ``target``: one replica, ``a:p,b:p`` or a ``dns:///`` name.

        Several replicas are balanced round-robin with client-side health checking; inference calls are
        retried on UNAVAILABLE (see aiaas.client.channels) and wait out a restart (see the module doc).
        """
        resolved, options = dial(target)
        return cls(grpc.insecure_channel(resolved, options=options), timeout, wait_for_ready, restart_wait_s, on_wait)

    def _read(self, call: Any, request: Any, timeout: float | None) -> Any:
        if self.wait_for_ready:
            call = functools.partial(call, wait_for_ready=True)
        return call_across_restart(call, request, timeout, self.channel, self.restart_wait_s, self.on_wait)

    def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        version: str | int = "",
        outputs: Sequence[str] = (),
        request_id: str = "",
        variant: str = "",
        timeout: float | None = None,
    ) -> InferResult:
        """Run one request; raises grpc.RpcError with the server's status on failure."""
        request = build_request(model, inputs, version, outputs, request_id, variant)
        response = self._read(self.stub.ModelInfer, request, timeout or self.timeout)
        return InferResult.from_response(response)

    def infer_text(
        self, model: str, texts: Sequence[str], input_name: str = "text", version: str | int = "", variant: str = ""
    ) -> InferResult:
        """Send ``texts`` (list[str]) to a text model; outputs are its embedding, or logits/probabilities/label."""
        return self.infer(model, {input_name: text_batch(texts)}, version, variant=variant)

    def metadata(self, model: str, version: str | int = "") -> pb.ModelMetadataResponse:
        """Inputs, outputs, versions and platform."""
        request = pb.ModelMetadataRequest(name=model, version=str(version or ""))
        response: pb.ModelMetadataResponse = self._read(self.stub.ModelMetadata, request, self.timeout)
        return response

    def config(self, model: str, version: str | int = "") -> Any:
        """The model's configuration."""
        request = pb.ModelConfigRequest(name=model, version=str(version or ""))
        return self._read(self.stub.ModelConfig, request, self.timeout).config

    def ready(self, model: str = "", version: str | int = "") -> bool:
        """Server readiness, or a model's."""
        if not model:
            return bool(self._read(self.stub.ServerReady, pb.ServerReadyRequest(), self.timeout).ready)
        request = pb.ModelReadyRequest(name=model, version=str(version or ""))
        return bool(self._read(self.stub.ModelReady, request, self.timeout).ready)
