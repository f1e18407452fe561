"""Worker processes on one port (setting ``workers``): real processes, a real client with retries.

A worker killed with SIGKILL under load is restarted by the supervisor while health stays SERVING and
no request fails once the client's retry policy has run; a worker that cannot start fails the service
with the reason.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aiaas.client.channels import dial
from aiaas.client.inference import InferenceClient
from aiaas.client.registry import ONNX, RegistryClient
from aiaas_services.inference.examples import export_mlp
from aiaas_services.inference.supervisor import _cgroup_cpus, resolve_workers, threads_per_worker, usable_cores
from tests.support.background import registry_call
from tests.support.processes import ServiceProcess, start_service

X = np.random.default_rng(3).standard_normal((1, 64)).astype(np.float32)


def test_cgroup_quota_is_read(tmp_path: Path) -> None:
    assert _cgroup_cpus(tmp_path) is None  # no cgroup v2 file: no limit known
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _cgroup_cpus(tmp_path) is None
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert _cgroup_cpus(tmp_path) == 1.5


def test_workers_setting() -> None:
    assert resolve_workers("3") == 3 and resolve_workers("auto") == usable_cores() >= 1
    assert usable_cores() <= len(os.sched_getaffinity(0))
    with pytest.raises(ValueError, match="positive integer or 'auto'"):
        resolve_workers("0")
    assert threads_per_worker(0, 2, 8) == 4 and threads_per_worker(1, 4, 8) == 1 and threads_per_worker(8, 2, 8) == 4


def workers_of(service: ServiceProcess) -> list[int]:
    """Pids of the supervisor's worker processes."""
    pid = service.process.pid
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def health(address: str, resets: Counter[str], attempts: int = 3) -> str:
    """A health probe on a new connection, tried again (0.2 s later, up to 3 times) if the connection fails.

    Connections the kernel had queued on the killed worker's listening socket are reset with it (unless
    net.ipv4.tcp_migrate_req is on): a transport error, not a health answer, so the probe tries again as
    Kubernetes' does (failureThreshold 3). Such resets are counted; a NOT_SERVING answer is never retried.
    """
    status = ""
    for _ in range(attempts):
        with grpc.insecure_channel(address) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as exc:
                status = exc.code().name
                resets[status] += 1
        time.sleep(0.2)
    return status


