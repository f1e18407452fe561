"""The draining health servicer: a watcher always hears NOT_SERVING before its stream ends."""

from __future__ import annotations

import asyncio

from grpc_health.v1 import health_pb2

from aiaas_services.runtime.health import DrainingHealthServicer

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class SlowContext:
    """A Watch context whose first write completes only when the test lets it."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.release_first = asyncio.Event()

    async def write(self, response: health_pb2.HealthCheckResponse) -> None:
        if not self.sent:
            await self.release_first.wait()
        self.sent.append(response.status)


def test_draining_while_the_first_status_is_being_sent_still_says_not_serving() -> None:
    async def scenario() -> list[int]:
        health = DrainingHealthServicer()
        await health.set("", SERVING)
        context = SlowContext()
        watch = asyncio.create_task(health.Watch(health_pb2.HealthCheckRequest(service=""), context))
        await asyncio.sleep(0.01)  # the watcher is inside its first write, holding the condition's lock
        shutdown = asyncio.create_task(health.enter_graceful_shutdown())
        await asyncio.sleep(0.01)  # draining has begun and waits for the lock
        context.release_first.set()
        await asyncio.wait_for(asyncio.gather(watch, shutdown), timeout=5)
        return context.sent

    assert asyncio.run(scenario()) == [SERVING, NOT_SERVING]


def test_a_watcher_idle_when_draining_starts_gets_not_serving_once() -> None:
    async def scenario() -> list[int]:
        health = DrainingHealthServicer()
        await health.set("", SERVING)
        context = SlowContext()
        context.release_first.set()
        watch = asyncio.create_task(health.Watch(health_pb2.HealthCheckRequest(service=""), context))
        await asyncio.sleep(0.01)
        await health.enter_graceful_shutdown()
        await asyncio.wait_for(watch, timeout=5)
        return context.sent

    assert asyncio.run(scenario()) == [SERVING, NOT_SERVING]
