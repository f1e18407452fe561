"""Prometheus figures per model and version: requests by outcome, queue wait, compute time, batch sizes,
failed loads and what each version's state is.

Served on the shared ``/metrics`` endpoint (setting ``metrics_port``). Label children are looked up once
per loaded version, so the hot path pays one ``inc``/``observe`` each. With worker processes every
worker serves its own endpoint, so these say what that worker serves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram, Metric
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from aiaas_services.runtime.metrics import metrics_enabled

_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class RequestCounts:
    """Requests by (model, version): [successes, their ns, failures, their ns].

    Plain integers updated on the event loop (no lock, no Prometheus call on the hot path); Prometheus
    reads them when it scrapes, through ``_RequestCollector``.
    """

    def __init__(self) -> None:
        self.table: dict[tuple[str, str], list[int]] = {}

    def record(self, model: str, version: str, ok: bool, ns: int) -> None:
        """Count one finished request."""
        row = self.table.get((model, version))
        if row is None:
            row = self.table[(model, version)] = [0, 0, 0, 0]
        if ok:
            row[0] += 1
            row[1] += ns
        else:
            row[2] += 1
            row[3] += ns

    def get(self, model: str, version: str) -> list[int]:
        """The row of one version (zeros when it has none)."""
        return list(self.table.get((model, version), (0, 0, 0, 0)))


class _RequestCollector(Collector):
    def __init__(self, counts: RequestCounts) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "aiaas_inference_model_requests",
            "Inference requests by model, version and outcome.",
            labels=["model", "version", "outcome"],
        )
        for (model, version), row in list(self.counts.table.items()):
            family.add_metric([model, version, "success"], row[0])
            family.add_metric([model, version, "failure"], row[2])
        yield family


REQUEST_COUNTS = RequestCounts()
REGISTRY.register(_RequestCollector(REQUEST_COUNTS))
QUEUE_SECONDS = Histogram(
    "aiaas_inference_model_queue_seconds",
    "Time a request waited in its model's queue.",
    ["model", "version"],
    buckets=_BUCKETS,
)
COMPUTE_SECONDS = Histogram(
    "aiaas_inference_model_compute_seconds",
    "ONNX Runtime time per executed batch.",
    ["model", "version"],
    buckets=_BUCKETS,
)
BATCH_ROWS = Histogram(
    "aiaas_inference_model_batch_size",
    "Rows (along the batch axis) per executed batch.",
    ["model", "version"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)


LOAD_FAILURES = Counter(
    "aiaas_inference_model_load_failures",
    "Failed loads of a model version (download, checks or ONNX Runtime); the reason and error id are in the "
    "log and RepositoryIndex.",
    ["model", "version"],
)


class _StateCollector(Collector):
    """Each version's RepositoryIndex state, and the version requests go to, read from the manager at scrape."""

    def __init__(self) -> None:
        self.source: Any = None  # the ModelManager of this process (set by ``watch_states``)

    def collect(self) -> Iterator[Metric]:
        states = GaugeMetricFamily(
            "aiaas_inference_model_version_state",
            "1 per model version and its state (READY, UNAVAILABLE), as RepositoryIndex lists it.",
            labels=["model", "version", "state"],
        )
        default = GaugeMetricFamily(
            "aiaas_inference_model_default_version",
            "The version a request without a version number goes to.",
            labels=["model"],
        )
        manager = self.source
        if manager is not None:
            for name, version, state, _ in manager.index():
                states.add_metric([name, version, state], 1)
            for name, served in list(manager.served.items()):
                if served.default.isdigit():
                    default.add_metric([name], int(served.default))
        yield states
        yield default


_STATES = _StateCollector()
REGISTRY.register(_STATES)


def watch_states(manager: Any) -> None:
    """Report this manager's versions in ``aiaas_inference_model_version_state`` (one manager per process)."""
    _STATES.source = manager


def count_load_failure(model: str, version: str) -> None:
    """One more failed load of ``model`` ``version``."""
    LOAD_FAILURES.labels(model, version or "none").inc()


@dataclass
class VersionMetrics:
    """Bound label children of one model version."""

    queue: Any
    compute: Any
    batch: Any

    def observe_batch(self, rows: int, compute_seconds: float, waits: Sequence[float]) -> None:
        """Called by an instance thread after each run."""
        self.compute.observe(compute_seconds)
        self.batch.observe(rows)
        for wait in waits:
            self.queue.observe(wait)


def version_metrics(model: str, version: str) -> VersionMetrics:
    """Label children for one model version."""
    return VersionMetrics(
        queue=QUEUE_SECONDS.labels(model, version),
        compute=COMPUTE_SECONDS.labels(model, version),
        batch=BATCH_ROWS.labels(model, version),
    )


def observer_factory() -> Callable[[str, str], Callable[[int, float, Sequence[float]], None] | None]:
    """For the manager: builds the per-batch observer of a version; None while /metrics is off (nobody
    can read the histograms, so the batches skip them; the runtime starts /metrics before models load)."""

    def factory(model: str, version: str) -> Callable[[int, float, Sequence[float]], None] | None:
        if not metrics_enabled():
            return None
        return version_metrics(model, version).observe_batch

    return factory
