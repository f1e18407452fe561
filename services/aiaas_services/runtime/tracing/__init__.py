"""Tracing for every service, set up once here: exporters, sampling and gRPC instrumentation.

Services use the OpenTelemetry API directly (``trace.get_tracer(__name__)``); it stays a no-op until
``setup_tracing`` (called by ``runtime.server.serve``) or ``setup_worker_tracing`` (called by spawned
worker processes) installs a tracer provider.

Two providers, one output format. With only the file exporter (the default), ``JsonLinesTracerProvider``
records spans as plain values and a writer thread appends them as JSON lines: the SDK's span pipeline
costs ~30 us of CPU per span, which at 100% sampling took >10% of an inference request's CPU; the light
one costs ~5 us. Any other exporter (``otlp``, ``console``) uses the OpenTelemetry SDK with a
``BatchSpanProcessor`` per exporter (``AIAAS_TRACE_SDK=true`` forces it for the file too).

Configuration follows the standard OpenTelemetry variables:

- ``OTEL_TRACES_EXPORTER``: comma-separated ``file`` (JSON lines under ``<home>/traces``, the default),
  ``otlp`` (OTLP/gRPC to ``OTEL_EXPORTER_OTLP_ENDPOINT``), ``console``, or ``none`` (tracing off).
- ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``: default ``parentbased_always_on``.
- ``OTEL_SDK_DISABLED=true`` turns tracing off as well.

We use our own small gRPC interceptors rather than opentelemetry-instrumentation-grpc's aio ones: those
hand an async generator instead of the call object back for response-streaming client calls (so
``call.cancel()``, ``call.code()`` and ``call.read()`` break), and they trace health checks. Ours keep the
call objects intact, skip health and reflection, and cost one flag check when tracing is off; the
aio client-streaming interceptor there also awaits the whole call, which deadlocks ``call.write()`` users.

The package: ``configure`` (exporters, sampling, one provider per process, carriers), ``jsonlines`` (the
file exporter and the light tracer) and ``grpc_interceptors`` (a span per RPC, ``traceparent`` in metadata).
"""

from aiaas_services.runtime.tracing.configure import (
    INSTRUMENTATION_NAME,
    UNTRACED_PREFIXES,
    TraceIdLogFilter,
    build_exporters,
    build_tracer_provider,
    carrier_for_current_context,
    context_from_carrier,
    exporter_names,
    sampler_from_env,
    service_resource,
    setup_tracing,
    setup_worker_tracing,
    trace_dir,
    tracing_enabled,
)
from aiaas_services.runtime.tracing.grpc_interceptors import (
    TracingServerInterceptor,
    client_interceptors,
    server_interceptors,
)
from aiaas_services.runtime.tracing.jsonlines import (
    JsonLinesSpanExporter,
    JsonLinesTracerProvider,
    span_to_dict,
    span_to_json,
)

__all__ = [
    "INSTRUMENTATION_NAME",
    "UNTRACED_PREFIXES",
    "JsonLinesSpanExporter",
    "JsonLinesTracerProvider",
    "TraceIdLogFilter",
    "TracingServerInterceptor",
    "build_exporters",
    "build_tracer_provider",
    "carrier_for_current_context",
    "client_interceptors",
    "context_from_carrier",
    "exporter_names",
    "sampler_from_env",
    "server_interceptors",
    "service_resource",
    "setup_tracing",
    "setup_worker_tracing",
    "span_to_dict",
    "span_to_json",
    "trace_dir",
    "tracing_enabled",
]
