"""Requests sent while the inference service restarts succeed once it is back, with the clients' defaults.

The shared retry policy alone gives up within about a second and a half (gRPC caps it at 5 attempts). Here
the new process is started only once every caller has been refused and is waiting, so the gap is longer
than that policy by construction: the calls pass only because the typed clients (sync and asyncio) and the
CLI wait out a restart by default (``aiaas.client.retry.call_across_restart``).
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


def test_clients_and_cli_succeed_across_a_restart_by_default(tmp_path: Path) -> None:
    port = free_port()
    target = f"127.0.0.1:{port}"
    env = {"AIAAS_INFERENCE_MODEL_REPOSITORY": str(build_repository(tmp_path / "models", ("mlp",)))}
    services: list[ServiceProcess] = [start_service("inference", tmp_path / "a", args=["--port", str(port)], env=env)]
    x = np.random.default_rng(5).standard_normal((2, 64)).astype(np.float32)
    (tmp_path / "x.json").write_text(json.dumps(x.tolist()))
    waiting = {name: threading.Event() for name in ("sync", "async", "cli")}
    connected = {name: threading.Event() for name in ("sync", "async")}
    stopped = threading.Event()
    answers: dict[str, np.ndarray] = {}
    errors: list[BaseException] = []

    def run(name: str, body: Callable[[], np.ndarray]) -> threading.Thread:
        def target_() -> None:
            try:
                answers[name] = body()
            except BaseException as exc:  # noqa: BLE001 - reported below, with the others
                errors.append(exc)
                waiting[name].set()
                connected.get(name, threading.Event()).set()

        thread = threading.Thread(target=target_, daemon=True)
        thread.start()
        return thread

    def sync_call() -> np.ndarray:
        client = SyncInferenceClient.connect(target, timeout=90)  # defaults otherwise: no opt-in
        assert not client.wait_for_ready
        client.on_wait = lambda error, seconds: waiting["sync"].set()
        client.infer("mlp", {"input": x})  # connected before the restart, as a long-lived client is
        connected["sync"].set()
        stopped.wait(60)
        return client.infer("mlp", {"input": x}).outputs["output"]

    async def async_call() -> np.ndarray:
        client = InferenceClient.connect(target, timeout=90, on_wait=lambda error, seconds: waiting["async"].set())
        try:
            await client.infer("mlp", {"input": x})
            connected["async"].set()
            await asyncio.to_thread(stopped.wait, 60)
            return (await client.infer("mlp", {"input": x})).outputs["output"]
        finally:
            await client.close()

    def cli_call() -> np.ndarray:
        stopped.wait(60)
        command = [sys.executable, "-m", "aiaas.cli.main", "infer", "mlp", "--input", str(tmp_path / "x.json")]
        command += ["--json", "--target", target, "--timeout", "90"]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as cli:
            assert cli.stderr is not None and cli.stdout is not None
            said = cli.stderr.readline()  # the CLI says that it waits, then waits
            assert "waiting up to" in said, said
            waiting["cli"].set()
            out, err = cli.communicate(timeout=120)
            assert cli.returncode == 0, said + err
        return np.asarray(json.loads(out)["outputs"]["output"], dtype=np.float32)

    threads = [run("sync", sync_call), run("async", lambda: asyncio.run(async_call())), run("cli", cli_call)]
    try:
        assert all(event.wait(60) for event in connected.values()), errors  # each client answered once
        assert services[0].terminate() == 0  # the port refuses connections now
        stopped.set()
        for name, event in waiting.items():
            assert event.wait(60), f"{name} never started waiting: {errors}"
        assert not errors, errors
        time.sleep(2.0)  # longer than the retry policy spans, on top of the wait so far
        services.append(start_service("inference", tmp_path / "b", args=["--port", str(port)], env=env))
        for thread in threads:
            thread.join(120)
        assert not errors, errors
        assert services[1].process.pid != services[0].process.pid
        expected = SyncInferenceClient.connect(target).infer("mlp", {"input": x}).outputs["output"]
        for name in ("sync", "async", "cli"):
            np.testing.assert_array_equal(answers[name], expected, err_msg=name)
    finally:
        for service in services:
            service.terminate()
