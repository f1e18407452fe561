"""The light tracer behind the default file exporter: the Span API, sampling, the batch processor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from aiaas_services.runtime.settings import ServiceSettings
from aiaas_services.runtime.tracing import (
    JsonLinesSpanExporter,
    JsonLinesTracerProvider,
    build_tracer_provider,
    service_resource,
)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def light(tmp_path: Path) -> JsonLinesTracerProvider:
    provider = build_tracer_provider(ServiceSettings(home=str(tmp_path)), {"OTEL_TRACES_EXPORTER": "file"})
    assert isinstance(provider, JsonLinesTracerProvider)
    return provider


def test_file_only_uses_the_light_provider_and_others_the_sdk(tmp_path: Path) -> None:
    settings = ServiceSettings(home=str(tmp_path))
    assert isinstance(build_tracer_provider(settings, {}), JsonLinesTracerProvider)
    assert isinstance(build_tracer_provider(settings, {"OTEL_TRACES_EXPORTER": "file,console"}), TracerProvider)
    forced = build_tracer_provider(settings, {"AIAAS_TRACE_SDK": "true"})
    assert isinstance(forced, TracerProvider)
    forced.shutdown()


def test_span_api_round_trip(light: JsonLinesTracerProvider, tmp_path: Path) -> None:
    tracer = light.get_tracer(__name__)
    with tracer.start_as_current_span("parent", kind=SpanKind.SERVER, attributes={"a": 1}) as parent:
        other = tracer.start_span("other")
        other.end()
        with tracer.start_as_current_span("child", links=[Link(other.get_span_context(), {"why": "batch"})]) as child:
            child.set_attribute("rows", 3)
            child.set_attributes({"shape": [2, 4], "ok": True})
            child.add_event("epoch", {"loss": 0.5})
            child.update_name("child-renamed")
            child.set_status(Status(StatusCode.ERROR, "bad input"))
            child.set_status(StatusCode.UNSET)  # never overrides
        assert trace.get_current_span() is parent
    with pytest.raises(ValueError), tracer.start_as_current_span("failing"):
        raise ValueError("nope")
    child.set_attribute("late", 1)  # ignored after end
    light.shutdown()
    spans = {s["name"]: s for s in lines(tmp_path / "traces" / "aiaas.jsonl")}
    assert set(spans) == {"parent", "other", "child-renamed", "failing"}
    kid, top = spans["child-renamed"], spans["parent"]
    assert kid["parent_id"] == top["span_id"] and top["parent_id"] is None
    assert kid["trace_id"] == top["trace_id"] == format(parent.get_span_context().trace_id, "032x")
    assert top["kind"] == "SERVER" and top["service"] == "aiaas-aiaas" and top["attributes"] == {"a": 1}
    assert kid["attributes"] == {"rows": 3, "shape": [2, 4], "ok": True}
    assert kid["events"][0]["name"] == "epoch" and kid["events"][0]["attributes"] == {"loss": 0.5}
    assert kid["status"] == {"code": "ERROR", "description": "bad input"}
    assert kid["links"] == [
        {"trace_id": spans["other"]["trace_id"], "span_id": spans["other"]["span_id"], "attributes": {"why": "batch"}}
    ]
    assert kid["end_ns"] >= kid["start_ns"] > 0
    failing = spans["failing"]
    assert failing["status"]["code"] == "ERROR"
    assert failing["events"][0]["name"] == "exception"
    assert failing["events"][0]["attributes"]["exception.type"] == "ValueError"
    assert "nope" in failing["events"][0]["attributes"]["exception.stacktrace"]


def test_same_fields_as_the_sdk_exporter(light: JsonLinesTracerProvider, tmp_path: Path) -> None:
    light.get_tracer("t").start_span("light").end()
    light.shutdown()
    sdk = TracerProvider(resource=service_resource(ServiceSettings()))
    exporter = JsonLinesSpanExporter(tmp_path / "sdk.jsonl")
    span = sdk.get_tracer("t").start_span("sdk")
    span.end()
    exporter.export([span])  # type: ignore[list-item]
    [light_line] = lines(tmp_path / "traces" / "aiaas.jsonl")
    [sdk_line] = lines(tmp_path / "sdk.jsonl")
    assert list(light_line) == list(sdk_line)


def test_sampling_follows_the_parent_and_the_ratio(tmp_path: Path) -> None:
    ratio = JsonLinesTracerProvider(
        service_resource(ServiceSettings()), ParentBased(TraceIdRatioBased(0.25)), tmp_path / "r.jsonl", 0.05
    )
    tracer = ratio.get_tracer("t")
    roots = [tracer.start_span("root") for _ in range(2000)]
    sampled = [s for s in roots if s.get_span_context().trace_flags.sampled]
    assert 350 < len(sampled) < 650
    unsampled_root = next(s for s in roots if not s.get_span_context().trace_flags.sampled)
    assert not unsampled_root.is_recording()
    child = tracer.start_span("child", context=trace.set_span_in_context(unsampled_root))
    assert not child.is_recording(), "children of an unsampled parent are not sampled"
    for span in roots:
        span.end()
    ratio.shutdown()
    assert len(lines(tmp_path / "r.jsonl")) == len(sampled)
    off = JsonLinesTracerProvider(service_resource(ServiceSettings()), ALWAYS_OFF, tmp_path / "off.jsonl")
    assert not off.get_tracer("t").start_span("x").is_recording()
    off.shutdown()


def test_batch_processor_flushes_on_its_schedule_and_drops_when_full(tmp_path: Path) -> None:
    import time

    path = tmp_path / "w.jsonl"
    provider = JsonLinesTracerProvider(
        service_resource(ServiceSettings()), ParentBased(TraceIdRatioBased(1.0)), path, 0.05, max_queue=10
    )
    tracer = provider.get_tracer("t")
    tracer.start_span("first").end()
    deadline = time.monotonic() + 5
    while not (path.exists() and path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [s["name"] for s in lines(path)] == ["first"], "written by the thread without a flush"
    export_lock = provider.processor._batch_processor._export_lock
    export_lock.acquire()  # hold the exporter so the queue fills
    try:
        for index in range(15):
            tracer.start_span(f"burst-{index}").end()  # never blocks the caller
    finally:
        export_lock.release()
    provider.shutdown()
    written = [s["name"] for s in lines(path)]
    assert len(written) == 11, "a full queue drops spans instead of growing"
    assert sorted(written[1:]) == sorted(f"burst-{i}" for i in range(5, 15)), "the oldest ones are dropped"
    tracer.start_span("after-shutdown").end()  # ignored, no error
