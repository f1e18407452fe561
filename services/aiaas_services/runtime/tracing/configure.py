"""Tracing set-up: exporters and sampling from the OpenTelemetry variables, one provider per process,
and the W3C carriers that take a trace across process and queue boundaries."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from aiaas_services.runtime.settings import ServiceSettings
from aiaas_services.runtime.tracing.jsonlines import JsonLinesSpanExporter, JsonLinesTracerProvider

logger = logging.getLogger(__name__)

INSTRUMENTATION_NAME = "aiaas.grpc"
# RPCs that would flood every trace with noise: health polling and reflection.
UNTRACED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

_lock = threading.Lock()
_provider: TracerProvider | JsonLinesTracerProvider | None = None
# Read on every RPC by the interceptors; True only while an SDK provider of ours is installed.
_enabled = False


def tracing_enabled() -> bool:
    """Whether this process exports spans (the interceptors pass calls through untouched otherwise)."""
    return _enabled


def exporter_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """The exporters ``OTEL_TRACES_EXPORTER`` asks for; ``[]`` means tracing is off."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "file").split(",") if n.strip()]
    if not names or "none" in names:
        return []
    unknown = sorted(set(names) - {"file", "jsonl", "otlp", "console"})
    if unknown:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER: unknown exporter(s) {', '.join(unknown)}; use file, otlp, console or none"
        )
    return names


def sampler_from_env(environ: Mapping[str, str] | None = None) -> Sampler:
    """The sampler ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` name (parent-based always-on by default)."""
    env = os.environ if environ is None else environ
    name = env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    raw_ratio = env.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
    try:
        ratio = float(raw_ratio) if raw_ratio.strip() else 1.0
    except ValueError as exc:
        raise ValueError(f"OTEL_TRACES_SAMPLER_ARG: expected a number in [0, 1], got {raw_ratio!r}") from exc
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"OTEL_TRACES_SAMPLER_ARG: expected a number in [0, 1], got {raw_ratio!r}")
    samplers: dict[str, Sampler] = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": TraceIdRatioBased(ratio),
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(TraceIdRatioBased(ratio)),
    }
    if name not in samplers:
        raise ValueError(f"OTEL_TRACES_SAMPLER: unknown sampler {name!r}; use one of {', '.join(samplers)}")
    return samplers[name]


def trace_dir(settings: ServiceSettings) -> Path:
    """Folder of the JSON-lines span files: ``trace_dir`` if set, else ``<home>/traces``."""
    configured = getattr(settings, "trace_dir", "")
    return Path(configured).expanduser() if configured else settings.home_path / "traces"


def service_resource(settings: ServiceSettings, worker: bool = False) -> Resource:
    """``service.name`` = ``aiaas-<service>``, the package version, and the process id."""
    try:
        version = metadata.version("aiaas-services")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        version = "0.0.0"
    attributes: dict[str, Any] = {
        "service.name": f"aiaas-{settings.service_name}",
        "service.namespace": "aiaas",
        "service.version": version,
        "process.pid": os.getpid(),
    }
    if worker:
        attributes["aiaas.worker"] = True
    return Resource.create(attributes)


def build_exporters(
    settings: ServiceSettings, names: Sequence[str], environ: Mapping[str, str] | None = None
) -> list[SpanExporter]:
    """One exporter per name; the OTLP one reads ``OTEL_EXPORTER_OTLP_*`` itself."""
    exporters: list[SpanExporter] = []
    for name in dict.fromkeys(names):
        if name in ("file", "jsonl"):
            exporters.append(JsonLinesSpanExporter(trace_dir(settings) / f"{settings.service_name}.jsonl"))
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
    return exporters


