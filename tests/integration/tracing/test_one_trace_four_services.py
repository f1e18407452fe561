"""The done-when of the tracing issue: one trace from a training request through the registry and the
serialization service to the inference service, and an inference request's queue wait, batch and run time.

The four services run as separate processes (file exporter, one shared trace folder). This test's own
calls go through our client interceptors with a private tracer provider, posing as a client service.
After the pipeline, the services get SIGTERM, which flushes their spans, and the assertions read the
JSON-lines files exactly as ``aiaas trace show`` does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from aiaas.cli.trace_commands import build_tree, read_spans
from aiaas.common.v1 import common_pb2
from aiaas.oip.v2 import grpc_service_pb2 as oip
from aiaas.oip.v2 import grpc_service_pb2_grpc as oip_grpc
from aiaas.serialization.v1 import serialization_pb2, serialization_pb2_grpc
from aiaas.training.v1 import training_pb2, training_pb2_grpc
from aiaas_services.runtime.settings import ServiceSettings
from aiaas_services.runtime.tracing import JsonLinesSpanExporter, client_interceptors, service_resource
from tests.support.processes import ServiceProcess, start_service

MODEL = "trace-mlp"
ONNX_MODEL = f"{MODEL}-onnx"
DONE = {common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED, common_pb2.JOB_STATE_CANCELLED}
SERVICES = ("aiaas-training", "aiaas-registry", "aiaas-serialization", "aiaas-inference")


class ClientSettings(ServiceSettings):
    """This test poses as a client service named ``aiaas-testclient``."""

    service_name = "testclient"


class Run:
    """What the pipeline produced: services, trace folder, and the trace ids to check."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.trace_dir = home / "traces"
        self.services: dict[str, ServiceProcess] = {}
        self.pipeline_trace = ""
        self.infer_trace = ""
        self.exit_codes: dict[str, int] = {}
        self.spans: list[dict[str, Any]] = []


def _env(trace_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "file",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "AIAAS_TRACE_DIR": str(trace_dir),
        **extra,
    }


def _spec() -> training_pb2.TrainingSpec:
    return training_pb2.TrainingSpec(
        model_name=MODEL,
        architecture=training_pb2.Architecture(mlp=training_pb2.MlpSpec(hidden_sizes=[32])),
        data=training_pb2.DataSpec(sklearn="digits"),
        optimizer=training_pb2.OptimizerSpec(kind=training_pb2.OPTIMIZER_KIND_ADAM, learning_rate=5e-3),
        epochs=3,
        batch_size=64,
        seed=11,
        export=common_pb2.ExportOptions(variants=["fp32"], set_alias="production"),
    )


async def _wait_ready(inference: Any, version: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            request = oip.ModelReadyRequest(name=ONNX_MODEL, version=str(version))
            if (await inference.ModelReady(request, timeout=5)).ready:
                return
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
                raise
        await asyncio.sleep(0.2)
    raise TimeoutError(f"inference did not load {ONNX_MODEL} v{version}")


def _infer_request(rows: int = 1) -> oip.ModelInferRequest:
    data = np.random.default_rng(0).uniform(0, 16, size=(rows, 64)).astype("<f4")
    request = oip.ModelInferRequest(model_name=ONNX_MODEL)
    request.inputs.add(name="input", datatype="FP32", shape=[rows, 64])
    request.raw_input_contents.append(data.tobytes())
    return request


async def _pipeline(run: Run, provider: TracerProvider) -> None:
    tracer = provider.get_tracer("test")
    interceptors = client_interceptors(provider)
    channels = {
        name: grpc.aio.insecure_channel(service.address, interceptors=interceptors)
        for name, service in run.services.items()
    }
    training = training_pb2_grpc.TrainingServiceStub(channels["training"])
    serialization = serialization_pb2_grpc.SerializationServiceStub(channels["serialization"])
    inference = oip_grpc.GRPCInferenceServiceStub(channels["inference"])
    try:
        with tracer.start_as_current_span("test.pipeline") as root:
            run.pipeline_trace = format(root.get_span_context().trace_id, "032x")
            job = (await training.StartTrainingJob(training_pb2.StartTrainingJobRequest(spec=_spec()))).job
            async for event in training.WatchJob(training_pb2.WatchJobRequest(job_id=job.job_id), timeout=600):
                if event.state in DONE:
                    break
            job = (await training.GetJob(training_pb2.GetJobRequest(job_id=job.job_id))).job
            assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.failure_reason
            assert job.export_job_id, "training with an export block must start an export job"
            request = serialization_pb2.WatchExportJobRequest(job_id=job.export_job_id)
            async for event in serialization.WatchExportJob(request, timeout=600):
                if event.state in DONE:
                    break
            export = (
                await serialization.GetExportJob(serialization_pb2.GetExportJobRequest(job_id=job.export_job_id))
            ).job
            assert export.state == common_pb2.JOB_STATE_SUCCEEDED, export.failure_reason
            [report] = [r for r in export.reports if r.variant == "fp32"]
            await _wait_ready(inference, report.registered.version)  # loaded by following the alias
            response = await inference.ModelInfer(_infer_request(), timeout=30)
            assert response.outputs[0].shape == [1, 10]
        with tracer.start_as_current_span("test.infer") as infer_root:
            run.infer_trace = format(infer_root.get_span_context().trace_id, "032x")
            await inference.ModelInfer(_infer_request(), timeout=30)
    finally:
        for channel in channels.values():
            await channel.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    result = Run(tmp_path_factory.mktemp("one-trace"))
    env = _env(result.trace_dir)
    provider = TracerProvider(resource=service_resource(ClientSettings()))
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(result.trace_dir / "testclient.jsonl")))
    try:
        registry = start_service("registry", result.home / "registry", env=env)
        result.services["registry"] = registry
        for name in ("serialization", "training", "inference"):
            extra = {f"AIAAS_{name.upper()}_REGISTRY_TARGET": registry.address}
            if name == "training":
                extra["AIAAS_TRAINING_SERIALIZATION_TARGET"] = result.services["serialization"].address
            if name == "inference":
                extra["AIAAS_INFERENCE_MODELS"] = ONNX_MODEL
            result.services[name] = start_service(name, result.home / name, env={**env, **extra}, timeout=120)
        asyncio.run(_pipeline(result, provider))
    finally:
        for name in ("inference", "training", "serialization", "registry"):
            if name in result.services:
                result.exit_codes[name] = result.services[name].terminate()
        provider.shutdown()
    result.spans = list(read_spans(result.trace_dir))
    yield result


