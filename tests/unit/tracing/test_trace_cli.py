"""`aiaas trace show/list` over span files written by the real exporter (two services, one trace)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import propagate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from aiaas.cli.main import main
from aiaas.cli.trace_commands import build_tree, format_tree
from aiaas_services.runtime.settings import ServiceSettings
from aiaas_services.runtime.tracing import JsonLinesSpanExporter, service_resource


def _provider(folder: Path, service: str) -> TracerProvider:
    settings = type("S", (ServiceSettings,), {"service_name": service})()
    provider = TracerProvider(resource=service_resource(settings))
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(folder / f"{service}.jsonl")))
    return provider


@pytest.fixture
def two_service_trace(tmp_path: Path) -> tuple[Path, str]:
    """training's request span → registry's server span (through a W3C carrier) → a child; plus noise."""
    folder = tmp_path / "home" / "traces"
    training, registry = _provider(folder, "training"), _provider(folder, "registry")
    with training.get_tracer("t").start_as_current_span("training.start_job") as root:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        tracer = registry.get_tracer("r")
        with (
            tracer.start_as_current_span("registry.upload", context=propagate.extract(carrier)),
            tracer.start_as_current_span("registry.blob_write") as write,
        ):
            write.add_event("chunk")
    with training.get_tracer("t").start_as_current_span("unrelated"):
        pass
    training.shutdown()
    registry.shutdown()
    (folder / "registry.jsonl").open("a").write('{"torn": \n')  # a line cut short by a crash
    return tmp_path / "home", format(root.get_span_context().trace_id, "032x")


def test_tree_across_services(two_service_trace: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    home, trace_id = two_service_trace
    assert main(["trace", "show", trace_id, "--home", str(home)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"trace {trace_id}  3 spans  2 services")
    rows = lines[2:]
    assert len(rows) == 3
    columns = [
        row.index(name) for row, name in zip(rows, ["training.", "registry.upload", "registry.blob"], strict=True)
    ]
    assert columns[0] < columns[1] < columns[2], "children are indented under their parents"
    assert "[aiaas-training]" in rows[0] and "[aiaas-registry]" in rows[1]
    assert "(1 events)" in rows[2]


def test_json_and_prefix(two_service_trace: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    home, trace_id = two_service_trace
    assert main(["trace", "show", trace_id[:12], "--dir", str(home / "traces"), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["trace_id"] == trace_id
    assert payload["services"] == ["aiaas-registry", "aiaas-training"]
    [root] = payload["roots"]
    assert root["name"] == "training.start_job" and root["offset_ms"] == 0
    [upload] = root["children"]
    assert upload["service"] == "aiaas-registry"
    assert upload["children"][0]["name"] == "registry.blob_write"
    assert upload["duration_ms"] >= upload["children"][0]["duration_ms"]


def test_list_then_errors(two_service_trace: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    home, _ = two_service_trace
    assert main(["trace", "list", "--home", str(home), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["root"] for row in rows} == {"training.start_job", "unrelated"}
    assert main(["trace", "show", "f" * 32, "--home", str(home)]) == 1
    assert "error: NOT_FOUND: no spans for trace" in capsys.readouterr().err
    assert main(["trace", "show", "xyz", "--home", str(home)]) == 2
    assert "must be hex" in capsys.readouterr().err


def test_orphans_are_shown_as_roots_with_a_note() -> None:
    spans: list[dict[str, Any]] = [
        {"trace_id": "a" * 32, "span_id": "1" * 16, "parent_id": "9" * 16, "name": "late", "start_ns": 5, "end_ns": 9},
        {"trace_id": "a" * 32, "span_id": "2" * 16, "parent_id": None, "name": "root", "start_ns": 1, "end_ns": 20},
    ]
    roots = build_tree(spans)
    assert [r.span["name"] for r in roots] == ["root", "late"]
    assert roots[1].orphan and not roots[0].orphan
    assert "parent 9999999999999999 not found" in format_tree("a" * 32, spans)[-1]
