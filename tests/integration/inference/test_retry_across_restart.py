"""A request sent while the inference service restarts succeeds once it is back (same client, same channel)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np

from aiaas.client.inference import SyncInferenceClient
from aiaas_services.inference.examples import build_repository
from tests.support.processes import ServiceProcess, start_service


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_infer_succeeds_across_a_restart(tmp_path: Path) -> None:
    repository = build_repository(tmp_path / "models", ("mlp",))
    port = free_port()
    env = {"AIAAS_INFERENCE_MODEL_REPOSITORY": str(repository)}
    first = start_service("inference", tmp_path / "a", args=["--port", str(port)], env=env)
    x = np.random.default_rng(5).standard_normal((2, 64)).astype(np.float32)
    client = SyncInferenceClient.connect(f"127.0.0.1:{port}", timeout=90, wait_for_ready=True)
    before = client.infer("mlp", {"input": x}).outputs["output"]
    assert first.terminate() == 0  # the old process is gone: the port refuses connections now
    second: list[ServiceProcess] = []

    def restart() -> None:
        time.sleep(1.0)
        second.append(start_service("inference", tmp_path / "b", args=["--port", str(port)], env=env))

    restarter = threading.Thread(target=restart, daemon=True)
    restarter.start()
    try:
        started = time.monotonic()
        after = client.infer("mlp", {"input": x}).outputs["output"]  # sent while nothing listens
        waited = time.monotonic() - started
        restarter.join(90)
        assert second and second[0].process.pid != first.process.pid
        np.testing.assert_array_equal(after, before)
        assert waited >= 0.9, waited  # it really crossed the gap
    finally:
        for service in second:
            service.terminate()