@pytest.fixture
def two_workers(model_repository: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    service = start_service(
        "inference",
        tmp_path,
        env={"AIAAS_INFERENCE_MODEL_REPOSITORY": str(model_repository), "AIAAS_INFERENCE_WORKERS": "2"},
        timeout=120,
    )
    yield service
    assert service.terminate() == 0, service.log()[-3000:]


def test_a_worker_killed_under_load_is_restarted_and_no_request_fails(two_workers, model_repository) -> None:
    session = ort.InferenceSession(str(model_repository / "mlp" / "1" / "model.onnx"))
    expected = session.run(None, {"input": X})[0]
    first = workers_of(two_workers)
    assert len(first) == 2
    answers: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    resets: Counter[str] = Counter()
    stop = threading.Event()

    async def load() -> None:
        # Eight connections (the kernel spreads connections over the workers), four calls in flight on each.
        target, options = dial(two_workers.address)
        clients = [
            InferenceClient(grpc.aio.insecure_channel(target, options=[*options, ("aiaas.connection", i)]))
            for i in range(8)
        ]

        async def worker(client: InferenceClient) -> None:
            while not stop.is_set():
                try:
                    result = await client.infer("mlp", {"input": X}, timeout=20)
                    answers["ok" if np.allclose(result.outputs["output"], expected, atol=1e-5) else "wrong"] += 1
                except grpc.aio.AioRpcError as exc:
                    answers[exc.code().name] += 1

        await asyncio.gather(*(worker(client) for client in clients for _ in range(4)))
        for client in clients:
            await client.close()

    def watch_health() -> None:
        while not stop.is_set():
            statuses[health(two_workers.address, resets)] += 1
            time.sleep(0.05)

    threads = [threading.Thread(target=lambda: asyncio.run(load())), threading.Thread(target=watch_health)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 90
        while not any(f"serving (pid {pid})" in two_workers.log() for pid in set(workers_of(two_workers)) - {*first}):
            assert time.monotonic() < deadline, two_workers.log()[-3000:]
            time.sleep(0.2)
        time.sleep(1)  # the restarted worker takes connections again
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    print(f"\nworkers: answers {dict(answers)}, health checks {dict(statuses)}, probe connections reset {dict(resets)}")
    assert set(answers) == {"ok"} and answers["ok"] > 100, answers
    assert set(statuses) == {"SERVING"}, statuses
    assert "exited with code -9; restarting it" in two_workers.log()
    after = workers_of(two_workers)
    assert len(after) == 2 and first[0] not in after and first[1] in after
    # The restarted worker opened its REST port only once every model was loaded (a balancer never reaches
    # a worker that would answer 503 or 404 while its sibling serves).
    (restarted,) = set(after) - {first[1]}
    lines = worker_lines(two_workers.log(), restarted)
    serving = [i for i, line in enumerate(lines) if " serving " in line and ": default version" in line]
    rest = [i for i, line in enumerate(lines) if "REST (KServe V2) on" in line]
    assert serving and len(rest) == 1 and rest[0] > max(serving), "\n".join(lines)


def worker_lines(log: str, pid: int) -> list[str]:
    """The log lines of the worker process ``pid`` (its slot's lines from the moment the supervisor started it)."""
    lines = log.splitlines()
    start = next(i for i, line in enumerate(lines) if f"started (pid {pid})" in line)
    slot = lines[start].split("worker ")[1].split()[0]
    return [line for line in lines[start:] if f"inference/w{slot} " in line]


def test_a_worker_that_cannot_start_fails_the_service_with_the_reason(tmp_path: Path) -> None:
    env = {**os.environ, "AIAAS_HOME": str(tmp_path), "AIAAS_INFERENCE_MODELS": "digits-mlp-onnx"}
    env.pop("AIAAS_INFERENCE_REGISTRY_TARGET", None)
    result = subprocess.run(
        [sys.executable, "-m", "aiaas_services.inference", "--port", "0", "--http-port", "-1", "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "inference cannot start: worker" in result.stderr
    assert "registry_target is empty; set AIAAS_INFERENCE_REGISTRY_TARGET" in result.stderr


def test_every_worker_follows_the_registry_and_each_version_is_downloaded_once(registry_process, tmp_path) -> None:
    model = "workers-mlp-onnx"
    paths = [export_mlp(tmp_path / f"seed{seed}.onnx", seed=seed) for seed in (21, 22)]

    async def publish(client: RegistryClient) -> list[int]:
        versions = [(await client.push(model, {"model.onnx": p}, format=ONNX, variant="fp32")).version for p in paths]
        await client.set_alias(model, "production", versions[0], reason="workers test")
        return versions

    first, second = registry_call(registry_process.address, publish)
    service = start_service(
        "inference",
        tmp_path / "home",
        env={
            "AIAAS_INFERENCE_REGISTRY_TARGET": registry_process.address,
            "AIAAS_INFERENCE_MODELS": model,
            "AIAAS_INFERENCE_WORKERS": "2",
        },
        timeout=120,
    )
    try:
        registry_call(registry_process.address, lambda c: c.set_alias(model, "production", second, reason="v2"))
        deadline = time.monotonic() + 60
        while service.log().count(f"serving {model}: default version {second}") < 2:
            assert time.monotonic() < deadline, service.log()[-3000:]
            time.sleep(0.2)
    finally:
        assert service.terminate() == 0
    log = service.log()
    # Both workers swapped, yet the shared cache fetched each version once.
    assert log.count(f"serving {model}: default version {first}") == 2, log[-3000:]
    assert log.count(f"downloaded {model} version {first} ") == 1, log[-3000:]
    assert log.count(f"downloaded {model} version {second} ") == 1, log[-3000:]
