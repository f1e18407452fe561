"""Failover with real processes: three inference replicas (one registry), a client at c=32 balanced over
them with gRPC's round_robin, client-side health checking and retries (aiaas.client.channels).

Mid-run one replica is killed with SIGKILL and restarted, another is stopped with SIGTERM and restarted.
The client must see zero failed requests and only correct answers, and once both are back every replica
takes load again (counted per replica by ModelStatistics, which starts at zero in a restarted process).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from aiaas.client.inference import InferenceClient
from aiaas.client.registry import ONNX, RegistryClient
from aiaas.oip.v2 import grpc_service_pb2 as pb
from aiaas.oip.v2 import grpc_service_pb2_grpc
from aiaas_services.inference.examples import export_mlp
from aiaas_services.suite import Suite
from tests.support.background import BackgroundLoad
from tests.support.processes import ServiceProcess

MODEL = "failover-mlp-onnx"
CONCURRENCY = 32
INPUTS = [np.random.default_rng(seed).standard_normal((1, 64)).astype(np.float32) for seed in range(8)]


@pytest.fixture(scope="module")
def expected(registry_process: ServiceProcess, tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    """MODEL v1 published with production -> 1; the output ONNX Runtime gives for each input."""
    path = export_mlp(tmp_path_factory.mktemp("failover-model") / "mlp.onnx", seed=11)

    async def publish() -> None:
        async with grpc.aio.insecure_channel(registry_process.address) as channel:
            client = RegistryClient(channel, actor="test")
            version = await client.push(MODEL, {"model.onnx": path}, format=ONNX, variant="fp32")
            await client.set_alias(MODEL, "production", version.version, reason="failover test")

    asyncio.run(publish())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [session.run(None, {"input": x})[0] for x in INPUTS]


@pytest.fixture
def replicas(expected, registry_process: ServiceProcess, tmp_path: Path) -> Iterator[Suite]:
    """Three inference processes sharing one data folder (and model cache), as `aiaas up --inference-replicas 3`."""
    suite = Suite(
        tmp_path,
        ports={"inference": 0},
        names=["inference"],
        inference_replicas=3,
        extra_env={
            "AIAAS_INFERENCE_REGISTRY_TARGET": registry_process.address,
            "AIAAS_INFERENCE_MODELS": MODEL,
            "AIAAS_INFERENCE_INSTANCES": "1",
            "AIAAS_INFERENCE_WARMUP_RUNS": "1",
        },
    )
    try:
        suite.start()
        yield suite
    finally:
        suite.stop()


class Load(BackgroundLoad):
    """CONCURRENCY tasks sending ModelInfer in a loop over one balanced channel, in a thread of its own."""

    def __init__(self, target: str, expected: list[np.ndarray]) -> None:
        super().__init__()
        self.target = target
        self.expected = expected
        self.ok = 0
        self.failures: list[str] = []

    async def _run(self) -> None:
        client = InferenceClient.connect(self.target, timeout=20.0)

        async def worker(offset: int) -> None:
            index = offset
            while not self._stop.is_set():
                index = (index + 1) % len(INPUTS)
                try:
                    result = await client.infer(MODEL, {"input": INPUTS[index]})
                except grpc.aio.AioRpcError as exc:
                    self.failures.append(f"{exc.code().name}: {exc.details()}")
                    continue
                if np.allclose(result.outputs["output"], self.expected[index], rtol=1e-5, atol=1e-6):
                    self.ok += 1
                else:
                    self.failures.append(f"wrong answer for input {index}")

        await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
        await client.close()


def served(address: str) -> int:
    """Requests this replica has answered since it started (ModelStatistics)."""
    with grpc.insecure_channel(address) as channel:
        stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        stats = stub.ModelStatistics(pb.ModelStatisticsRequest(name=MODEL), timeout=10)
        return sum(model.inference_count for model in stats.model_stats)


def split(suite: Suite) -> dict[str, int]:
    return {name: served(service.target) for name, service in suite.services.items()}


def test_a_client_sees_no_failure_while_replicas_die_and_come_back(replicas: Suite, expected) -> None:
    killed, stopped, _ = replicas.services
    started = time.monotonic()
    with Load(replicas.inference_target, expected) as load:
        time.sleep(3)
        before_kill = split(replicas)
        replicas.services[killed].process.send_signal(signal.SIGKILL)
        replicas.services[killed].process.wait(10)
        time.sleep(1)
        replicas.restart(killed)
        replicas.services[stopped].process.send_signal(signal.SIGTERM)
        assert replicas.services[stopped].process.wait(30) == 0
        replicas.restart(stopped)
        time.sleep(0.5)
        after_restarts = split(replicas)
        time.sleep(3)
        final = split(replicas)
    seconds = time.monotonic() - started
    total = load.ok + len(load.failures)
    print(
        f"\nfailover: {total} requests in {seconds:.1f}s at c={CONCURRENCY}, {len(load.failures)} failed; "
        f"answered per replica before the kill {before_kill}, at the end (since each process started) {final}"
    )
    assert load.failures == [], load.failures[:5]
    assert load.ok > 200
    assert all(count > 0 for count in before_kill.values()), before_kill
    # Load is back on all three: each replica answered requests in the last phase.
    assert all(final[name] > after_restarts[name] for name in final), (after_restarts, final)
