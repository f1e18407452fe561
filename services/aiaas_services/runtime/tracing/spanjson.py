"""Spans as compact JSON lines: the encoding the JSON-lines exporter writes, one object per span."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def jsonable_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
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
        "attributes": jsonable_attributes(span.attributes),
        "events": [
            {"name": e.name, "time_ns": e.timestamp, "attributes": jsonable_attributes(e.attributes)}
            for e in span.events
        ],
        "status": {"code": span.status.status_code.name, "description": span.status.description},
        "links": [
            {
                "trace_id": format(link.context.trace_id, "032x"),
                "span_id": format(link.context.span_id, "016x"),
                "attributes": jsonable_attributes(link.attributes),
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


compact_json = _compact_encoder()
UNSET_STATUS = '{"code":"UNSET","description":null}'
KIND_NAMES = {kind: kind.name for kind in SpanKind}
json_text = functools.lru_cache(maxsize=4096)(compact_json)  # span and service names repeat: encode once


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
        status_json = UNSET_STATUS
    else:
        status_json = compact_json({"code": status.status_code.name, "description": status.description})
    parent_json = f'"{parent.span_id:016x}"' if parent is not None else "null"
    extra = span_to_dict(span) if span.events or span.links else None
    return (
        f'{{"trace_id":"{ctx.trace_id:032x}","span_id":"{ctx.span_id:016x}",'
        f'"parent_id":{parent_json},'
        f'"name":{json_text(span.name)},"service":{json_text(span.resource.attributes.get("service.name", ""))},'
        f'"kind":"{KIND_NAMES[span.kind]}","start_ns":{span.start_time},"end_ns":{span.end_time},'
        f'"attributes":{compact_json(dict(span.attributes or {}))},'
        f'"events":{compact_json(extra["events"]) if extra else "[]"},'
        f'"status":{status_json},'
        f'"links":{compact_json(extra["links"]) if extra else "[]"}}}'
    )
