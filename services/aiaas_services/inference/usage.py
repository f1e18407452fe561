"""Usage metering of inference: requests, rows and compute seconds per principal and model.

The hot path only adds to a dict on the event loop (``UsageMeter.add``); a background task sends what
accumulated to the registry's ``UsageService`` every ``usage_flush_seconds`` (and once more on shutdown),
putting counts back when the registry cannot take them, so none are lost while it is away. Prometheus
reads the running totals when it scrapes (``aiaas_usage_*_total``), never on a request's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import REGISTRY, Metric
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

Row = list[float]  # [requests, rows, compute ns]
Counts = dict[tuple[str, str], Row]  # (principal, model) -> Row
# Delivers counts stamped with the start of their hour (epoch seconds); raises when they did not arrive.
Send = Callable[[Counts, int], Awaitable[None]]


class UsageMeter:
    """Counts not yet sent (``pending``) and totals since start (``totals``), by (principal, model)."""

    def __init__(self) -> None:
        self.pending: Counts = {}
        self.totals: Counts = {}

    def add(self, principal: str, model: str, rows: int, ns: int) -> None:
        """Count one answered call (event loop only: no lock)."""
        row = self.pending.get((principal, model))
        if row is None:
            row = self.pending[(principal, model)] = [0, 0, 0]
        row[0] += 1
        row[1] += rows
        row[2] += ns

    def take(self) -> Counts:
        """What accumulated since the last take; folded into the totals."""
        taken, self.pending = self.pending, {}
        for key, row in taken.items():
            total = self.totals.setdefault(key, [0, 0, 0])
            for i in range(3):
                total[i] += row[i]
        return taken

    def put_back(self, taken: Counts) -> None:
        """Counts a flush could not deliver: they go out with the next one (totals already have them)."""
        for key, row in taken.items():
            pending = self.pending.setdefault(key, [0, 0, 0])
            for i in range(3):
                pending[i] += row[i]
        for key, row in taken.items():
            total = self.totals[key]
            for i in range(3):
                total[i] -= row[i]


class _UsageCollector(Collector):
    def __init__(self, meters: list[UsageMeter]) -> None:
        self.meters = meters

    def collect(self) -> Iterator[Metric]:
        labels = ["principal", "model"]
        requests = CounterMetricFamily(
            "aiaas_usage_requests", "Inference calls answered, per caller and model.", labels=labels
        )
        rows = CounterMetricFamily("aiaas_usage_rows", "Rows inferred, per caller and model.", labels=labels)
        seconds = CounterMetricFamily(
            "aiaas_usage_compute_seconds", "Seconds spent answering, per caller and model.", labels=labels
        )
        for meter in self.meters:
            merged: Counts = {}
            for table in (meter.totals, meter.pending):
                for key, row in list(table.items()):
                    into = merged.setdefault(key, [0, 0, 0])
                    for i in range(3):
                        into[i] += row[i]
            for (principal, model), row in merged.items():
                requests.add_metric([principal, model], row[0])
                rows.add_metric([principal, model], row[1])
                seconds.add_metric([principal, model], row[2] / 1e9)
        yield from (requests, rows, seconds)


_METERS: list[UsageMeter] = []
REGISTRY.register(_UsageCollector(_METERS))


def new_meter() -> UsageMeter:
    """A meter whose counts Prometheus exports."""
    meter = UsageMeter()
    _METERS.append(meter)
    return meter


class UsageFlusher:
    """Hands a meter's counts to ``send`` (the registry's UsageService, ``usage_channel``) in the background."""

    def __init__(self, meter: UsageMeter, send: Send, every: float) -> None:
        self.meter = meter
        self.send = send
        self.every = every
        self._task: asyncio.Task[None] | None = None
        self._failures = 0

    def start(self) -> None:
        """Begin flushing every ``every`` seconds."""
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await self.flush()

    async def flush(self) -> bool:
        """Send what accumulated; True when delivered (or nothing to send)."""
        taken = self.meter.take()
        if not taken:
            return True
        hour = int(time.time())
        hour -= hour % 3600
        try:
            await self.send(taken, hour)
        except Exception as exc:  # noqa: BLE001 - the registry may be away; keep the counts for next time
            self.meter.put_back(taken)
            self._failures += 1
            if self._failures in (1, 10) or self._failures % 100 == 0:
                logger.warning("usage not sent to the registry (%d tries so far): %s", self._failures, exc)
            return False
        self._failures = 0
        return True

    async def close(self) -> None:
        """Stop the loop and send what is left (one try)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
