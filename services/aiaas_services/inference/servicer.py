"""The Open Inference Protocol servicer: thin adapters from messages to the manager and the batchers.

Errors are domain errors (``aiaas_services.runtime.errors``) mapped to statuses by the shared
interceptor, except on the stream, where each failed request answers in-stream with ``error_message``
(what Triton's client expects) and the stream keeps going.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import onnxruntime as ort

from aiaas.oip.v2 import grpc_service_pb2 as pb
from aiaas.oip.v2 import grpc_service_pb2_grpc
from aiaas_services.inference import plane
from aiaas_services.inference.codec import decode_inputs, encode_response, output_selection, request_variant
from aiaas_services.inference.manager import ModelManager
from aiaas_services.inference.metrics import REQUEST_COUNTS
from aiaas_services.inference.model import LoadedModel
from aiaas_services.inference.monitor import DriftMonitor
from aiaas_services.inference.usage import UsageMeter
from aiaas_services.runtime.auth import current_principal
from aiaas_services.runtime.errors import INTERNAL_MESSAGE, DomainError, InvalidArgument, NotFound, status_for

logger = logging.getLogger(__name__)

SERVER_NAME = "aiaas-inference"
SERVER_VERSION = "0.1.0"
EXTENSIONS = ["model_repository", "model_configuration", "statistics", "schedule_policy", "binary_tensor_data"]
PLATFORM = "onnxruntime_onnx"

_CONFIG_TYPES = {
    "BOOL": pb.TYPE_BOOL,
    "UINT8": pb.TYPE_UINT8,
    "UINT16": pb.TYPE_UINT16,
    "UINT32": pb.TYPE_UINT32,
    "UINT64": pb.TYPE_UINT64,
    "INT8": pb.TYPE_INT8,
    "INT16": pb.TYPE_INT16,
    "INT32": pb.TYPE_INT32,
    "INT64": pb.TYPE_INT64,
    "FP16": pb.TYPE_FP16,
    "FP32": pb.TYPE_FP32,
    "FP64": pb.TYPE_FP64,
    "BF16": pb.TYPE_BF16,
    "BYTES": pb.TYPE_STRING,
}


def _duration(count: int, ns: int) -> pb.StatisticDuration:
    return pb.StatisticDuration(count=count, ns=ns)


class InferenceServicer(grpc_service_pb2_grpc.GRPCInferenceServiceServicer):
    """GRPCInferenceService over a ModelManager."""

    def __init__(
        self,
        manager: ModelManager,
        ready: asyncio.Event,
        stream_max_in_flight: int = 16,
        usage: UsageMeter | None = None,
        monitor: DriftMonitor | None = None,
    ) -> None:
        self.manager = manager
        self.ready = ready
        self.stream_max_in_flight = max(1, stream_max_in_flight)
        self.counts = REQUEST_COUNTS
        self.usage = usage
        self.monitor = monitor

    # ---- health-like ----------------------------------------------------------------------------------

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.ready.is_set())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        # Like Triton: an unknown model is simply not ready (inference on it answers NOT_FOUND).
        return pb.ModelReadyResponse(ready=self.manager.is_ready(request.name, request.version))

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=SERVER_VERSION, extensions=EXTENSIONS)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        model = self.manager.resolve(request.name, request.version)
        served = self.manager.served[request.name]
        meta = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=model.name,
            versions=sorted(served.versions, key=int),
            platform=PLATFORM,  # exactly Triton's name; the provider and variant are in ModelConfig.parameters
            inputs=[meta(name=i.name, datatype=i.datatype, shape=i.shape) for i in model.inputs],
            outputs=[meta(name=o.name, datatype=o.datatype, shape=o.shape) for o in model.outputs],
        )

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Any) -> pb.ModelConfigResponse:
        model = self.manager.resolve(request.name, request.version)
        return pb.ModelConfigResponse(config=self._config(model))

    def _config(self, model: LoadedModel) -> pb.ModelConfig:
        policy = model.policy
        batching = model.batchable
        strip = 1 if batching else 0
        source = model.source
        config = pb.ModelConfig(
            name=model.name,
            platform=PLATFORM,
            backend="onnxruntime",
            max_batch_size=policy.max_batch_size if batching else 0,
            input=[
                pb.ModelInput(name=i.name, data_type=_CONFIG_TYPES[i.datatype], dims=i.shape[strip:])
                for i in model.inputs
            ],
            output=[
                pb.ModelOutput(name=o.name, data_type=_CONFIG_TYPES[o.datatype], dims=o.shape[strip:])
                for o in model.outputs
            ],
            instance_group=[
                pb.ModelInstanceGroup(
                    name=f"{model.name}_{model.version}",
                    count=model.instance_count,
                    kind=pb.ModelInstanceGroup.KIND_GPU
                    if model.provider == "CUDAExecutionProvider"
                    else pb.ModelInstanceGroup.KIND_CPU,
                )
            ],
            default_model_filename="model.onnx",
        )
        if batching:
            config.dynamic_batching.CopyFrom(
                pb.ModelDynamicBatching(
                    preferred_batch_size=list(policy.preferred_batch_sizes),
                    max_queue_delay_microseconds=int(policy.max_queue_delay_s * 1e6),
                )
            )
        facts = {
            "variant": source.variant,
            "execution_provider": model.provider,
            "execution_providers": ",".join(model.providers),
            "registry_version": source.version if source.origin == "registry" else "",
            "alias": source.alias,
            "source": source.origin,
            "sha256": source.sha256,
            "preferred_provider": source.tags.get("preferred_provider", ""),
        }
        for key, value in facts.items():
            if value:
                config.parameters[key].string_value = value
        return config

    # ---- inference ------------------------------------------------------------------------------------

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        remaining = context.time_remaining()
        return await self._infer(request, None if remaining is None else time.monotonic() + remaining)

    async def _infer(self, request: pb.ModelInferRequest, deadline: float | None) -> pb.ModelInferResponse:
        def decode(model: LoadedModel) -> tuple[dict[str, Any], Sequence[int] | None]:
            return decode_inputs(request, model), output_selection(request, model)

        variant = request_variant(request)
        result = await plane.infer(self.manager, request.model_name, request.model_version, variant, decode, deadline)
        if self.usage is not None:
            self.usage.add(current_principal.get(), result.model.name, result.rows, result.elapsed_ns)
        if self.monitor is not None:
            self.monitor.observe(result.model, result.inputs, result.outputs, request.id)
        return encode_response(request, result.model, result.outputs, result.selected)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: Any
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Requests run concurrently; answers come back in request order; a failure answers in-stream.

        At most ``stream_max_in_flight`` requests of a stream are in work or wait for their reply to be
        sent; at that bound the stream stops reading, so HTTP/2 flow control holds the client's writes
        back (a client that sends without reading cannot grow the server's memory).
        """
        pending: asyncio.Queue[asyncio.Task[pb.ModelInferResponse] | None] = asyncio.Queue()
        slots = asyncio.Semaphore(self.stream_max_in_flight)

        async def read() -> None:
            try:
                while True:
                    await slots.acquire()
                    request = await anext(request_iterator, None)
                    if request is None:
                        return
                    remaining = context.time_remaining()
                    deadline = None if remaining is None else time.monotonic() + remaining
                    pending.put_nowait(asyncio.ensure_future(self._infer(request, deadline)))
            finally:
                pending.put_nowait(None)

        reader = asyncio.ensure_future(read())
        try:
            while (task := await pending.get()) is not None:
                try:
                    yield pb.ModelStreamInferResponse(infer_response=await task)
                except Exception as exc:
                    if not isinstance(exc, DomainError):
                        logger.exception("stream inference failed")
                    code, message = status_for(exc)
                    text = message if code != grpc.StatusCode.INTERNAL else INTERNAL_MESSAGE
                    yield pb.ModelStreamInferResponse(error_message=f"{code.name}: {text}")
                finally:
                    slots.release()  # after the reply was handed to grpc (or failed)
            await reader
        finally:
            reader.cancel()
            while not pending.empty():  # the client went away: its queued requests need not run
                left = pending.get_nowait()
                if left is not None:
                    left.cancel()

    # ---- statistics and repository --------------------------------------------------------------------

    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: Any) -> pb.ModelStatisticsResponse:
        if request.name:
            if not self.manager.known(request.name):
                raise NotFound(f"model {request.name!r} is not served here")
            served = self.manager.served.get(request.name)
            models = list(served.versions.values()) if served else []
            if request.version:
                models = [m for m in models if m.version == request.version]
                if not models:
                    raise NotFound(f"model {request.name}: version {request.version!r} is not loaded")
        else:
            models = [m for s in self.manager.served.values() for m in s.versions.values()]
        return pb.ModelStatisticsResponse(model_stats=[self._statistics(m) for m in models])

    def _statistics(self, model: LoadedModel) -> pb.ModelStatistics:
        stats = model.batcher.stats
        ok_n, ok_ns, fail_n, fail_ns = self.counts.get(model.name, model.version)
        return pb.ModelStatistics(
            name=model.name,
            version=model.version,
            last_inference=stats.last_inference_ms,
            inference_count=stats.inferences,
            execution_count=stats.executions,
            inference_stats=pb.InferStatistics(
                success=_duration(ok_n, ok_ns),
                fail=_duration(fail_n, fail_ns),
                queue=_duration(stats.queue_count, stats.queue_ns),
                compute_infer=_duration(stats.executions, stats.compute_ns),
            ),
            batch_stats=[
                pb.InferBatchStatistics(batch_size=size, compute_infer=_duration(count, ns))
                for size, (count, ns) in sorted(stats.batch_sizes.items())
            ],
        )

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Any) -> pb.RepositoryIndexResponse:
        index = pb.RepositoryIndexResponse.ModelIndex
        rows = [
            index(name=name, version=version, state=state, reason=reason)
            for name, version, state, reason in self.manager.index()
            if not request.ready or state == "READY"
        ]
        return pb.RepositoryIndexResponse(models=rows)

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Any
    ) -> pb.RepositoryModelLoadResponse:
        if not request.model_name:
            raise InvalidArgument("model_name is required")
        if not self.manager.known(request.model_name):
            raise NotFound(f"model {request.model_name!r} is neither in the model repository nor configured")
        await self.manager.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> pb.RepositoryModelUnloadResponse:
        if not request.model_name:
            raise InvalidArgument("model_name is required")
        await self.manager.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()


def providers_available() -> list[str]:
    """What this onnxruntime build offers (CUDA is listed even without a GPU; see providers.py)."""
    return list(ort.get_available_providers())
