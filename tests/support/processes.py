"""Start real service processes on ephemeral loopback ports and wait until they are healthy.

Each service binds port 0 and writes the port it got to a port file once health is SERVING, so there is
no "find a free port, close it, bind it again" race.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aiaas.oip.v2 import grpc_service_pb2, grpc_service_pb2_grpc

SERVICES = ("registry", "training", "serialization", "inference")


@dataclass
class ServiceProcess:
    """A running service process."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    home: Path
    env: dict[str, str] = field(default_factory=dict)
    http_port: int | None = None  # the inference service's REST port, when it serves one

    @property
    def address(self) -> str:
        """host:port to dial."""
        return f"127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        """Base URL of the REST front door (inference only)."""
        assert self.http_port is not None, f"{self.name} serves no REST port"
        return f"http://127.0.0.1:{self.http_port}"

    def log(self) -> str:
        """What the process has logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL (a crash) and reap."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def start_service(
    name: str,
    home: Path,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    health_tls: Any = None,
    module: str = "",
) -> ServiceProcess:
    """Start ``python -m aiaas_services.<name>`` on 127.0.0.1:0 and wait for health SERVING.

    ``health_tls`` (a ``tests.support.certs.CertSet``) makes the health wait use TLS with the client
    certificate, for servers started with TLS settings. ``module`` runs another entry point (a service
    with faults injected, say) in place of ``aiaas_services.<name>``.
    """
    home.mkdir(parents=True, exist_ok=True)
    port_file = home / f"{name}.{os.getpid()}.{time.monotonic_ns()}.port"
    log_path = home / f"{name}.log"
    full_env = {**os.environ, "AIAAS_HOME": str(home), "PYTHONUNBUFFERED": "1", **(env or {})}
    log_handle = log_path.open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            module or f"aiaas_services.{name}",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            # REST on a free port too (its default, 8000, would collide between test servers)
            *(["--http-port", "0"] if name == "inference" else []),
            *args,
        ],
        stdout=log_handle,
        stderr=subprocess.STDOUT,
        env=full_env,
    )
    log_handle.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log_path.read_text(errors='replace')}")
        if port_file.exists():
            port = int(port_file.read_text())
            service = ServiceProcess(name, process, port, log_path, home, dict(env or {}))
            wait_serving(service.address, timeout=max(1.0, deadline - time.monotonic()), tls=health_tls)
            http_file = Path(f"{port_file}.http")
            if http_file.exists():
                service.http_port = int(http_file.read_text())
            return service
        time.sleep(0.05)
    process.kill()
    raise TimeoutError(f"{name} did not start within {timeout}s:\n{log_path.read_text(errors='replace')}")


def start_inference(home: Path, registry: str, models: str, env: Mapping[str, str] | None = None) -> ServiceProcess:
    """An inference service serving ``models`` (comma-separated) from the registry at ``registry``."""
    return start_service(
        "inference",
        home,
        env={"AIAAS_INFERENCE_REGISTRY_TARGET": registry, "AIAAS_INFERENCE_MODELS": models, **(env or {})},
    )


def serve(name: str, home: Path, **options: Any) -> Iterator[ServiceProcess]:
    """A fixture's body: ``start_service(name, home, **options)`` yielded, then stopped (SIGTERM)."""
    service = start_service(name, home, **options)
    yield service
    service.terminate()


def serve_serialization(registry: ServiceProcess, home: Path, **env: str) -> Iterator[ServiceProcess]:
    """A fixture's body: a serialization service that registers into ``registry``, with extra ``env``."""
    yield from serve("serialization", home, env={"AIAAS_SERIALIZATION_REGISTRY_TARGET": registry.address, **env})


def wait_model_ready(service: ServiceProcess, model: str, timeout: float = 60.0) -> None:
    """Poll the inference service's ModelReady until ``model`` is ready; fail with the service's log after
    ``timeout`` seconds."""
    with grpc.insecure_channel(service.address) as channel:
        stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        deadline = time.monotonic() + timeout
        while not stub.ModelReady(grpc_service_pb2.ModelReadyRequest(name=model), timeout=10).ready:
            assert time.monotonic() < deadline, service.log()[-3000:]
            time.sleep(0.2)


def wait_serving(address: str, service: str = "", timeout: float = 30.0, tls: Any = None) -> None:
    """Poll grpc.health.v1 until SERVING."""
    deadline = time.monotonic() + timeout
    if tls is not None:
        credentials = grpc.ssl_channel_credentials(
            tls.ca.read_bytes(), tls.client_key.read_bytes(), tls.client_cert.read_bytes()
        )
        channel_cm = grpc.secure_channel(address, credentials)
    else:
        channel_cm = grpc.insecure_channel(address)
    with channel_cm as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{address} not SERVING after {timeout}s")
            time.sleep(0.05)
