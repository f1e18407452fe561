"""Run the four services as separate local processes, the way `make run` and `aiaas up` do.

Each service gets its own log file under ``$AIAAS_HOME/logs``, binds its default port (or the one given),
and is waited on through grpc.health.v1. Ctrl-C / SIGTERM stops them in reverse order, each gracefully.
``inference_replicas=N`` starts N inference processes (``inference-1`` ... on consecutive ports from the
inference port, or ephemeral ones) serving from the same registry: the multi-replica topology of
``compose.yaml`` on one machine, which clients reach with the target ``Suite.inference_target``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEFAULT_PORTS = {"registry": 50051, "training": 50052, "serialization": 50053, "inference": 8001}
DEFAULT_HTTP_PORT = 8000  # inference's REST front door
START_ORDER = ("registry", "serialization", "training", "inference")


@dataclass
class RunningService:
    """One started service process."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    kind: str = ""
    http_port: int | None = None  # inference's REST front door

    @property
    def http_url(self) -> str | None:
        """Base URL of the REST front door (inference), else None."""
        return None if self.http_port is None else f"http://127.0.0.1:{self.http_port}"

    @property
    def target(self) -> str:
        """host:port to dial."""
        return f"127.0.0.1:{self.port}"


def _wait_serving(service: RunningService, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(service.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                tail = service.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{service.name} exited with {service.process.returncode}; log:\n{tail}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"{service.name} not SERVING on {service.target} after {timeout:.0f}s (log: {service.log_path})")


def _wait_port_file(path: Path, process: subprocess.Popen[bytes], log_path: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return int(path.read_text())
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{log_path.stem} exited with {process.returncode}; log:\n{tail}")
        time.sleep(0.05)
    raise TimeoutError(f"{log_path.stem} did not report its port within {timeout:.0f}s (log: {log_path})")


class Suite:
    """The four services as child processes."""

    def __init__(
        self,
        home: Path,
        ports: Mapping[str, int] | None = None,
        extra_env: Mapping[str, str] | None = None,
        names: Sequence[str] = START_ORDER,
        inference_replicas: int = 1,
    ) -> None:
        self.home = home
        self.ports = {**DEFAULT_PORTS, **(ports or {})}
        self.extra_env = dict(extra_env or {})
        self.names = list(names)
        if inference_replicas > 1 and "inference" in self.names:
            at = self.names.index("inference")
            first = self.ports["inference"]
            replicas = [f"inference-{i + 1}" for i in range(inference_replicas)]
            self.names[at : at + 1] = replicas
            self.ports.update({name: first + i if first else 0 for i, name in enumerate(replicas)})
        self.services: dict[str, RunningService] = {}

    @property
    def inference_target(self) -> str:
        """The target naming every inference replica (``a:p,b:p``; one ``host:port`` for one replica)."""
        return ",".join(s.target for s in self.services.values() if s.kind == "inference")

    def target(self, name: str) -> str:
        """host:port of a started service."""
        return self.services[name].target

    def env_for(self, name: str) -> dict[str, str]:
        """Environment of one service: its data dir and its (already started) neighbours' addresses."""
        env = {**os.environ, "AIAAS_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}
        if "registry" in self.services:
            registry = self.target("registry")
            env["AIAAS_TRAINING_REGISTRY_TARGET"] = registry
            env["AIAAS_SERIALIZATION_REGISTRY_TARGET"] = registry
            env["AIAAS_INFERENCE_REGISTRY_TARGET"] = registry
        if "serialization" in self.services:
            env["AIAAS_TRAINING_SERIALIZATION_TARGET"] = self.target("serialization")
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 120.0) -> None:
        """Start every service in order and wait for each to be SERVING.

        A port of 0 lets the service pick a free one and report it through a port file, so suites in
        tests never race for ports.
        """
        for name in self.names:
            self._launch(name, self.ports[name], timeout)

    def restart(self, name: str, timeout: float = 120.0) -> RunningService:
        """Start a service that exited (crashed or stopped) again on the port it had; wait for SERVING."""
        old = self.services[name]
        if old.process.poll() is None:
            raise RuntimeError(f"{name} is still running (pid {old.process.pid})")
        return self._launch(name, old.port, timeout, http_port=old.http_port)

    def _launch(self, name: str, port: int, timeout: float, http_port: int | None = None) -> RunningService:
        kind = name.split("-")[0]
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{name}.log"
        port_file = self.home / "run" / f"{name}.port"
        port_file.parent.mkdir(parents=True, exist_ok=True)  # the REST door writes its port file first
        port_file.unlink(missing_ok=True)
        Path(f"{port_file}.http").unlink(missing_ok=True)
        command = [sys.executable, "-m", f"aiaas_services.{kind}", "--port", str(port), "--port-file", str(port_file)]
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [*command, *self._extra_args(name, port, http_port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env_for(kind),
                start_new_session=True,  # Ctrl-C in the terminal reaches us, not the children
            )
        bound = _wait_port_file(port_file, process, log_path, timeout)
        service = RunningService(name, bound, process, log_path, kind)
        self.services[name] = service
        _wait_serving(service, timeout)
        http_file = Path(f"{port_file}.http")
        if kind == "inference" and http_file.exists():
            service.http_port = int(http_file.read_text())
        return service

    def _extra_args(self, name: str, port: int, http_port: int | None = None) -> list[str]:
        """Inference's REST port follows its gRPC one: default 8000 (8000 + i for replica i+1), or a free
        port when gRPC's is free too; a restarted replica keeps the REST port it had."""
        if not name.startswith("inference"):
            return []
        if http_port is not None:
            return ["--http-port", str(http_port)]
        if port == 0:
            return ["--http-port", "0"]
        replica = int(name.split("-")[1]) - 1 if "-" in name else 0
        return ["--http-port", str(DEFAULT_HTTP_PORT + replica)] if replica else []

    def stop_and_say(self) -> str:
        """Stop the suite; "stopped: <service> exit <code>, ..." for the console."""
        return "stopped: " + ", ".join(f"{name} exit {code}" for name, code in self.stop().items())

    def stop(self, timeout: float = 30.0) -> dict[str, int]:
        """SIGTERM in reverse start order; returns exit codes."""
        codes: dict[str, int] = {}
        for name in reversed(list(self.services)):
            process = self.services[name].process
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
            codes[name] = process.returncode
        return codes

    def __enter__(self) -> Suite:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m aiaas_services.suite``: start the suite and keep it up until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="aiaas up", description="Start the four services locally.")
    parser.add_argument("--home", default=os.environ.get("AIAAS_HOME", str(Path.home() / ".aiaas")))
    parser.add_argument("--ephemeral-ports", action="store_true", help="let each service pick a free port")
    parser.add_argument(
        "--inference-replicas", type=int, default=1, help="inference processes, on consecutive ports (default 1)"
    )
    args = parser.parse_args(argv)
    if args.inference_replicas < 1:
        parser.error("--inference-replicas must be at least 1")
    ports = dict.fromkeys(DEFAULT_PORTS, 0) if args.ephemeral_ports else None
    suite = Suite(Path(args.home).expanduser(), ports=ports, inference_replicas=args.inference_replicas)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        suite.start()
        for service in suite.services.values():
            print(f"{service.name:<14} {service.target:<18} log {service.log_path}")
            if service.http_url:
                print(f"{'REST':<14} {service.http_url + '/v2':<18} (KServe V2 HTTP, inference)")
        if args.inference_replicas > 1:
            print(f"inference      {suite.inference_target}  ({args.inference_replicas} replicas, round_robin)")
        print("all four services SERVING; Ctrl-C stops them")
        while not stop and all(s.process.poll() is None for s in suite.services.values()):
            time.sleep(0.5)
    finally:
        print(suite.stop_and_say())
    return 0


if __name__ == "__main__":
    sys.exit(main())