def _by_id(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["span_id"]: s for s in spans}


def _ancestry(span: dict[str, Any], index: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The span's parents up to the root, nearest first; stops where a parent is missing."""
    chain = []
    current = span
    while current.get("parent_id") in index:
        current = index[current["parent_id"]]
        chain.append(current)
    return chain


def test_services_shut_down_cleanly(run: Run) -> None:
    assert run.exit_codes == dict.fromkeys(("inference", "training", "serialization", "registry"), 0)


def test_one_trace_covers_all_four_services(run: Run) -> None:
    spans = [s for s in run.spans if s["trace_id"] == run.pipeline_trace]
    services = {s["service"] for s in spans}
    assert set(SERVICES) <= services, f"services in the pipeline trace: {sorted(services)}"
    roots = build_tree(spans)
    assert [r.span["name"] for r in roots] == ["test.pipeline"], [
        (r.span["name"], r.span["service"], r.orphan) for r in roots
    ]


def test_parent_child_order_across_services(run: Run) -> None:
    spans = [s for s in run.spans if s["trace_id"] == run.pipeline_trace]
    index = _by_id(spans)

    def services_above(span: dict[str, Any]) -> list[str]:
        seen: list[str] = []
        for parent in _ancestry(span, index):
            if not seen or seen[-1] != parent["service"]:
                seen.append(parent["service"])
        return seen

    # training's StartTrainingJob server span hangs under this test's client span.
    start = next(s for s in spans if s["name"].endswith("/StartTrainingJob") and s["kind"] == "SERVER")
    assert start["service"] == "aiaas-training"
    assert index[start["parent_id"]]["service"] == "aiaas-testclient"
    # The job (a worker process) continues the request: training spans below StartTrainingJob.
    training_spans = [s for s in spans if s["service"] == "aiaas-training"]
    assert any(start in _ancestry(s, index) for s in training_spans if s is not start), (
        "no training span (the job) continues the StartTrainingJob request"
    )
    # The registry stores the checkpoint on training's behalf ...
    registry_under_training = [
        s for s in spans if s["service"] == "aiaas-registry" and services_above(s)[:1] == ["aiaas-training"]
    ]
    assert registry_under_training, "no registry span under a training span"
    # ... training asks serialization for the export, whose job (a worker process) continues that request ...
    export_start = next(s for s in spans if s["name"].endswith("/StartExportJob") and s["kind"] == "SERVER")
    assert export_start["service"] == "aiaas-serialization"
    assert index[export_start["parent_id"]]["service"] == "aiaas-training"
    export_work = [s for s in spans if s["service"] == "aiaas-serialization" and s["kind"] == "INTERNAL"]
    assert export_work, "no serialization span of the export job in the trace"
    assert all(export_start in _ancestry(s, index) for s in export_work)
    # ... and the registry stores the ONNX variants under the export job.
    registry_under_serialization = [
        s for s in spans if s["service"] == "aiaas-registry" and services_above(s)[:1] == ["aiaas-serialization"]
    ]
    assert registry_under_serialization, "no registry span under a serialization span"
    # Inference answers within the same trace.
    infer = [s for s in spans if s["service"] == "aiaas-inference" and s["name"].endswith("/ModelInfer")]
    assert infer and index[infer[0]["parent_id"]]["service"] == "aiaas-testclient"


def test_inference_request_span_carries_queue_batch_and_run(run: Run) -> None:
    """One SERVER span per request; queue wait, batch size and run time ride on it (per-batch spans are
    off by default: ``AIAAS_INFERENCE_TRACE_BATCH_SPANS``, tested in tests/unit/inference/test_batcher.py)."""
    spans = [s for s in run.spans if s["trace_id"] == run.infer_trace]
    index = _by_id(spans)
    server = next(s for s in spans if s["name"].endswith("/ModelInfer") and s["kind"] == "SERVER")
    assert index[server["parent_id"]]["name"].endswith("/ModelInfer"), "the test's client span is its parent"
    attributes = server["attributes"]
    for key in ("inference.queue_wait_us", "inference.batch_requests", "inference.batch_rows", "inference.run_us"):
        assert key in attributes, f"{key} missing from the ModelInfer span: {sorted(attributes)}"
    assert attributes["inference.batch_rows"] >= 1 and attributes["inference.run_us"] >= 0
    below = [s["name"] for s in spans if server in _ancestry(s, index)]
    assert below == [], f"per-batch spans by default: {below}"
