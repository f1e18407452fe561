"""Every service starts as a real process, reports health, serves reflection and shuts down in order."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support.processes import SERVICES, start_service

SERVICE_NAMES = {
    "registry": "aiaas.registry.v1.RegistryService",
    "training": "aiaas.training.v1.TrainingService",
    "serialization": "aiaas.serialization.v1.SerializationService",
    "inference": "inference.GRPCInferenceService",
}


class ReflectionSession:
    """An open bidirectional reflection stream: one request in, one response out, at our pace."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._requests: queue.Queue[reflection_pb2.ServerReflectionRequest | None] = queue.Queue()
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        self._responses = stub.ServerReflectionInfo(iter(self._requests.get, None), timeout=60)

    def ask(self, request: reflection_pb2.ServerReflectionRequest) -> reflection_pb2.ServerReflectionResponse:
        self._requests.put(request)
        return next(self._responses)

    def close(self) -> None:
        self._requests.put(None)
        # Draining the iterator to its end raises if the RPC ended with an error status.
        for _ in self._responses:
            pass


@pytest.mark.parametrize("name", SERVICES)
def test_health_reflection_and_graceful_sigterm(name: str, tmp_path: Path) -> None:
    service = start_service(name, tmp_path, args=["--grace-seconds", "20"])
    try:
        with grpc.insecure_channel(service.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for target in ("", SERVICE_NAMES[name]):
                status = health.Check(health_pb2.HealthCheckRequest(service=target), timeout=5).status
                assert status == health_pb2.HealthCheckResponse.SERVING

            session = ReflectionSession(channel)
            listed = session.ask(reflection_pb2.ServerReflectionRequest(list_services=""))
            names = {s.name for s in listed.list_services_response.service}
            assert {SERVICE_NAMES[name], "grpc.health.v1.Health"} <= names

            # Watch health in the background to see it flip when draining starts.
            statuses: queue.Queue[int] = queue.Queue()

            def watch() -> None:
                try:
                    for update in health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60):
                        statuses.put(update.status)
                except grpc.RpcError:
                    pass

            threading.Thread(target=watch, daemon=True).start()
            assert statuses.get(timeout=10) == health_pb2.HealthCheckResponse.SERVING

            # SIGTERM while the reflection stream is in flight.
            service.process.send_signal(15)
            assert statuses.get(timeout=10) == health_pb2.HealthCheckResponse.NOT_SERVING
            time.sleep(0.2)
            assert service.process.poll() is None, "the server must wait for in-flight calls"

            # The in-flight call still works and completes with OK.
            symbol = session.ask(reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAMES[name]))
            assert symbol.HasField("file_descriptor_response")
            session.close()

        assert service.process.wait(30) == 0
    finally:
        service.kill()


def test_reflection_resolves_method_symbols(tmp_path: Path) -> None:
    """ghz asks for `inference.GRPCInferenceService.ModelInfer`; plain grpcio-reflection says not found."""
    service = start_service("inference", tmp_path)
    try:
        with grpc.insecure_channel(service.address) as channel:
            session = ReflectionSession(channel)
            for symbol in ("inference.GRPCInferenceService.ModelInfer", "grpc.health.v1.Health.Check"):
                answer = session.ask(reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol))
                assert answer.HasField("file_descriptor_response"), symbol
            missing = session.ask(
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="inference.GRPCInferenceService.Nope")
            )
            assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
            session.close()
    finally:
        assert service.terminate() == 0
