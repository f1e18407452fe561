"""Tracing configuration from OTEL_* variables and the JSON-lines exporter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from aiaas_services.runtime.settings import ServiceSettings
from aiaas_services.runtime.tracing import (
    JsonLinesSpanExporter,
    build_tracer_provider,
    exporter_names,
    sampler_from_env,
    service_resource,
    trace_dir,
)


def test_file_exporter_is_the_default_and_none_turns_tracing_off() -> None:
    assert exporter_names({}) == ["file"]
    assert exporter_names({"OTEL_TRACES_EXPORTER": "otlp, console"}) == ["otlp", "console"]
    assert exporter_names({"OTEL_TRACES_EXPORTER": "none"}) == []
    assert exporter_names({"OTEL_SDK_DISABLED": "true"}) == []
    assert build_tracer_provider(ServiceSettings(), {"OTEL_TRACES_EXPORTER": "none"}) is None


def test_unknown_exporter_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"unknown exporter.*zipkin.*use file, otlp, console or none"):
        exporter_names({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_sampler_from_standard_variables() -> None:
    default = sampler_from_env({})
    assert isinstance(default, ParentBased)
    assert "AlwaysOnSampler" in default.get_description()
    ratio = sampler_from_env({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"})
    assert "TraceIdRatioBased{0.25}" in ratio.get_description()
    assert sampler_from_env({"OTEL_TRACES_SAMPLER": "always_off"}).get_description() == "AlwaysOffSampler"
    with pytest.raises(ValueError, match="OTEL_TRACES_SAMPLER_ARG"):
        sampler_from_env({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"})
    with pytest.raises(ValueError, match="unknown sampler 'sometimes'"):
        sampler_from_env({"OTEL_TRACES_SAMPLER": "sometimes"})


def test_ratio_sampler_drops_about_the_right_share(tmp_path: Path) -> None:
    provider = build_tracer_provider(
        ServiceSettings(home=str(tmp_path)),
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.2"},
    )
    assert provider is not None
    tracer = provider.get_tracer("t")
    sampled = sum(tracer.start_span("s").get_span_context().trace_flags.sampled for _ in range(2000))
    assert 250 < sampled < 550  # 400 expected
    provider.shutdown()


def test_resource_names_the_service_and_trace_dir_follows_settings(tmp_path: Path) -> None:
    class RegistrySettings(ServiceSettings):
        service_name = "registry"

    resource = service_resource(RegistrySettings())
    assert resource.attributes["service.name"] == "aiaas-registry"
    assert resource.attributes["service.version"]
    assert trace_dir(ServiceSettings(home=str(tmp_path))) == tmp_path / "traces"
    assert trace_dir(ServiceSettings(home=str(tmp_path), trace_dir=str(tmp_path / "t"))) == tmp_path / "t"


def _provider_to(path: Path) -> tuple[TracerProvider, JsonLinesSpanExporter]:
    exporter = JsonLinesSpanExporter(path)
    provider = TracerProvider(resource=service_resource(ServiceSettings()))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_json_lines_exporter_writes_every_field(tmp_path: Path) -> None:
    path = tmp_path / "traces" / "svc.jsonl"
    provider, _ = _provider_to(path)
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("parent") as parent:
        other = tracer.start_span("linked")
        other.end()
        with tracer.start_as_current_span(
            "child", kind=SpanKind.CLIENT, links=[Link(other.get_span_context(), {"why": "batch"})]
        ) as child:
            child.set_attribute("rows", 3)
            child.set_attribute("shape", [2, 4])
            child.add_event("epoch", {"loss": 0.5})
            child.set_status(Status(StatusCode.ERROR, "bad input"))
    provider.shutdown()
    records = {r["name"]: r for r in map(json.loads, path.read_text().splitlines())}
    assert set(records) == {"parent", "linked", "child"}
    child_record, parent_record = records["child"], records["parent"]
    assert child_record["trace_id"] == format(parent.get_span_context().trace_id, "032x")
    assert child_record["parent_id"] == parent_record["span_id"]
    assert parent_record["parent_id"] is None
    assert child_record["service"] == "aiaas-aiaas"
    assert child_record["kind"] == "CLIENT"
    assert child_record["end_ns"] >= child_record["start_ns"] > 0
    assert child_record["attributes"] == {"rows": 3, "shape": [2, 4]}
    assert child_record["events"][0]["name"] == "epoch"
    assert child_record["events"][0]["attributes"] == {"loss": 0.5}
    assert child_record["status"] == {"code": "ERROR", "description": "bad input"}
    assert child_record["links"] == [
        {
            "trace_id": records["linked"]["trace_id"],
            "span_id": records["linked"]["span_id"],
            "attributes": {"why": "batch"},
        }
    ]


def test_concurrent_batches_never_tear_lines(tmp_path: Path) -> None:
    """Threads (and processes: same O_APPEND single write) appending at once leave whole lines only."""
    path = tmp_path / "shared.jsonl"
    providers = [_provider_to(path)[0] for _ in range(4)]

    def burst(provider: TracerProvider) -> None:
        tracer = provider.get_tracer("t")
        for index in range(200):
            with tracer.start_as_current_span("s") as span:
                span.set_attribute("payload", "x" * (index * 37 % 3000))

    threads = [threading.Thread(target=burst, args=(p,)) for p in providers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for provider in providers:
        provider.shutdown()
    lines = path.read_text().splitlines()
    assert len(lines) == 800
    assert all(json.loads(line)["name"] == "s" for line in lines)


def test_exporter_reports_failure_when_the_folder_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    exporter = JsonLinesSpanExporter(blocker / "traces" / "svc.jsonl")
    provider = TracerProvider()
    span = provider.get_tracer("t").start_span("s")
    span.end()
    from opentelemetry.sdk.trace.export import SpanExportResult

    assert exporter.export([span]) == SpanExportResult.FAILURE  # type: ignore[list-item]


def _run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=full_env, capture_output=True, text=True, timeout=60
    )


SETUP_SCRIPT = """
    from opentelemetry import trace
    from aiaas_services.runtime.settings import ServiceSettings
    from aiaas_services.runtime import tracing

    class TrainingSettings(ServiceSettings):
        service_name = "training"

    shutdown = tracing.setup_tracing(TrainingSettings(home={home!r}))
    print("enabled", tracing.tracing_enabled())
    with trace.get_tracer("x").start_as_current_span("training.job"):
        pass
    again = tracing.setup_tracing(TrainingSettings(home={home!r}))  # second service in one process: shared
    again()
    shutdown()
    print("after", tracing.tracing_enabled())
