"""A deploy that cannot load keeps the previous version serving everywhere, and says why.

Real processes: the session's registry and two inference replicas watching it, one of them a supervisor
of two workers (so three processes each follow the alias on their own). A client balances over both
replicas on many connections (so every worker takes requests) and checks every answer against ONNX
Runtime run on the file of the version that answered. Then:

1. the alias moves to a version whose stored blob was damaged on disk after the registry checked its
   digest (the registry's verified read ends the download with DATA_LOSS);
2. the alias moves to a version whose graph ONNX Runtime cannot run (an operator it does not know);
3. one worker is killed with SIGKILL: restarted while the alias still names the broken version, it
   serves the previous version too (what its data folder served as the alias);
4. the alias moves to a good version: every process serves it, with no restart.

During 1 and 2 every worker keeps answering with the previous version (its own /metrics: requests
answered by version 1 keep growing, the default version stays 1), and the failure shows in each
worker's RepositoryIndex (state UNAVAILABLE + reason + error id), in its log (with the same error id)
and in its metrics (``aiaas_inference_model_load_failures_total``). The client never sees a failure.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from prometheus_client.parser import text_string_to_metric_families

from aiaas.client.channels import dial
from aiaas.client.registry import ONNX, RegistryClient
from aiaas.oip.v2 import grpc_service_pb2 as pb
from aiaas.oip.v2 import grpc_service_pb2_grpc
from aiaas_services.inference.examples import export_mlp
from tests.support.background import BackgroundLoad, registry_call
from tests.support.processes import ServiceProcess, start_service

MODEL = "bad-deploy-mlp-onnx"
CONNECTIONS = 12  # the kernel spreads connections over a replica's workers: enough that both get some
X = np.random.default_rng(17).standard_normal((1, 64)).astype(np.float32)


def unrunnable_graph(path: Path) -> Path:
    """A well-formed ONNX model (same input and output as the MLP) built on an operator no provider has."""
    node = helper.make_node("Frobnicate", ["input"], ["output"], domain="ai.aiaas.unknown")
    graph = helper.make_graph(
        [node],
        "unrunnable",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 10])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.aiaas.unknown", 1)]
    # IR version 8: one every ONNX Runtime reads, so what it refuses is the operator.
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=8), str(path))
    return path


def answer(path: Path) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": X})[0]


@pytest.fixture(scope="module")
def versions(registry_process: ServiceProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Version numbers of good (production), damaged (its blob then corrupted in the registry's store),
    unrunnable and fixed; ``answers``: what ONNX Runtime gives for X by version number (good and fixed)."""
    folder = tmp_path_factory.mktemp("bad-deploy-models")
    files = {
        "good": export_mlp(folder / "good.onnx", seed=61),
        "damaged": export_mlp(folder / "damaged.onnx", seed=62),
        "unrunnable": unrunnable_graph(folder / "unrunnable.onnx"),
        "fixed": export_mlp(folder / "fixed.onnx", seed=64),
    }

    async def publish(client: RegistryClient) -> dict[str, tuple[int, str]]:
        pushed = {}
        for label, path in files.items():
            version = await client.push(MODEL, {"model.onnx": path}, format=ONNX, variant="fp32")
            pushed[label] = (version.version, version.artifacts[0].sha256)
        await client.set_alias(MODEL, "production", pushed["good"][0], reason="first deploy")
        return pushed

    pushed = registry_call(registry_process.address, publish)
    # The registry verified this blob's digest when it was uploaded; now the disk damages it.
    (blob,) = [p for p in registry_process.home.rglob(pushed["damaged"][1]) if p.is_file()]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    blob.write_bytes(bytes(data))
    return {label: number for label, (number, _) in pushed.items()} | {
        "answers": {str(pushed[label][0]): answer(files[label]) for label in ("good", "fixed")}
    }


@pytest.fixture(scope="module")
def replicas(versions, registry_process: ServiceProcess, tmp_path_factory) -> Iterator[list[ServiceProcess]]:
    """Replica A: two workers on one port; replica B: one process. Same registry, metrics on per worker."""
    env = {
        "AIAAS_INFERENCE_REGISTRY_TARGET": registry_process.address,
        "AIAAS_INFERENCE_MODELS": MODEL,
        "AIAAS_INFERENCE_INSTANCES": "1",
        "AIAAS_INFERENCE_WARMUP_RUNS": "1",
        "AIAAS_INFERENCE_METRICS_PORT": "0",
    }
    started: list[ServiceProcess] = []
    try:
        for name, workers in (("a", "2"), ("b", "1")):
            home = tmp_path_factory.mktemp(f"bad-deploy-{name}")
            started.append(
                start_service("inference", home, env={**env, "AIAAS_INFERENCE_WORKERS": workers}, timeout=120)
            )
        yield started
    finally:
        for service in started:
            service.terminate()


