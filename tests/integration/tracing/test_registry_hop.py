"""One trace across real processes: this test's client span → the registry process's server span, a
response-streaming RPC, a job continued in a spawned worker, SIGTERM flushing, and /metrics."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry import propagate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from aiaas.cli.main import main as cli_main
from aiaas.cli.trace_commands import read_spans
from aiaas.common.v1 import common_pb2
from aiaas.registry.v1 import registry_pb2, registry_pb2_grpc
from aiaas_services.runtime.settings import ServiceSettings
from aiaas_services.runtime.tracing import JsonLinesSpanExporter, client_interceptors, service_resource
from tests.integration.tracing.worker_job import run_job
from tests.support.processes import ServiceProcess, start_service

REGISTRY = "aiaas.registry.v1.RegistryService"


class ClientSettings(ServiceSettings):
    """The test process poses as a client service named ``aiaas-testclient``."""

    service_name = "testclient"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tracing-home")


@pytest.fixture(scope="module")
def registry(home: Path) -> Iterator[ServiceProcess]:
    """A registry exporting spans to <home>/traces every 100 ms, with /metrics on a free port."""
    env = {"OTEL_TRACES_EXPORTER": "file", "OTEL_BSP_SCHEDULE_DELAY": "100", "AIAAS_REGISTRY_METRICS_PORT": "0"}
    service = start_service("registry", home, env=env)
    yield service
    service.terminate()


@pytest.fixture(scope="module")
def provider(home: Path) -> Iterator[TracerProvider]:
    tracer_provider = TracerProvider(resource=service_resource(ClientSettings()))
    exporter = JsonLinesSpanExporter(home / "traces" / "testclient.jsonl")
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield tracer_provider
    tracer_provider.shutdown()


@pytest.fixture
async def stub(registry: ServiceProcess, provider: TracerProvider) -> AsyncIterator[Any]:
    channel = grpc.aio.insecure_channel(registry.address, interceptors=client_interceptors(provider))
    yield registry_pb2_grpc.RegistryServiceStub(channel)
    await channel.close()


def spans_of(folder: Path, trace_id: str, want: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Poll the span files until ``want`` spans of the trace are there (the exporter batches every 100 ms)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [s for s in read_spans(folder) if s["trace_id"] == trace_id]
        if len(found) >= want or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def one(spans: list[dict[str, Any]], name: str, kind: str) -> dict[str, Any]:
    matches = [s for s in spans if s["name"] == name and s["kind"] == kind]
    assert len(matches) == 1, [(s["name"], s["kind"], s["service"]) for s in spans]
    return matches[0]


async def test_client_span_is_parent_of_registry_server_span(stub: Any, provider: TracerProvider, home: Path) -> None:
    with (
        provider.get_tracer("test").start_as_current_span("test.request") as root,
        pytest.raises(grpc.aio.AioRpcError) as failure,
    ):
        await stub.GetModel(registry_pb2.GetModelRequest(name="no-such-model"))
    code = failure.value.code()  # NOT_FOUND once the registry is implemented
    assert code != grpc.StatusCode.OK
    trace_id = format(root.get_span_context().trace_id, "032x")
    spans = spans_of(home / "traces", trace_id, want=3)
    client = one(spans, f"{REGISTRY}/GetModel", "CLIENT")
    server = one(spans, f"{REGISTRY}/GetModel", "SERVER")
    assert client["service"] == "aiaas-testclient"
    assert server["service"] == "aiaas-registry"
    assert client["parent_id"] == format(root.get_span_context().span_id, "016x")
    assert server["parent_id"] == client["span_id"]
    assert server["attributes"]["rpc.system"] == "grpc"
    assert server["attributes"]["rpc.service"] == REGISTRY
    assert server["attributes"]["rpc.method"] == "GetModel"
    assert server["attributes"]["rpc.grpc.status_code"] == code.value[0]
    assert client["attributes"]["rpc.grpc.status_code"] == code.value[0]
    assert client["status"]["code"] == "ERROR"
    # No cross-span timing asserts: an aborting server sends its status before its span ends, and the
    # wall clocks of two processes may disagree by microseconds.
    assert server["end_ns"] > server["start_ns"] and client["end_ns"] > client["start_ns"]


async def test_streaming_rpc_is_traced(stub: Any, provider: TracerProvider, home: Path) -> None:
    with provider.get_tracer("test").start_as_current_span("test.download") as root:
        request = registry_pb2.DownloadArtifactRequest(
            ref=common_pb2.VersionRef(model_name="no-such-model", version=1), artifact_name="model.onnx"
        )
        call = stub.DownloadArtifact(request)
        with pytest.raises(grpc.aio.AioRpcError):
            async for _ in call:
                pass
        code = await call.code()  # the interceptor hands back the real call object
    trace_id = format(root.get_span_context().trace_id, "032x")
    spans = spans_of(home / "traces", trace_id, want=3)
    client = one(spans, f"{REGISTRY}/DownloadArtifact", "CLIENT")
    server = one(spans, f"{REGISTRY}/DownloadArtifact", "SERVER")
    assert server["parent_id"] == client["span_id"]
    assert server["attributes"]["rpc.grpc.status_code"] == code.value[0]


def test_health_checks_stay_out_of_the_trace_files(registry: ServiceProcess, home: Path) -> None:
    # start_service polled grpc.health.v1 until SERVING; none of it may show up.
    time.sleep(0.3)
    assert not [s for s in read_spans(home / "traces") if "grpc.health" in s["name"]]


async def test_job_in_spawned_worker_continues_the_request_trace(
    stub: Any, provider: TracerProvider, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("test.start_job") as request_span:
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.GetModel(registry_pb2.GetModelRequest(name="for-the-job"))
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # stored with the job at request time
    loop = asyncio.get_running_loop()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        job_span_id = await loop.run_in_executor(None, pool.apply, run_job, (str(home), carrier))
    trace_id = format(request_span.get_span_context().trace_id, "032x")
    spans = spans_of(home / "traces", trace_id, want=5)
    job = next(s for s in spans if s["name"] == "training.job")
    upload = next(s for s in spans if s["name"] == "training.upload")
    assert job["span_id"] == job_span_id
    assert job["parent_id"] == format(request_span.get_span_context().span_id, "016x")
    assert job["service"] == "aiaas-training"
    assert [e["attributes"]["epoch"] for e in job["events"]] == [0, 1]
    assert upload["parent_id"] == job["span_id"]
    assert len(spans) == 5
    assert {s["service"] for s in spans} == {"aiaas-testclient", "aiaas-registry", "aiaas-training"}

    assert cli_main(["trace", "show", trace_id, "--home", str(home), "--json"]) == 0
    tree = json.loads(capsys.readouterr().out)
    [root] = tree["roots"]
    children = {child["name"] for child in root["children"]}
    assert children == {f"{REGISTRY}/GetModel", "training.job"}


def test_rpc_metrics_are_served(registry: ServiceProcess, home: Path) -> None:
    port_files = list(home.glob("registry.*.port.metrics"))
    assert len(port_files) == 1, port_files
    port = int(port_files[0].read_text())
    with grpc.insecure_channel(registry.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        for _ in range(3):
            with pytest.raises(grpc.RpcError):
                stub.GetModel(registry_pb2.GetModelRequest(name="metrics-probe"))
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    counts = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("aiaas_rpc_server_duration_seconds_count") and f'method="/{REGISTRY}/GetModel"' in line
    ]
    assert counts and sum(counts) >= 3, text[:2000]
    assert "grpc.health" not in text


def test_sigterm_flushes_spans_still_queued(tmp_path: Path) -> None:
    """With a 60 s batch delay nothing is written until shutdown; SIGTERM must flush it."""
    env = {"OTEL_TRACES_EXPORTER": "file", "OTEL_BSP_SCHEDULE_DELAY": "60000"}
    service = start_service("registry", tmp_path, env=env)
    try:
        with grpc.insecure_channel(service.address) as channel, pytest.raises(grpc.RpcError):
            registry_pb2_grpc.RegistryServiceStub(channel).GetModel(registry_pb2.GetModelRequest(name="x"))
        time.sleep(0.2)
        assert not list(read_spans(tmp_path / "traces"))
    finally:
        assert service.terminate() == 0
    names = [s["name"] for s in read_spans(tmp_path / "traces")]
    assert names == [f"{REGISTRY}/GetModel"]
