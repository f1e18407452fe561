"""Wires the serialization servicer into the shared runtime."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from aiaas.client.registry import RegistryClient
from aiaas.explain.v1 import explain_pb2, explain_pb2_grpc
from aiaas.serialization.v1 import serialization_pb2, serialization_pb2_grpc
from aiaas_services.runtime.channels import open_channel
from aiaas_services.serialization.explain_servicer import ExplanationServicer
from aiaas_services.serialization.explainer import Explainer
from aiaas_services.serialization.importer import Importer
from aiaas_services.serialization.jobs import ExportJobs
from aiaas_services.serialization.servicer import SerializationServicer
from aiaas_services.serialization.settings import SerializationSettings
from aiaas_services.serialization.store import JobStore


class SerializationApp:
    """The serialization service as the runtime sees it."""

    def __init__(self, settings: SerializationSettings) -> None:
        self.settings = settings
        self.channel: grpc.aio.Channel | None = None
        self.jobs: ExportJobs | None = None
        self.servicer = SerializationServicer()
        self.explanations = ExplanationServicer()

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        serialization_pb2_grpc.add_SerializationServiceServicer_to_server(self.servicer, server)
        explain_pb2_grpc.add_ExplanationServiceServicer_to_server(self.explanations, server)
        return [
            serialization_pb2.DESCRIPTOR.services_by_name["SerializationService"].full_name,
            explain_pb2.DESCRIPTOR.services_by_name["ExplanationService"].full_name,
        ]

    async def start(self) -> None:
        """Open the job database and the registry channel (connects lazily), recover, start scheduling."""
        store = JobStore(self.settings.data_dir / "jobs.db")
        self.channel = open_channel(self.settings.registry_target, self.settings)
        registry = RegistryClient(self.channel, actor="serialization", timeout=self.settings.registry_timeout_seconds)
        self.jobs = ExportJobs(self.settings, store, registry)
        await self.jobs.start()
        self.servicer.attach(self.jobs, Importer(self.settings, registry))
        self.explanations.explainer = Explainer(registry, self.settings.data_dir / "explain")

    async def close(self) -> None:
        if self.jobs:
            await self.jobs.close()
        if self.channel:
            await self.channel.close()
