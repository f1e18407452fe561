"""``OTEL_TRACES_EXPORTER=otlp``: a registry process sends its spans over OTLP/gRPC to a collector.

The collector is the edge we cannot run here (the compose stack runs the real one), so this test stands
in a minimal OTLP trace receiver on a loopback port: the real OTLP exporter, the real wire format.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from aiaas.registry.v1 import registry_pb2, registry_pb2_grpc
from tests.support.processes import start_service


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    """Keeps every ExportTraceServiceRequest it is sent."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    def Export(self, request: Any, context: Any) -> Any:
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = Receiver()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, port
    server.stop(None)


def test_registry_exports_spans_over_otlp(receiver: tuple[Receiver, int], tmp_path: Path) -> None:
    servicer, port = receiver
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "60000",  # only the SIGTERM flush sends them
    }
    service = start_service("registry", tmp_path, env=env)
    try:
        with grpc.insecure_channel(service.address) as channel:
            with pytest.raises(grpc.RpcError) as failure:
                registry_pb2_grpc.RegistryServiceStub(channel).GetModel(registry_pb2.GetModelRequest(name="absent"))
            assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        assert service.terminate() == 0
    spans = [
        (resource_spans.resource, span)
        for request in servicer.requests
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    names = [span.name for _, span in spans]
    assert "aiaas.registry.v1.RegistryService/GetModel" in names, names
    resource, span = next((r, s) for r, s in spans if s.name.endswith("/GetModel"))
    resource_attributes = {a.key: a.value.string_value for a in resource.attributes}
    assert resource_attributes["service.name"] == "aiaas-registry"
    span_attributes = {a.key: a.value for a in span.attributes}
    assert span_attributes["rpc.grpc.status_code"].int_value == grpc.StatusCode.NOT_FOUND.value[0]
    assert not (tmp_path / "traces").exists(), "otlp alone writes no local span file"
