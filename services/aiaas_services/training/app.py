"""The training service's wiring into the runtime: servicer, job engine, registry publisher."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from aiaas.training.v1 import training_pb2, training_pb2_grpc
from aiaas_services.training import codec
from aiaas_services.training.engine import JobEngine
from aiaas_services.training.registration import RegistryPublisher
from aiaas_services.training.servicer import TrainingServicer
from aiaas_services.training.settings import TrainingSettings


class TrainingApp:
    """The training service as the runtime sees it."""

    def __init__(self, settings: TrainingSettings) -> None:
        self.settings = settings
        self.publisher = RegistryPublisher(settings)
        self.engine = JobEngine(settings, self.publisher)

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        training_pb2_grpc.add_TrainingServiceServicer_to_server(TrainingServicer(self.engine), server)
        return [training_pb2.DESCRIPTOR.services_by_name["TrainingService"].full_name]

    async def start(self) -> None:
        """Start the warm workers and resume jobs a previous run left (before health turns SERVING)."""
        for job_id, request in self.engine.store.unparsed():  # jobs stored before their JobSpec was
            spec = training_pb2.TrainingSpec.FromString(request)
            self.engine.store.set_spec(job_id, codec.job_spec_from_proto(spec))
        await self.engine.start()

    async def drain(self) -> None:
        """When shutdown starts: end watch streams so they do not hold the grace period."""
        self.engine.drain_watchers()

    async def close(self) -> None:
        """Stop the workers (running jobs resume on the next start) and close channels."""
        await self.engine.close()
        await self.publisher.close()