"""


def test_setup_tracing_installs_the_file_exporter_and_flushes_on_shutdown(tmp_path: Path) -> None:
    result = _run_python(SETUP_SCRIPT.format(home=str(tmp_path)), {"OTEL_TRACES_EXPORTER": "file"})
    assert result.returncode == 0, result.stderr
    assert "enabled True" in result.stdout and "after False" in result.stdout
    [record] = [json.loads(line) for line in (tmp_path / "traces" / "training.jsonl").read_text().splitlines()]
    assert record["name"] == "training.job"
    assert record["service"] == "aiaas-training"


def test_setup_tracing_with_none_exports_nothing(tmp_path: Path) -> None:
    result = _run_python(SETUP_SCRIPT.format(home=str(tmp_path)), {"OTEL_TRACES_EXPORTER": "none"})
    assert result.returncode == 0, result.stderr
    assert "enabled False" in result.stdout
    assert not (tmp_path / "traces").exists()


def test_log_records_carry_the_current_trace_id() -> None:
    import logging

    from aiaas_services.runtime.tracing import TraceIdLogFilter

    provider = TracerProvider()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    TraceIdLogFilter().filter(record)
    assert not hasattr(record, "trace_id")
    with provider.get_tracer("t").start_as_current_span("s") as span:
        TraceIdLogFilter().filter(record)
    assert vars(record)["trace_id"] == format(span.get_span_context().trace_id, "032x")
