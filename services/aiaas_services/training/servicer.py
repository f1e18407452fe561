"""The TrainingService servicer: proto in, codec, engine call, proto out. Errors are mapped by the runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from opentelemetry import propagate, trace

from aiaas.common.v1 import common_pb2
from aiaas.training.v1 import training_pb2, training_pb2_grpc
from aiaas_services.runtime.errors import InvalidArgument
from aiaas_services.training import codec
from aiaas_services.training.engine import JobEngine

tracer = trace.get_tracer(__name__)


class TrainingServicer(training_pb2_grpc.TrainingServiceServicer):
    """``aiaas.training.v1.TrainingService`` over the job engine."""

    def __init__(self, engine: JobEngine) -> None:
        self.engine = engine

    async def StartTrainingJob(
        self, request: training_pb2.StartTrainingJobRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.StartTrainingJobResponse:
        with tracer.start_as_current_span("training.start_job") as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            span_context = span.get_span_context()
            trace_id = format(span_context.trace_id, "032x") if span_context.is_valid else ""
            spec = codec.job_spec_from_proto(request.spec)
            wire = request.spec.SerializeToString(deterministic=True)
            job = await self.engine.submit(spec, request.request_id, carrier, trace_id, wire)
            span.set_attribute("training.job_id", job.job_id)
        return training_pb2.StartTrainingJobResponse(job=codec.job_to_proto(job))

    async def GetJob(
        self, request: training_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.GetJobResponse:
        job = self.engine.get(request.job_id)
        return training_pb2.GetJobResponse(job=codec.job_to_proto(job, self.engine.history(job.job_id)))

    async def ListJobs(
        self, request: training_pb2.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.ListJobsResponse:
        state = None
        if request.state != common_pb2.JOB_STATE_UNSPECIFIED:
            if request.state not in codec.STATE_FROM_PROTO:
                raise InvalidArgument(f"state {request.state} is not a job state")
            state = codec.STATE_FROM_PROTO[request.state]
        jobs, token = self.engine.list_jobs(request.page_size, request.page_token, state)
        return training_pb2.ListJobsResponse(jobs=[codec.job_to_proto(j) for j in jobs], next_page_token=token)

    async def CancelJob(
        self, request: training_pb2.CancelJobRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.CancelJobResponse:
        job = await self.engine.cancel(request.job_id)
        return training_pb2.CancelJobResponse(job=codec.job_to_proto(job, self.engine.history(job.job_id)))

    async def WatchJob(
        self, request: training_pb2.WatchJobRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[training_pb2.WatchJobResponse]:
        async for event in self.engine.watch(request.job_id, request.after_sequence):
            yield codec.event_to_proto(event)
