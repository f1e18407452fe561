"""The gRPC face of the serialization service: messages in, records via ``codec`` to ExportJobs and
Importer, messages out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from aiaas.serialization.v1 import serialization_pb2 as pb
from aiaas.serialization.v1 import serialization_pb2_grpc
from aiaas_services.runtime.errors import Unavailable
from aiaas_services.serialization import codec
from aiaas_services.serialization.importer import Importer
from aiaas_services.serialization.jobs import ExportJobs


class SerializationServicer(serialization_pb2_grpc.SerializationServiceServicer):
    """Maps each RPC onto the domain objects; errors are mapped to statuses by the shared interceptor."""

    def __init__(self) -> None:
        self._jobs: ExportJobs | None = None
        self._importer: Importer | None = None

    def attach(self, jobs: ExportJobs, importer: Importer) -> None:
        """Called by the app's start(), before health turns SERVING."""
        self._jobs, self._importer = jobs, importer

    @property
    def jobs(self) -> ExportJobs:
        if self._jobs is None:
            raise Unavailable("the serialization service is still starting")
        return self._jobs

    @property
    def importer(self) -> Importer:
        if self._importer is None:
            raise Unavailable("the serialization service is still starting")
        return self._importer

    async def StartExportJob(
        self, request: pb.StartExportJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartExportJobResponse:
        return pb.StartExportJobResponse(job=codec.job_to(await self.jobs.start_job(codec.request_from(request))))

    async def GetExportJob(
        self, request: pb.GetExportJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetExportJobResponse:
        return pb.GetExportJobResponse(job=codec.job_to(await self.jobs.get(request.job_id)))

    async def ListExportJobs(
        self, request: pb.ListExportJobsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListExportJobsResponse:
        jobs, token = await self.jobs.list(codec.state_name(request.state), request.page_size, request.page_token)
        return pb.ListExportJobsResponse(jobs=[codec.job_to(j) for j in jobs], next_page_token=token)

    async def CancelExportJob(
        self, request: pb.CancelExportJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelExportJobResponse:
        return pb.CancelExportJobResponse(job=codec.job_to(await self.jobs.cancel(request.job_id)))

    async def WatchExportJob(
        self, request: pb.WatchExportJobRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchExportJobResponse]:
        async for event in self.jobs.watch(request.job_id, request.after_sequence):
            yield codec.event_to(event)

    async def ImportModel(
        self, request_iterator: AsyncIterator[pb.ImportModelRequest], context: grpc.aio.ServicerContext
    ) -> pb.ImportModelResponse:
        return codec.imported_to(await self.importer.import_model(codec.import_parts(request_iterator)))
