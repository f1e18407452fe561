"""grpc.health.v1 with Watch streams that end when the server drains.

The stock asyncio ``HealthServicer`` keeps every Watch stream open until the client leaves, so one
watcher makes a graceful stop wait out its whole grace period. Here a watcher gets NOT_SERVING when
draining starts and then its stream ends (OK): the client reconnects elsewhere, as the health protocol
expects of a watcher whose stream ends.
"""

from __future__ import annotations

from typing import Any

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer


class DrainingHealthServicer(HealthServicer):
    """``HealthServicer`` whose Watch ends after it has sent NOT_SERVING during a graceful shutdown."""

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        service = request.service
        condition = self._server_watchers[service]
        self._watcher_count_by_service[service] += 1
        last = None
        try:
            async with condition:
                while True:
                    status = self._server_status.get(service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
                    if status != last:
                        await context.write(health_pb2.HealthCheckResponse(status=status))
                        last = status
                    if self._gracefully_shutting_down:
                        # Draining may have begun while this watcher was still sending the previous status
                        # (it holds the lock then, so the NOT_SERVING update waits behind it): say it now.
                        if last != health_pb2.HealthCheckResponse.NOT_SERVING:
                            await context.write(
                                health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.NOT_SERVING)
                            )
                        return
                    await condition.wait()
        finally:
            self._watcher_count_by_service[service] -= 1
            if self._watcher_count_by_service[service] == 0:
                del self._server_watchers[service]
                del self._watcher_count_by_service[service]

    async def enter_graceful_shutdown(self) -> None:
        """NOT_SERVING for every service, and every watcher woken (those of unknown services too)."""
        await super().enter_graceful_shutdown()
        for condition in list(self._server_watchers.values()):
            async with condition:
                condition.notify_all()
