"""Requests sent while the inference service restarts succeed once it is back, with the clients' defaults.

The shared retry policy alone gives up within about a second and a half (gRPC caps it at 5 attempts);
a restart here is a gap of a second plus a process start and a model load, so these pass only because the
typed clients and the CLI wait out a restart by default (``aiaas.client.retry.call_across_restart``).
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from aiaas.client.inference import InferenceClient, SyncInferenceClient
from aiaas_services.inference.examples import build_repository
from tests.support.processes import ServiceProcess, start_service


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Restarts:
    """The inference service on one fixed port, stopped and started again in the background."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.env = {"AIAAS_INFERENCE_MODEL_REPOSITORY": str(build_repository(tmp_path / "models", ("mlp",)))}
        self.processes: list[ServiceProcess] = []
        self.processes.append(self._start())

    def _start(self) -> ServiceProcess:
        home = self.tmp_path / f"home{len(self.processes)}"
        return start_service("inference", home, args=["--port", str(self.port)], env=self.env)

    def restart_after(self, gap: float) -> threading.Thread:
        """Stop the running process now (the port refuses connections) and start a new one after ``gap`` s."""
        assert self.processes[-1].terminate() == 0

        def start() -> None:
            time.sleep(gap)
            self.processes.append(self._start())

        thread = threading.Thread(target=start, daemon=True)
        thread.start()
        return thread

    def across(self, call: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
        """Restart, run ``call`` in the gap, and return its answer and how long it took."""
        before = len(self.processes)
        restarter = self.restart_after(1.0)
        started = time.monotonic()
        answer = call()
        waited = time.monotonic() - started
        restarter.join(120)
        assert len(self.processes) == before + 1
        assert self.processes[-1].process.pid != self.processes[-2].process.pid
        return answer, waited

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        for service in self.processes:
            if service.process.poll() is None:
                service.terminate()


def test_clients_and_cli_succeed_across_a_restart_by_default(tmp_path: Path) -> None:
    service = Restarts(tmp_path)
    x = np.random.default_rng(5).standard_normal((2, 64)).astype(np.float32)
    try:
        client = SyncInferenceClient.connect(service.target, timeout=90)  # defaults: no opt-in
        assert not client.wait_for_ready
        before = client.infer("mlp", {"input": x}).outputs["output"]

        after, waited = service.across(lambda: client.infer("mlp", {"input": x}).outputs["output"])
        np.testing.assert_array_equal(after, before)
        assert waited >= 0.9, waited  # it was sent while nothing listened, and waited past the retry policy's span

        async def async_infer() -> np.ndarray:
            aio = InferenceClient.connect(service.target, timeout=90)
            try:
                await aio.infer("mlp", {"input": x})  # connected before the restart, as a long-lived client is
                return await _across_async(service, aio, x)
            finally:
                await aio.close()

        after_async = asyncio.run(async_infer())
        np.testing.assert_array_equal(after_async, before)

        (tmp_path / "x.json").write_text(json.dumps(x.tolist()))
        command = [sys.executable, "-m", "aiaas.cli.main", "infer", "mlp", "--input", str(tmp_path / "x.json")]
        command += ["--json", "--target", service.target, "--timeout", "90"]

        def cli() -> np.ndarray:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            assert "waiting up to" in done.stderr  # it told the user why it paused
            return np.asarray(json.loads(done.stdout)["outputs"]["output"], dtype=np.float32)

        from_cli, waited = service.across(cli)
        np.testing.assert_array_equal(from_cli, before)
        assert waited >= 0.9, waited
    finally:
        service.close()


async def _across_async(service: Restarts, client: InferenceClient, x: np.ndarray) -> np.ndarray:
    """The async client's call, sent in the gap of a restart run from a thread."""
    before = len(service.processes)
    restarter = await asyncio.to_thread(service.restart_after, 1.0)
    started = time.monotonic()
    answer = (await client.infer("mlp", {"input": x})).outputs["output"]
    assert time.monotonic() - started >= 0.9
    await asyncio.to_thread(restarter.join, 120)
    assert len(service.processes) == before + 1
    return answer
