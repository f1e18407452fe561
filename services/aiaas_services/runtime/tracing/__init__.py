"""Tracing for every service, set up once here: exporters, sampling and gRPC instrumentation.

Services use the OpenTelemetry API directly (``trace.get_tracer(__name__)``); it stays a no-op until
``setup_tracing`` (called by ``runtime.server.serve``) or ``setup_worker_tracing`` (called by spawned
worker processes) installs a tracer provider.

Two span kinds, one export pipeline. With only the file exporter (the default), ``JsonLinesTracerProvider``
records spans as plain values (the SDK's spans cost several times more CPU on the request's path:
``tracing.span_cpu_sdk_over_light`` in ``make bench``) and the SDK's ``BatchSpanProcessor`` hands them to
a thread that appends them as JSON lines. Any other exporter (``otlp``, ``console``) uses the SDK's spans
with a ``BatchSpanProcessor`` per exporter (``AIAAS_TRACE_SDK=true`` forces it for the file too).

Only the spans a reader needs: one SERVER span per RPC; the inference service puts queue wait, batch size
and run time on it as attributes (per-batch spans only with ``AIAAS_INFERENCE_TRACE_BATCH_SPANS``).
Sampling is decided once where a trace starts and honoured downstream (``parentbased_*`` samplers, the
default): an unsampled request costs a non-recording span and no export.

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
from aiaas_services.runtime.tracing.jsonlines import JsonLinesSpanExporter, JsonLinesTracerProvider
from aiaas_services.runtime.tracing.spanjson import span_to_dict, span_to_json

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
