"""Expired and cancelled work is not done, and shutdown waits for neither health watchers nor warm-up.

Real processes on loopback, with a model slow enough (a chain of MatMul nodes, ~1 s a run) that a run
nobody waits for any more is visible in the next caller's latency and in ModelStatistics.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aiaas.oip.v2 import grpc_service_pb2 as oip
from aiaas.oip.v2 import grpc_service_pb2_grpc as oip_grpc
from tests.integration.robustness.slow_model import SIDE, export_slow_model
from tests.support.processes import ServiceProcess, serve, start_service

SLOW_ENV = {
    "AIAAS_INFERENCE_INSTANCES": "1",
    "AIAAS_INFERENCE_WARMUP_RUNS": "0",
    "AIAAS_INFERENCE_INTRA_OP_THREADS": "1",
}


def slow_request() -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(model_name="slow")
    request.inputs.add(name="input", datatype="FP32", shape=[SIDE, SIDE])
    request.raw_input_contents.append(np.ones((SIDE, SIDE), dtype="<f4").tobytes())
    return request


@pytest.fixture(scope="module")
def slow_inference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    home = tmp_path_factory.mktemp("slow-inference")
    export_slow_model(home / "models" / "slow" / "1" / "model.onnx")
    yield from serve("inference", home, env={"AIAAS_INFERENCE_MODEL_REPOSITORY": str(home / "models"), **SLOW_ENV})


def _executions(stub: oip_grpc.GRPCInferenceServiceStub) -> tuple[int, int]:
    stats = stub.ModelStatistics(oip.ModelStatisticsRequest(name="slow"), timeout=10).model_stats[0]
    return stats.execution_count, stats.inference_count


def test_expired_run_is_stopped_and_the_next_caller_does_not_pay_for_it(slow_inference: ServiceProcess) -> None:
    with grpc.insecure_channel(slow_inference.address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        stub.ModelInfer(slow_request(), timeout=60)  # the first run allocates; time the second
        started = time.monotonic()
        stub.ModelInfer(slow_request(), timeout=60)
        solo = time.monotonic() - started
        assert solo > 0.3, f"the slow model ran in {solo:.2f}s; the test needs a run of several tenths"
        before = _executions(stub)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(slow_request(), timeout=0.1)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        started = time.monotonic()
        stub.ModelInfer(slow_request(), timeout=60)
        after = time.monotonic() - started
        executions, inferences = _executions(stub)
    # The expired run was stopped part-way: it never completed, so only the next caller's run counts.
    assert (executions - before[0], inferences - before[1]) == (1, SIDE), f"solo {solo:.2f}s, next {after:.2f}s"
    assert "every request in it had gone" in slow_inference.log()


def test_cancelled_queued_requests_never_run(slow_inference: ServiceProcess) -> None:
    with grpc.insecure_channel(slow_inference.address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        stub.ModelInfer(slow_request(), timeout=60)
        time.sleep(0.5)
        before = _executions(stub)
        first = stub.ModelInfer.future(slow_request(), timeout=60)
        time.sleep(0.2)  # the first one runs; the next three wait in the queue
        queued = [stub.ModelInfer.future(slow_request()) for _ in range(3)]
        time.sleep(0.2)
        for call in queued:
            call.cancel()
        first.result()
        stub.ModelInfer(slow_request(), timeout=60)  # queued behind whatever still runs (FIFO)
        executions, inferences = _executions(stub)
    assert (executions - before[0], inferences - before[1]) == (2, 2 * SIDE), "cancelled requests ran anyway"


def _spawn(name: str, home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    home.mkdir(parents=True, exist_ok=True)
    log = home / f"{name}.log"
    handle = log.open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            f"aiaas_services.{name}",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            *(["--http-port", "0"] if name == "inference" else []),
        ],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, "AIAAS_HOME": str(home), "PYTHONUNBUFFERED": "1", **env},
    )
    handle.close()
    return process, log


def _stop_and_time(process: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(60)
    return time.monotonic() - started


def test_shutdown_does_not_wait_for_health_watchers(tmp_path: Path) -> None:
    env = {"AIAAS_REGISTRY_GRACE_SECONDS": "8", "AIAAS_REGISTRY_DRAIN_DELAY_SECONDS": "0"}
    registry = start_service("registry", tmp_path / "registry", env=env)
    seen: list[int] = []
    channel = grpc.insecure_channel(registry.address)
    stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())

    def watch() -> None:
        try:
            for reply in stream:
                seen.append(reply.status)
        except grpc.RpcError:
            pass

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        time.sleep(0.05)
    took = _stop_and_time(registry.process)
    watcher.join(5)
    channel.close()
    assert registry.process.returncode == 0
    assert took < 4.0, f"shutdown took {took:.1f}s with a health watcher open (grace 8s)"
    assert seen[0] == health_pb2.HealthCheckResponse.SERVING
    assert seen[-1] == health_pb2.HealthCheckResponse.NOT_SERVING, "the watcher was not told before its stream ended"


def test_shutdown_during_warm_up_does_not_wait_for_it(tmp_path: Path) -> None:
    home = tmp_path / "inference"
    export_slow_model(home / "models" / "slow" / "1" / "model.onnx")
    env = {
        "AIAAS_INFERENCE_MODEL_REPOSITORY": str(home / "models"),
        **SLOW_ENV,
        "AIAAS_INFERENCE_WARMUP_RUNS": "30",  # tens of seconds of warm-up
        "AIAAS_INFERENCE_GRACE_SECONDS": "8",
    }
    process, log = _spawn("inference", home, env)
    try:
        deadline = time.monotonic() + 60
        while "listening on" not in log.read_text(errors="replace"):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.05)
        time.sleep(1.5)  # inside the warm-up runs now
        took = _stop_and_time(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, log.read_text(errors="replace")
    assert took < 4.0, f"shutdown during warm-up took {took:.1f}s (grace 8s)"
    assert "stopping during start-up" in log.read_text(errors="replace")
