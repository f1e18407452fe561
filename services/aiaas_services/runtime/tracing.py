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
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import functools
import json
import logging
import os
import threading
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from random import getrandbits as _random_bits
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind, Status, StatusCode

from aiaas_services.runtime.settings import ServiceSettings

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


# --- configuration ----------------------------------------------------------------------------------------


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

    With only the file exporter (the default) spans go through ``JsonLinesTracerProvider``, about six
    times cheaper per span than the SDK's pipeline (see ``bench/tracing.py``); any other exporter uses the
    SDK with a batch span processor per exporter. ``AIAAS_TRACE_SDK=true`` forces the SDK path.
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
        path = trace_dir(settings) / f"{settings.service_name}.jsonl"
        return JsonLinesTracerProvider(resource, sampler, path, delay_ms / 1000, max_queue)
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


# --- the JSON-lines exporter ----------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def _attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {key: _jsonable(value) for key, value in (attributes or {}).items()}


def span_to_dict(span: ReadableSpan) -> dict[str, Any]:
    """One span as the JSON object we write per line (read back by ``aiaas trace show``)."""
    ctx = span.context
    assert ctx is not None
    parent = span.parent
    return {
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_id": format(parent.span_id, "016x") if parent is not None else None,
        "name": span.name,
        "service": span.resource.attributes.get("service.name", ""),
        "kind": span.kind.name,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "attributes": _attributes(span.attributes),
        "events": [
            {"name": e.name, "time_ns": e.timestamp, "attributes": _attributes(e.attributes)} for e in span.events
        ],
        "status": {"code": span.status.status_code.name, "description": span.status.description},
        "links": [
            {
                "trace_id": format(link.context.trace_id, "032x"),
                "span_id": format(link.context.span_id, "016x"),
                "attributes": _attributes(link.attributes),
            }
            for link in span.links
        ],
    }


_compact = json.JSONEncoder(separators=(",", ":"), default=str).encode
_UNSET_STATUS = '{"code":"UNSET","description":null}'
_KIND_NAMES = {kind: kind.name for kind in SpanKind}
_json_text = functools.lru_cache(maxsize=4096)(_compact)  # span and service names repeat: encode once


def span_to_json(span: ReadableSpan) -> str:
    """``span_to_dict`` as one compact JSON line, built without the intermediate dict.

    The exporter runs on a thread of the serving process, so its CPU time is taken from requests; this
    is about twice as fast as ``json.dumps(span_to_dict(span))`` (see bench/tracing.py).
    """
    ctx = span.context
    assert ctx is not None
    parent = span.parent
    status = span.status
    if status.status_code is StatusCode.UNSET and status.description is None:
        status_json = _UNSET_STATUS
    else:
        status_json = _compact({"code": status.status_code.name, "description": status.description})
    parent_json = f'"{parent.span_id:016x}"' if parent is not None else "null"
    extra = span_to_dict(span) if span.events or span.links else None
    return (
        f'{{"trace_id":"{ctx.trace_id:032x}","span_id":"{ctx.span_id:016x}",'
        f'"parent_id":{parent_json},'
        f'"name":{_json_text(span.name)},"service":{_json_text(span.resource.attributes.get("service.name", ""))},'
        f'"kind":"{_KIND_NAMES[span.kind]}","start_ns":{span.start_time},"end_ns":{span.end_time},'
        f'"attributes":{_compact(dict(span.attributes or {}))},'
        f'"events":{_compact(extra["events"]) if extra else "[]"},'
        f'"status":{status_json},'
        f'"links":{_compact(extra["links"]) if extra else "[]"}}}'
    )


class JsonLinesSpanExporter(SpanExporter):
    """Appends spans to a file, one JSON object per line, one ``write`` per batch.

    The file is opened with ``O_APPEND`` and each batch goes out in a single ``write`` call, so a service
    and its worker processes can share one file without interleaving lines.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self._fd

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write the batch; FAILURE (logged) if the disk refuses."""
        ok = self.write_lines([span_to_json(s) for s in spans])
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def write_lines(self, lines: Sequence[str]) -> bool:
        """Append JSON lines with one ``write``; False (logged) if the disk refuses."""
        payload = ("\n".join(lines) + "\n").encode()
        with self._lock:
            try:
                fd = self._open()
                view = memoryview(payload)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            except OSError:
                logger.exception("tracing: cannot append spans to %s", self.path)
                return False
        return True

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Writes are unbuffered; nothing to do."""
        return True

    def shutdown(self) -> None:
        """Close the file."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


# --- the light tracer for the file exporter ---------------------------------------------------------------

