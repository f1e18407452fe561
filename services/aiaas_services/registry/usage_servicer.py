"""gRPC adapter of usage metering (``aiaas.usage.v1.UsageService``), served by the registry process."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc

from aiaas.usage.v1 import usage_pb2, usage_pb2_grpc
from aiaas_services.registry import usage
from aiaas_services.registry.catalog import Registry
from aiaas_services.runtime.errors import InvalidArgument
from aiaas_services.runtime.messages import same_named


def entry_from_proto(entry: usage_pb2.UsageEntry) -> usage.UsageCount:
    """A usage count from its message."""
    return usage.UsageCount(
        entry.principal,
        entry.model,
        entry.requests,
        entry.rows,
        entry.compute_seconds,
        entry.period_start.seconds if entry.HasField("period_start") else int(datetime.now(UTC).timestamp()),
    )


def entry_to_proto(count: usage.UsageCount) -> usage_pb2.UsageEntry:
    """A usage count as its message."""
    entry = usage_pb2.UsageEntry(**same_named(count, "principal", "model", "requests", "rows", "compute_seconds"))
    entry.period_start.FromSeconds(count.period_start)
    return entry


class UsageServicer(usage_pb2_grpc.UsageServiceServicer):
    """RecordUsage / ListUsage over the registry's database (work on the registry's thread pool)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def RecordUsage(
        self, request: usage_pb2.RecordUsageRequest, context: grpc.aio.ServicerContext
    ) -> usage_pb2.RecordUsageResponse:
        entries = [entry_from_proto(e) for e in request.entries]
        recorded = await self.registry.run(usage.record, self.registry.store.engine, entries)
        return usage_pb2.RecordUsageResponse(recorded=recorded)

    async def ListUsage(
        self, request: usage_pb2.ListUsageRequest, context: grpc.aio.ServicerContext
    ) -> usage_pb2.ListUsageResponse:
        since = None
        if request.HasField("since"):
            if not 0 <= request.since.seconds < 253402300800 or not 0 <= request.since.nanos < 10**9:  # year 10000
                raise InvalidArgument("since is outside 1970..9999 (or its nanos outside 0..999999999)")
            since = request.since.ToDatetime(tzinfo=UTC)
        counts = await self.registry.run(
            usage.totals, self.registry.store.engine, request.principal, request.model, since
        )
        return usage_pb2.ListUsageResponse(totals=[entry_to_proto(c) for c in counts])