def build_tracer_provider(
    settings: ServiceSettings, environ: Mapping[str, str] | None = None, worker: bool = False
) -> TracerProvider | JsonLinesTracerProvider | None:
    """The tracer provider the exporters call for; None when tracing is off.

    With only the file exporter (the default) spans are ``JsonLinesTracerProvider``'s light ones, several
    times cheaper than the SDK's (``tracing.span_cpu_sdk_over_light``), exported by the SDK's batch span
    processor; any other exporter uses the SDK's spans too. ``AIAAS_TRACE_SDK=true`` forces the SDK path.
    """
    env = os.environ if environ is None else environ
    names = exporter_names(env)
    if not names:
        return None
    resource = service_resource(settings, worker)
    sampler = sampler_from_env(env)
    force_sdk = env.get("AIAAS_TRACE_SDK", "").strip().lower() in ("1", "true", "yes")
    if set(names) <= {"file", "jsonl"} and not force_sdk:
        delay_ms = _env_int(env, "OTEL_BSP_SCHEDULE_DELAY", 5000)
        max_queue = _env_int(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048 * 8)
        batch_size = _env_int(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)
        path = trace_dir(settings) / f"{settings.service_name}.jsonl"
        return JsonLinesTracerProvider(resource, sampler, path, delay_ms / 1000, max_queue, batch_size)
    provider = TracerProvider(resource=resource, sampler=sampler)
    for exporter in build_exporters(settings, names, environ):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError as exc:
        raise ValueError(f"{name}: expected an integer, got {raw!r}") from exc


def _install(settings: ServiceSettings, worker: bool) -> Callable[[], None]:
    global _provider, _enabled
    with _lock:
        if _provider is not None:  # a second service (or job) in this process: share the first set-up
            installed = _provider
            return lambda: _flush(installed)
        provider = build_tracer_provider(settings, worker=worker)
        if provider is None:
            _enabled = False
            logger.info("tracing off (OTEL_TRACES_EXPORTER=none)")
            return lambda: None
        trace.set_tracer_provider(provider)
        _provider = provider
        _enabled = True
        _annotate_logs()
    logger.info(
        "tracing on: exporters %s, sampler %s",
        ",".join(exporter_names()),
        provider.sampler.get_description(),
    )
    return lambda: _flush(provider)


class TraceIdLogFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` of the current span to log records (JSON logs print them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Never drops a record; only annotates it."""
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            record.trace_id = format(ctx.trace_id, "032x")
            record.span_id = format(ctx.span_id, "016x")
        return True


def _annotate_logs() -> None:
    """Put the log filter on the root logger's handlers (configured by ``configure_logging`` before us)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, TraceIdLogFilter) for f in handler.filters):
            handler.addFilter(TraceIdLogFilter())


def _flush(provider: TracerProvider | JsonLinesTracerProvider, timeout_millis: int = 10_000) -> None:
    if not provider.force_flush(timeout_millis):
        logger.warning("tracing: not every span was exported within %d ms", timeout_millis)


def setup_tracing(settings: ServiceSettings) -> Callable[[], None]:
    """Configure tracing for this service process; returns a function that flushes and shuts it down.

    Only the first call in a process installs a provider (the global one can be set once); later calls
    (several services in one test process) share it and get a flush-only function.
    """
    global _provider, _enabled
    first = _provider is None
    flush = _install(settings, worker=False)
    installed = _provider
    if not first or installed is None:
        return flush

    def shutdown() -> None:
        global _enabled
        flush()
        _enabled = False
        installed.shutdown()

    return shutdown


def setup_worker_tracing(settings: ServiceSettings) -> Callable[[], None]:
    """Configure tracing in a spawned worker process (training, export); returns a flush function.

    Call it at the start of the worker and the returned function when a job ends, so its spans reach the
    exporter even if the process is later terminated. It is safe to call again for every job a pooled
    worker runs; the provider shuts down when the process exits.
    """
    return _install(settings, worker=True)


def carrier_for_current_context() -> dict[str, str]:
    """W3C ``traceparent``/``baggage`` of the current span, to store with work that outlives a request."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from_carrier(carrier: Mapping[str, str] | None) -> Context:
    """The context a stored carrier names (the root context when it is empty)."""
    return propagate.extract(dict(carrier or {}))
