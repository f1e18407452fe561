"""A job-like function run in a spawned worker process: it continues the trace of the request that
queued it, the way training and export jobs do (carrier stored at request time, extracted in the worker)."""

from __future__ import annotations

from opentelemetry import propagate, trace

from aiaas_services.runtime.settings import ServiceSettings
from aiaas_services.runtime.tracing import setup_worker_tracing


class WorkerSettings(ServiceSettings):
    """Settings of the pretend service whose worker this is."""

    service_name = "training"


def run_job(home: str, carrier: dict[str, str]) -> str:
    """Set up worker tracing, run two steps under a job span that continues ``carrier``; return its span id."""
    flush = setup_worker_tracing(WorkerSettings(home=home))
    tracer = trace.get_tracer(__name__)
    try:
        with tracer.start_as_current_span("training.job", context=propagate.extract(carrier)) as job:
            for epoch in range(2):
                job.add_event("epoch", {"epoch": epoch, "loss": 1.0 / (epoch + 1)})
            with tracer.start_as_current_span("training.upload"):
                pass
            return format(job.get_span_context().span_id, "016x")
    finally:
        flush()
