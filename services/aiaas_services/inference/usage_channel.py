"""The registry's UsageService as the usage flusher's ``send``: counts become one ``RecordUsage`` call."""

from __future__ import annotations

from aiaas.usage.v1 import usage_pb2, usage_pb2_grpc
from aiaas_services.inference.settings import InferenceSettings
from aiaas_services.inference.usage import Counts
from aiaas_services.runtime.channels import open_channel


class RegistryUsageSender:
    """Sends usage counts to the registry; the channel opens on the first send (inside the running loop)."""

    def __init__(self, settings: InferenceSettings, source: str) -> None:
        self.settings = settings
        self.source = source
        self._stub: usage_pb2_grpc.UsageServiceStub | None = None

    async def __call__(self, counts: Counts, hour: int) -> None:
        """One ``RecordUsage`` with every (principal, model) row, stamped with the start of ``hour``."""
        request = usage_pb2.RecordUsageRequest(source=self.source)
        for (principal, model), row in counts.items():
            entry = request.entries.add(
                principal=principal, model=model, requests=int(row[0]), rows=int(row[1]), compute_seconds=row[2] / 1e9
            )
            entry.period_start.FromSeconds(hour)
        if self._stub is None:
            self._stub = usage_pb2_grpc.UsageServiceStub(open_channel(self.settings.registry_target, self.settings))
        await self._stub.RecordUsage(request, timeout=10)