class Load(BackgroundLoad):
    """Two calls in flight on each of CONNECTIONS balanced channels; answers counted by version, each checked."""

    def __init__(self, target: str, answers: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.target = target
        self.answers = answers
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []

    async def _run(self) -> None:
        target, options = dial(self.target)
        channels = [
            grpc.aio.insecure_channel(target, options=[*options, ("aiaas.connection", i)]) for i in range(CONNECTIONS)
        ]
        request = pb.ModelInferRequest(
            model_name=MODEL,
            inputs=[pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[1, 64])],
            raw_input_contents=[X.tobytes()],
        )

        async def call(stub: grpc_service_pb2_grpc.GRPCInferenceServiceStub) -> None:
            while not self._stop.is_set():
                try:
                    reply = await stub.ModelInfer(request, timeout=20)
                except grpc.aio.AioRpcError as exc:
                    self.failures.append(f"{exc.code().name}: {exc.details()}")
                    continue
                got = np.frombuffer(reply.raw_output_contents[0], np.float32).reshape(1, 10)
                want = self.answers.get(reply.model_version)
                if want is None or not np.allclose(got, want, rtol=1e-5, atol=1e-6):
                    self.failures.append(f"unexpected answer from version {reply.model_version}")
                self.versions[reply.model_version] += 1

        stubs = [grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel) for channel in channels]
        await asyncio.gather(*(call(stub) for stub in stubs for _ in range(2)))
        for channel in channels:
            await channel.close()


def metrics_ports(service: ServiceProcess) -> list[int]:
    """Every worker's /metrics port (each writes ``<its port file>.metrics``)."""
    return sorted(int(path.read_text()) for path in service.home.rglob("*.port.metrics"))


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """One worker's samples of MODEL: (name, sorted labels without model) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("model") == MODEL:
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "model"))
                samples[sample.name, labels] = sample.value
    return samples


def answered(samples: Samples, version: int) -> float:
    return samples.get(("aiaas_inference_model_requests_total", (("outcome", "success"), ("version", str(version)))), 0)


def failures(samples: Samples, version: int) -> float:
    return samples.get(("aiaas_inference_model_load_failures_total", (("version", str(version)),)), 0)


def state(samples: Samples, version: int) -> str:
    """The version's state in this worker's RepositoryIndex, as its metrics say ("absent": not listed)."""
    for (name, labels), value in samples.items():
        found = dict(labels)
        if name == "aiaas_inference_model_version_state" and found["version"] == str(version) and value:
            return found["state"]
    return "absent"


def default_version(samples: Samples) -> int:
    return int(samples.get(("aiaas_inference_model_default_version", ()), 0))


def wait_until(check: Callable[[], bool], what: str, logs: Callable[[], str], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}; logs:\n{logs()[-4000:]}"
        time.sleep(0.2)


def workers_of(service: ServiceProcess) -> list[int]:
    """Pids of a supervisor's worker processes."""
    pid = service.process.pid
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def restarted(service: ServiceProcess, before: list[int]) -> bool:
    """Whether the supervisor has a new worker in place of one of ``before`` (killed), serving."""
    fresh = set(workers_of(service)) - set(before)
    return len(fresh) == 1 and f"serving (pid {fresh.pop()})" in service.log()


def probe(address: str, count: int) -> Counter[str]:
    """Versions that answered ``count`` requests, each on a new connection (so on any worker)."""
    request = pb.ModelInferRequest(
        model_name=MODEL,
        inputs=[pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[1, 64])],
        raw_input_contents=[X.tobytes()],
    )
    versions: Counter[str] = Counter()
    for i in range(count):
        with grpc.insecure_channel(address, options=[("aiaas.probe", i)]) as channel:
            stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
            versions[stub.ModelInfer(request, timeout=10).model_version] += 1
    return versions


def every_worker_failed(ports: list[int], version: int) -> bool:
    return all(failures(scrape(port), version) >= 1 for port in ports)


