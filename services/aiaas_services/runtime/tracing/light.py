"""A light recording span and tracer for the JSON-lines file exporter.

Why not the SDK's span: it costs several times the CPU of a ``LightSpan`` on the request's path
(``tracing.span_cpu_sdk_over_light`` in ``make bench``); exporting stays the SDK's ``BatchSpanProcessor``.
"""

from __future__ import annotations

import contextlib
import functools
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from random import getrandbits as _random_bits
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from aiaas_services.runtime.tracing.spanjson import (
    KIND_NAMES,
    UNSET_STATUS,
    compact_json,
    json_text,
    jsonable_attributes,
)

if TYPE_CHECKING:
    from aiaas_services.runtime.tracing.jsonlines import JsonLinesTracerProvider


class StaticAttributes(dict[str, Any]):
    """Start attributes shared by every span of a kind (an RPC's ``rpc.*``) and never changed after creation:
    a light span keeps them by reference, and their JSON is encoded once rather than once per span."""

    @functools.cached_property
    def json(self) -> str:
        """The attributes as one compact JSON object."""
        return compact_json(self)


_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
_NOT_SAMPLED = trace.TraceFlags(trace.TraceFlags.DEFAULT)
_MAX_ITEMS = 128  # attributes, events and links per span, as the SDK's default limits


class LightSpan(trace.Span):
    """A recording span that keeps plain Python values and is encoded to JSON only when exported.

    It implements the whole ``opentelemetry.trace.Span`` API; what it leaves out compared with the SDK's
    span is the per-call locking and attribute copying (``tracing.span_cpu_sdk_over_light`` in ``make bench``).
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
            compact_json({"code": status.status_code.name, "description": status.description})
            if status
            else UNSET_STATUS
        )
        events = self._events
        events_json = (
            compact_json([{"name": n, "time_ns": t, "attributes": a} for n, t, a in events]) if events else "[]"
        )
        links_json = compact_json([_link_dict(link) for link in self._links]) if self._links else "[]"
        return (
            f'{{"trace_id":"{ctx.trace_id:032x}","span_id":"{ctx.span_id:016x}","parent_id":{parent_json},'
            f'"name":{json_text(self._name)},"service":{service_json},'
            f'"kind":"{KIND_NAMES[self._kind]}","start_ns":{self._start_ns},"end_ns":{self._end_ns},'
            f'"attributes":{self._attributes_json()},"events":{events_json},"status":{status_json},'
            f'"links":{links_json}}}'
        )

    def _attributes_json(self) -> str:
        base = self._base
        if base is None:
            return compact_json(self._attributes)
        if not self._attributes:
            return base.json
        return f"{base.json[:-1]},{compact_json(self._attributes)[1:]}" if base else compact_json(self._attributes)


def _link_dict(link: trace.Link) -> dict[str, Any]:
    return {
        "trace_id": format(link.context.trace_id, "032x"),
        "span_id": format(link.context.span_id, "016x"),
        "attributes": jsonable_attributes(link.attributes),
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