_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
_NOT_SAMPLED = trace.TraceFlags(trace.TraceFlags.DEFAULT)
_MAX_ITEMS = 128  # attributes, events and links per span, as the SDK's default limits


class LightSpan(trace.Span):
    """A recording span that keeps plain Python values and is encoded to JSON only when exported.

    It implements the whole ``opentelemetry.trace.Span`` API; what it leaves out compared with the SDK's
    span is the per-call locking and attribute copying that made a span cost ~30 µs of CPU.
    """

    __slots__ = (
        "_attributes",
        "_context",
        "_end_ns",
        "_events",
        "_kind",
        "_links",
        "_name",
        "_parent",
        "_provider",
        "_start_ns",
        "_status",
    )

    def __init__(
        self,
        provider: JsonLinesTracerProvider,
        name: str,
        context: trace.SpanContext,
        parent: trace.SpanContext | None,
        kind: SpanKind,
        attributes: Mapping[str, Any] | None,
        links: Sequence[trace.Link] | None,
        start_ns: int,
    ) -> None:
        self._provider = provider
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._attributes: dict[str, Any] = dict(attributes) if attributes else {}
        self._events: list[tuple[str, int, dict[str, Any]]] | None = None
        self._links: list[trace.Link] | None = list(links)[:_MAX_ITEMS] if links else None
        self._start_ns = start_ns
        self._end_ns: int | None = None
        self._status: Status | None = None

    def get_span_context(self) -> trace.SpanContext:
        """This span's ids."""
        return self._context

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Set several attributes (ignored once ended, or past 128)."""
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def set_attribute(self, key: str, value: Any) -> None:
        """Set one attribute (ignored once ended, or past 128)."""
        if self._end_ns is None and (len(self._attributes) < _MAX_ITEMS or key in self._attributes):
            self._attributes[key] = value

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None) -> None:
        """Add a timestamped event (ignored once ended, or past 128)."""
        if self._end_ns is not None:
            return
        if self._events is None:
            self._events = []
        if len(self._events) < _MAX_ITEMS:
            self._events.append((name, timestamp or time.time_ns(), dict(attributes) if attributes else {}))

    def add_link(self, context: trace.SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        """Link another span (ignored once ended, or past 128)."""
        if self._end_ns is not None or not context.is_valid:
            return
        if self._links is None:
            self._links = []
        if len(self._links) < _MAX_ITEMS:
            self._links.append(trace.Link(context, attributes))

    def update_name(self, name: str) -> None:
        """Rename the span."""
        if self._end_ns is None:
            self._name = name

    def is_recording(self) -> bool:
        """True until ended."""
        return self._end_ns is None

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """Set the status; OK is final and UNSET never overrides (the SDK's rules)."""
        if self._end_ns is not None or (self._status is not None and self._status.status_code is StatusCode.OK):
            return
        new = status if isinstance(status, Status) else Status(status, description)
        if new.status_code is StatusCode.UNSET:
            return
        self._status = new

    def record_exception(
        self,
        exception: BaseException,
        attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """An ``exception`` event with type, message and stack trace (semantic conventions)."""
        stacktrace = "".join(traceback.format_exception(type(exception), exception, exception.__traceback__))
        self.add_event(
            "exception",
            {
                "exception.type": type(exception).__qualname__,
                "exception.message": str(exception),
                "exception.stacktrace": stacktrace,
                "exception.escaped": str(escaped),
                **(attributes or {}),
            },
            timestamp,
        )

    def end(self, end_time: int | None = None) -> None:
        """End the span and queue it for the writer thread."""
        if self._end_ns is None:
            self._end_ns = end_time or time.time_ns()
            self._provider.finished(self)

    def to_json(self, service_json: str) -> str:
        """The span as one JSON line, the same fields as ``span_to_dict``."""
        ctx = self._context
        parent_json = f'"{self._parent.span_id:016x}"' if self._parent is not None else "null"
        status = self._status
        status_json = (
            _compact({"code": status.status_code.name, "description": status.description}) if status else _UNSET_STATUS
        )
        events = self._events
        events_json = _compact([{"name": n, "time_ns": t, "attributes": a} for n, t, a in events]) if events else "[]"
        links_json = _compact([_link_dict(link) for link in self._links]) if self._links else "[]"
        return (
            f'{{"trace_id":"{ctx.trace_id:032x}","span_id":"{ctx.span_id:016x}","parent_id":{parent_json},'
            f'"name":{_json_text(self._name)},"service":{service_json},'
            f'"kind":"{_KIND_NAMES[self._kind]}","start_ns":{self._start_ns},"end_ns":{self._end_ns},'
            f'"attributes":{_compact(self._attributes)},"events":{events_json},"status":{status_json},'
            f'"links":{links_json}}}'
        )


def _link_dict(link: trace.Link) -> dict[str, Any]:
    return {
        "trace_id": format(link.context.trace_id, "032x"),
        "span_id": format(link.context.span_id, "016x"),
        "attributes": _attributes(link.attributes),
    }


class LightTracer(trace.Tracer):
    """Starts ``LightSpan``s under the provider's sampler; unsampled spans are non-recording."""

    def __init__(self, provider: JsonLinesTracerProvider) -> None:
        self._provider = provider

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[trace.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        """A new span, child of the span current in ``context`` (or a root span)."""
        parent: trace.SpanContext | None = trace.get_current_span(context).get_span_context()
        if parent is not None and parent.is_valid:
            trace_id = parent.trace_id
        else:
            parent = None
            trace_id = _random_bits(128)
        if self._provider.parent_or_always_on:  # the default sampler, decided without its machinery
            sampled = parent.trace_flags.sampled if parent is not None else True
            trace_state = parent.trace_state if parent is not None else None
        else:
            result = self._provider.sampler.should_sample(context, trace_id, name, kind, attributes, links)
            sampled = result.decision.is_sampled()
            trace_state = result.trace_state
        span_context = trace.SpanContext(
            trace_id, _random_bits(64), False, _SAMPLED if sampled else _NOT_SAMPLED, trace_state
        )
        if not sampled:
            return trace.NonRecordingSpan(span_context)
        return LightSpan(
            self._provider, name, span_context, parent, kind, attributes, links, start_time or time.time_ns()
        )

    @contextlib.contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[trace.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        """Start a span and make it current for the block (exceptions recorded, as with the SDK)."""
        span = self.start_span(name, context, kind, attributes, links, start_time)
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


class JsonLinesTracerProvider(trace.TracerProvider):
    """Light spans, batched by a writer thread into the JSON-lines file (the default, embedded exporter).

    Ended spans wait in a bounded queue (new ones are dropped and counted when it is full); the writer
    thread appends them every ``schedule_delay`` seconds, or sooner once 512 are waiting, and at
    ``force_flush``/``shutdown`` (also registered at exit).
    """

    def __init__(
        self, resource: Resource, sampler: Sampler, path: Path, schedule_delay: float = 5.0, max_queue: int = 16384
    ) -> None:
        self.resource = resource
        self.sampler = sampler
        self.parent_or_always_on = sampler.get_description() == ParentBased(ALWAYS_ON).get_description()
        self.exporter = JsonLinesSpanExporter(path)
        self.schedule_delay = schedule_delay
        self.max_queue = max_queue
        self.dropped = 0
        self._service_json = _compact(str(resource.attributes.get("service.name", "")))
        self._queue: collections.deque[LightSpan] = collections.deque()
        self._wake = threading.Event()
        self._write_lock = threading.Lock()
        self._stopped = False
        self._tracer = LightTracer(self)
        self._thread = threading.Thread(target=self._run, name="aiaas-span-writer", daemon=True)
        self._thread.start()
        atexit.register(self.shutdown)

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> trace.Tracer:
        """One tracer serves every module (the scope is not written to the file)."""
        return self._tracer

    def finished(self, span: LightSpan) -> None:
        """Queue an ended span (called by ``LightSpan.end``)."""
        if self._stopped:
            return
        queue = self._queue
        if len(queue) >= self.max_queue:
            self.dropped += 1
            return
        queue.append(span)
        if len(queue) >= 512 and not self._wake.is_set():  # Event.set takes a lock: once per batch
            self._wake.set()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self.schedule_delay)
            self._wake.clear()
            try:
                self._write()
            except Exception:  # the writer must outlive any one bad batch
                logger.exception("tracing: writing spans failed")

    def _write(self) -> bool:
        with self._write_lock:
            queue = self._queue
            lines = []
            while queue:
                span = queue.popleft()
                try:
                    lines.append(span.to_json(self._service_json))
                except (TypeError, ValueError, RuntimeError):  # e.g. an attribute mutated by another thread
                    self.dropped += 1
            if not lines:
                return True
            return self.exporter.write_lines(lines)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Write every queued span now."""
        return self._write()

    def shutdown(self) -> None:
        """Write what is queued, stop the writer thread and close the file (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self._wake.set()
        self._thread.join(5)
        self._write()
        self.exporter.shutdown()
        if self.dropped:
            logger.warning("tracing: %d spans dropped (queue of %d full)", self.dropped, self.max_queue)


# --- gRPC interceptors --------------------------------------------------------------------------------------


def _split_method(full_method: str) -> tuple[str, str]:
    service, _, method = full_method.lstrip("/").partition("/")
    return service, method


@functools.lru_cache(maxsize=1024)
def _rpc_naming(full_method: str) -> tuple[str, dict[str, Any]]:
    """Span name (``pkg.Service/Method``) and semantic-convention attributes, computed once per method.

    The SDK copies the attributes into the span, so handing out the cached dict is safe.
    """
    service, method = _split_method(full_method)
    return full_method.lstrip("/"), {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}


def _finish(span: trace.Span, code: grpc.StatusCode | None, details: str | None, server: bool) -> None:
    code = code or grpc.StatusCode.OK
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    # Semantic conventions: a server span is an error for server-side faults only; a client span for any code.
    server_faults = (
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    )
    if code != grpc.StatusCode.OK and (not server or code in server_faults):
        span.set_status(Status(StatusCode.ERROR, f"{code.name}: {details or ''}".rstrip(": ")))
    span.end()


_PROPAGATED_KEYS = frozenset({"traceparent", "tracestate", "baggage"})


def _carrier_from_metadata(metadata: Iterable[Any] | None) -> dict[str, str]:
    """The W3C headers among the call's metadata (empty when the caller sent none)."""
    carrier: dict[str, str] = {}
    for item in metadata or ():
        key, value = item[0], item[1]
        if key in _PROPAGATED_KEYS and isinstance(value, str):
            carrier[key] = value
    return carrier


def _failure_code(span: trace.Span, exc: BaseException) -> grpc.StatusCode:
    """The status an exception escaping the handler stands for (grpc sends UNKNOWN; cancellation CANCELLED)."""
    if isinstance(exc, Exception):
        span.record_exception(exc)
        return grpc.StatusCode.UNKNOWN
    return grpc.StatusCode.CANCELLED


def _context_code(context: grpc.aio.ServicerContext) -> grpc.StatusCode | None:
    code = context.code()
    if isinstance(code, int):  # older grpc returns the raw integer
        code = next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    return code  # type: ignore[no-any-return]


class TracingServerInterceptor(grpc.aio.ServerInterceptor):
    """Puts every incoming RPC (except health and reflection) in a SERVER span continuing the caller's trace.

    Unary and streaming, both directions. The span is current while the handler runs, so the service's own
    spans become its children; status code and semantic-convention attributes are set when it ends.
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer_provider = tracer_provider
        self._tracer: trace.Tracer | None = None

    def _active(self) -> bool:
        return self._tracer_provider is not None or _enabled

    def tracer(self) -> trace.Tracer:
        """The tracer (resolved on first use, after set-up installed the provider)."""
        if self._tracer is None:
            self._tracer = trace.get_tracer(INSTRUMENTATION_NAME, tracer_provider=self._tracer_provider)
        return self._tracer

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or not self._active():
            return handler
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if method.startswith(UNTRACED_PREFIXES):
            return handler
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(self._unary(handler.unary_unary, method), **kwargs)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(self._unary(handler.stream_unary, method), **kwargs)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(self._streaming(handler.unary_stream, method), **kwargs)
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(self._streaming(handler.stream_stream, method), **kwargs)
        return handler

    def _start(self, method: str, context: grpc.aio.ServicerContext) -> tuple[trace.Span, Context]:
        """The SERVER span, and the context to run the handler in (the span plus the caller's baggage)."""
        carrier = _carrier_from_metadata(context.invocation_metadata())
        parent = propagate.extract(carrier) if carrier else Context()  # a root span: skip the propagators
        name, attributes = _rpc_naming(method)
        span = self.tracer().start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)
        return span, trace.set_span_in_context(span, parent)

    def _unary(self, behavior: Callable[..., Any], method: str) -> Callable[..., Awaitable[Any]]:
        async def handler(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
            span, span_context = self._start(method, context)
            token = otel_context.attach(span_context)
            failure: grpc.StatusCode | None = None
            try:
                return await behavior(request_or_iterator, context)
            except grpc.aio.AbortError:
                raise
            except BaseException as exc:
                failure = _failure_code(span, exc)
                raise
            finally:
                otel_context.detach(token)
                _finish(span, _context_code(context) or failure, context.details(), server=True)

        return handler

    def _streaming(self, behavior: Callable[..., Any], method: str) -> Callable[..., AsyncIterator[Any]]:
        async def handler(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            span, span_context = self._start(method, context)
            count = 0
            failure: grpc.StatusCode | None = None
            try:
                result = behavior(request_or_iterator, context)
                if not hasattr(result, "__anext__"):  # a handler that writes with context.write()
                    token = otel_context.attach(span_context)
                    try:
                        await result
                    finally:
                        otel_context.detach(token)
                    return
                # Attach around each step only: the generator may be closed from another context.
                while True:
                    token = otel_context.attach(span_context)
                    try:
                        item = await result.__anext__()
                    except StopAsyncIteration:
                        break
                    finally:
                        otel_context.detach(token)
                    count += 1
                    yield item
            except grpc.aio.AbortError:
                raise
            except BaseException as exc:
                failure = _failure_code(span, exc)
                raise
            finally:
                span.set_attribute("rpc.messages_sent", count)
                _finish(span, _context_code(context) or failure, context.details(), server=True)

        return handler


class _TracingClientBase:
    """Shared parts of the four client interceptor kinds."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer_provider = tracer_provider
        self._tracer: trace.Tracer | None = None

    def _skip(self, details: grpc.aio.ClientCallDetails) -> bool:
        if self._tracer_provider is None and not _enabled:
            return True
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        return method.startswith(UNTRACED_PREFIXES)

    def _start(self, details: grpc.aio.ClientCallDetails) -> tuple[trace.Span, grpc.aio.ClientCallDetails]:
        if self._tracer is None:
            self._tracer = trace.get_tracer(INSTRUMENTATION_NAME, tracer_provider=self._tracer_provider)
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        name, attributes = _rpc_naming(method)
        span = self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        metadata = grpc.aio.Metadata(*tuple(details.metadata or ()))
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        for key, value in carrier.items():
            metadata[key] = value
        new_details = grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )
        return span, new_details

    @staticmethod
    async def _await_unary(span: trace.Span, call: Any) -> Any:
        try:
            code = await call.code()
            details = await call.details()
        except BaseException as exc:
            span.record_exception(exc)
            _finish(span, grpc.StatusCode.CANCELLED, str(type(exc).__name__), server=False)
            raise
        _finish(span, code, details, server=False)
        return call

    @staticmethod
    def _end_when_done(span: trace.Span, call: Any) -> Any:
        """For client or response streams: end the span when the call completes, keeping the call intact."""

        def done(finished: Any) -> None:
            end_ns = time.time_ns()

            async def record() -> None:
                try:
                    code, details = await finished.code(), await finished.details()
                except BaseException:  # noqa: BLE001 - cancelled while reading the status
                    code, details = grpc.StatusCode.CANCELLED, ""
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                if code != grpc.StatusCode.OK:
                    span.set_status(Status(StatusCode.ERROR, f"{code.name}: {details or ''}"))
                span.end(end_time=end_ns)

            try:
                asyncio.get_running_loop().create_task(record())
            except RuntimeError:  # no loop any more (interpreter shutting down)
                span.end(end_time=end_ns)

        call.add_done_callback(done)
        return call


class _UnaryUnary(_TracingClientBase, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        if self._skip(client_call_details):
            return await continuation(client_call_details, request)
        span, details = self._start(client_call_details)
        return await self._await_unary(span, await continuation(details, request))


class _StreamUnary(_TracingClientBase, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request_iterator: Any
    ) -> Any:
        if self._skip(client_call_details):
            return await continuation(client_call_details, request_iterator)
        span, details = self._start(client_call_details)
        # Not awaited here: a caller using call.write() waits for this interceptor to hand the call back.
        return self._end_when_done(span, await continuation(details, request_iterator))


class _UnaryStream(_TracingClientBase, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        if self._skip(client_call_details):
            return await continuation(client_call_details, request)
        span, details = self._start(client_call_details)
        return self._end_when_done(span, await continuation(details, request))


class _StreamStream(_TracingClientBase, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request_iterator: Any
    ) -> Any:
        if self._skip(client_call_details):
            return await continuation(client_call_details, request_iterator)
        span, details = self._start(client_call_details)
        return self._end_when_done(span, await continuation(details, request_iterator))


def server_interceptors(tracer_provider: trace.TracerProvider | None = None) -> list[grpc.aio.ServerInterceptor]:
    """Interceptors that put each incoming RPC in a span; they pass calls through while tracing is off."""
    return [TracingServerInterceptor(tracer_provider)]


def client_interceptors(tracer_provider: trace.TracerProvider | None = None) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors that put each outgoing RPC in a CLIENT span and send ``traceparent``/``baggage`` along."""
    return [
        _UnaryUnary(tracer_provider),
        _UnaryStream(tracer_provider),
        _StreamUnary(tracer_provider),
        _StreamStream(tracer_provider),
    ]