def index_rows(address: str, probes: int = 16) -> set[tuple[str, str, str]]:
    """RepositoryIndex rows of MODEL (version, state, reason), asked on several new connections (so of
    every worker behind the address)."""
    rows = set()
    for i in range(probes):
        with grpc.insecure_channel(address, options=[("aiaas.probe", i)]) as channel:
            reply = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel).RepositoryIndex(
                pb.RepositoryIndexRequest(), timeout=10
            )
            rows |= {(m.version, m.state, m.reason) for m in reply.models if m.name == MODEL}
    return rows


def test_a_deploy_that_cannot_load_keeps_the_previous_version_everywhere_until_the_alias_is_fixed(
    versions, replicas: list[ServiceProcess], registry_process: ServiceProcess
) -> None:
    good, fixed = versions["good"], versions["fixed"]
    ports = [port for service in replicas for port in metrics_ports(service)]
    assert len(ports) == 3, ports  # two workers + one process
    pids = [service.process.pid for service in replicas]

    def logs() -> str:
        return "\n".join(service.log() for service in replicas)

    def move(version: int) -> None:
        registry_call(registry_process.address, lambda c: c.set_alias(MODEL, "production", version, reason="test"))

    with Load(",".join(service.address for service in replicas), versions["answers"]) as load:
        wait_until(lambda: all(answered(scrape(p), good) > 0 for p in ports), "every worker answers v1", logs)
        for bad, why in ((versions["damaged"], "did not verify"), (versions["unrunnable"], "Frobnicate")):
            move(bad)
            wait_until(partial(every_worker_failed, ports, bad), f"every worker failed v{bad}", logs)
            before = [scrape(p) for p in ports]
            time.sleep(1.0)
            after = [scrape(p) for p in ports]
            for port, old, new in zip(ports, before, after, strict=True):
                # This worker still serves the previous version (and keeps answering with it).
                assert default_version(new) == good, (port, new)
                assert answered(new, good) > answered(old, good), (port, old, new)
                assert state(new, good) == "READY" and state(new, bad) == "UNAVAILABLE", (port, new)
            for service, workers in zip(replicas, (2, 1), strict=True):
                rows = index_rows(service.address)
                assert (str(good), "READY", "") in rows, rows
                # One row per worker (each failed on its own, under its own error id, found in the log).
                failed = [row for row in rows if row[0] == str(bad)]
                assert len(failed) == workers, rows
                for _, state_name, reason in failed:
                    assert state_name == "UNAVAILABLE" and why in reason and "error id" in reason, rows
                    error_id = reason.rsplit("error id ", 1)[1].rstrip(")")
                    assert f"version {bad} failed to load (error id {error_id})" in service.log()
                assert {row[0] for row in rows} == {str(good), str(bad)}, rows  # older failures are history
        # A worker that dies now starts while the alias names a version that cannot load: it serves what
        # this data folder served before, like its sibling, instead of answering UNAVAILABLE.
        alive = workers_of(replicas[0])
        os.kill(alive[0], signal.SIGKILL)
        wait_until(lambda: restarted(replicas[0], alive), "the killed worker is back", logs)
        ports = [port for service in replicas for port in metrics_ports(service)]
        # The client's connections all moved to the surviving worker; new ones reach the restarted one too.
        assert probe(replicas[0].address, 16) == {str(good): 16}
        assert all(answered(scrape(p), good) > 0 for p in ports), ports
        for port in ports:
            samples = scrape(port)
            assert default_version(samples) == good and state(samples, versions["unrunnable"]) == "UNAVAILABLE"
        assert "(what bad-deploy-mlp-onnx@production named before) until the alias names" in replicas[0].log()
        move(fixed)
        wait_until(lambda: all(default_version(scrape(p)) == fixed for p in ports), "every worker serves the fix", logs)
        wait_until(lambda: load.versions[str(fixed)] > 50, "the client gets the fixed version", logs)
        seen = dict(load.versions)
    print(f"\nbad deploy: answers by version {seen} (v{good} good, v{fixed} fixed), failed {len(load.failures)}")
    assert load.failures == [], load.failures[:5]
    assert set(seen) == {str(good), str(fixed)}, seen
    for service in replicas:
        assert {row[:2] for row in index_rows(service.address)} == {(str(fixed), "READY")}
    assert [service.process.poll() for service in replicas] == [None, None]
    assert [service.process.pid for service in replicas] == pids
