"""Spans as JSON lines: the exporter, and the light tracer that feeds it through the SDK's
``BatchSpanProcessor``.

Why a light tracer and not the SDK's: the SDK's span costs several times the CPU of a ``LightSpan`` on
the request's path (``tracing.span_cpu_sdk_over_light`` in ``make bench``); exporting is the SDK's.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from random import getrandbits as _random_bits
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    ParentBased,
    Sampler,
)
from opentelemetry.trace import SpanKind, Status, StatusCode

logger = logging.getLogger(__name__)


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


def _compact_encoder() -> Callable[[Any], str]:
    """Compact JSON (unknown types as ``str``) through one reused C encoder: ``JSONEncoder.encode`` builds a
    new one on every call, which costs more than encoding a span's few attributes."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has it
        return json.JSONEncoder(separators=(",", ":"), default=str).encode
    encode = make(None, str, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True)

    def compact(value: Any) -> str:
        return "".join(encode(value, 0))

    return compact


_compact = _compact_encoder()
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

    def export(self, spans: Sequence[ReadableSpan | LightSpan]) -> SpanExportResult:
        """Encode and write the batch (on the batch processor's thread); FAILURE (logged) if the disk refuses."""
        lines = []
        for span in spans:
            try:
                lines.append(span.to_json() if isinstance(span, LightSpan) else span_to_json(span))
            except (TypeError, ValueError, RuntimeError):  # e.g. an attribute mutated by another thread
                logger.warning("tracing: span %r could not be encoded; dropped", getattr(span, "name", "?"))
        ok = self.write_lines(lines) if lines else True
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


class StaticAttributes(dict[str, Any]):
    """Start attributes shared by every span of a kind (an RPC's ``rpc.*``) and never changed after creation:
    a light span keeps them by reference, and their JSON is encoded once rather than once per span."""

    @functools.cached_property
    def json(self) -> str:
        """The attributes as one compact JSON object."""
        return _compact(self)


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
        "_base",
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
        # Shared start attributes are kept by reference; what is set later goes to ``_attributes``.
        self._base = attributes if type(attributes) is StaticAttributes else None
        self._attributes: dict[str, Any] = dict(attributes) if attributes and self._base is None else {}
        self._events: list[tuple[str, int, dict[str, Any]]] | None = None
        self._links: list[trace.Link] | None = list(links)[:_MAX_ITEMS] if links else None
        self._start_ns = start_ns
        self._end_ns: int | None = None
        self._status: Status | None = None

    def get_span_context(self) -> trace.SpanContext:
        """This span's ids."""
        return self._context

    @property
    def context(self) -> trace.SpanContext:
        """This span's ids, as ``ReadableSpan.context`` (the batch span processor reads the sampled flag)."""
        return self._context

    @property
    def name(self) -> str:
        """The span's name."""
        return self._name

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Set several attributes (ignored once ended, or past 128)."""
        if self._end_ns is not None:
            return
        base = self._base
        if base is None and len(self._attributes) + len(attributes) <= _MAX_ITEMS:
            self._attributes.update(attributes)
            return
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def set_attribute(self, key: str, value: Any) -> None:
        """Set one attribute (ignored once ended, or past 128)."""
        if self._end_ns is not None:
            return
        base = self._base
        if base is not None and key in base:  # overriding a shared one: this span gets its own copy
            self._attributes = {**base, **self._attributes}
            self._base = base = None
        count = len(self._attributes) + (len(base) if base is not None else 0)
        if count < _MAX_ITEMS or key in self._attributes:
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
        """End the span and hand it to the batch span processor (a queue append)."""
        if self._end_ns is None:
            self._end_ns = end_time or time.time_ns()
            self._provider.finished(self)

    def to_json(self) -> str:
        """The span as one JSON line, the same fields as ``span_to_dict``."""
        service_json = self._provider.service_json
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
            f'"attributes":{self._attributes_json()},"events":{events_json},"status":{status_json},'
            f'"links":{links_json}}}'
        )

    def _attributes_json(self) -> str:
        base = self._base
        if base is None:
            return _compact(self._attributes)
        if not self._attributes:
            return base.json
        return f"{base.json[:-1]},{_compact(self._attributes)[1:]}" if base else _compact(self._attributes)


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
            sampled = result.decision.is_sampled()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
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
    """Light spans, exported by the SDK's ``BatchSpanProcessor`` to the JSON-lines file (the default).

    Ending a span is a queue append on the request's path; the processor's thread encodes and writes
    them every ``schedule_delay`` seconds, or sooner once a batch is waiting, and at
    ``force_flush``/``shutdown`` (also registered at exit). A full queue drops spans (the SDK logs it).
    """

    def __init__(
        self,
        resource: Resource,
        sampler: Sampler,
        path: Path,
        schedule_delay: float = 5.0,
        max_queue: int = 16384,
        batch_size: int = 512,
    ) -> None:
        self.resource = resource
        self.sampler = sampler
        default = ParentBased(ALWAYS_ON).get_description()  # type: ignore[no-untyped-call]  # unannotated in the SDK
        self.parent_or_always_on = sampler.get_description() == default
        self.service_json = _compact(str(resource.attributes.get("service.name", "")))
        self.exporter = JsonLinesSpanExporter(path)
        self.processor = BatchSpanProcessor(
            self.exporter,
            max_queue_size=max_queue,
            schedule_delay_millis=schedule_delay * 1000,
            max_export_batch_size=max(1, min(batch_size, max_queue)),
        )
        self._on_end = self.processor.on_end
        self._stopped = False
        self._tracer = LightTracer(self)
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
        if not self._stopped:
            self._on_end(span)  # type: ignore[arg-type]  # a LightSpan has what the processor reads

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Write every queued span now."""
        return self.processor.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Write what is queued, stop the processor's thread and close the file (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self.processor.shutdown()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
