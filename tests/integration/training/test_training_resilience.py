"""Restart, worker death and DDP: each against its own real training service process."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from aiaas.client.registry import SyncRegistryClient
from aiaas.common.v1 import common_pb2
from aiaas.training.v1 import training_pb2, training_pb2_grpc
from tests.integration.training.conftest import digits_mlp, start, training_env, wait
from tests.support.processes import ServiceProcess, start_service

Stub = training_pb2_grpc.TrainingServiceStub


@pytest.fixture
def private_home(tmp_path: Path) -> Path:
    return tmp_path / "training-home"


def open_stub(service: ServiceProcess) -> tuple[grpc.Channel, Stub]:
    channel = grpc.insecure_channel(service.address)
    return channel, training_pb2_grpc.TrainingServiceStub(channel)


def weights_digest(registry: SyncRegistryClient, job: training_pb2.Job) -> str:
    version = registry.get_version(job.registered)
    return next(a.sha256 for a in version.artifacts if a.name == "weights.safetensors")


def test_restart_resumes_from_the_last_epoch_checkpoint(
    private_home: Path, registry_process: ServiceProcess, training: Stub, registry: SyncRegistryClient
) -> None:
    spec = digits_mlp("resumed", epochs=20, seed=5)
    spec.batch_size = 8  # ~160 steps an epoch: the stop below lands long before the last epoch
    uninterrupted = start(training, spec)  # the same job on the shared service, never stopped

    env = training_env(registry_process, AIAAS_TRAINING_MAX_CONCURRENT_JOBS="1")
    service = start_service("training", private_home, env=env)
    channel, stub = open_stub(service)
    try:
        job = start(stub, spec)
        stream = stub.WatchJob(training_pb2.WatchJobRequest(job_id=job.job_id), timeout=60)
        for event in stream:
            if event.HasField("epoch"):
                break
        stream.cancel()
    finally:
        channel.close()
    assert service.terminate() == 0  # graceful stop while the job trains

    service = start_service("training", private_home, env=env)
    channel, stub = open_stub(service)
    try:
        events = list(stub.WatchJob(training_pb2.WatchJobRequest(job_id=job.job_id), timeout=120))
        done = stub.GetJob(training_pb2.GetJobRequest(job_id=job.job_id)).job
    finally:
        channel.close()
        service.terminate()
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done.failure_reason
    assert [h.epoch for h in done.history] == list(range(1, 21))  # no gap, no repeat
    resumed = [e.message for e in events if e.message.startswith("resumed from the checkpoint of epoch")]
    assert resumed and 1 <= int(resumed[0].rsplit(" ", 1)[1]) < 20
    assert any("service restarted" in e.message for e in events)
    # resuming changes nothing: the same weights as the run that was never interrupted
    reference = wait(training, uninterrupted.job_id)
    assert weights_digest(registry, done) == weights_digest(registry, reference)


def child_pids(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry.name))
    return children


@pytest.fixture
def lone_service(private_home: Path, registry_process: ServiceProcess) -> Iterator[ServiceProcess]:
    service = start_service(
        "training", private_home, env=training_env(registry_process, AIAAS_TRAINING_MAX_CONCURRENT_JOBS="1")
    )
    yield service
    service.terminate()


def test_a_dying_worker_fails_its_job_and_the_service_carries_on(lone_service: ServiceProcess) -> None:
    channel, stub = open_stub(lone_service)
    try:
        spec = digits_mlp("doomed", epochs=500)
        job = start(stub, spec)
        stream = stub.WatchJob(training_pb2.WatchJobRequest(job_id=job.job_id), timeout=60)
        for event in stream:
            if event.HasField("epoch"):
                break
        stream.cancel()
        workers = [pid for pid in child_pids(lone_service.process.pid) if "spawn_main" in _cmdline(pid)]
        assert workers
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        done = wait(stub, job.job_id, timeout=60)
        assert done.state == common_pb2.JOB_STATE_FAILED
        assert "worker process running the job died" in done.failure_reason
        time.sleep(0.5)
        survivor = digits_mlp("survivor", epochs=2)
        survivor.export.variants.append("fp32")  # nothing listens at this service's serialization target
        after = start(stub, survivor)
        events = list(stub.WatchJob(training_pb2.WatchJobRequest(job_id=after.job_id), timeout=120))
        after = stub.GetJob(training_pb2.GetJobRequest(job_id=after.job_id)).job
        assert after.state == common_pb2.JOB_STATE_SUCCEEDED, after.failure_reason
        assert after.export_job_id == ""
        assert any("export not started" in e.message and "UNAVAILABLE" in e.message for e in events)
    finally:
        channel.close()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_ddp_with_two_processes_matches_one_process(training: Stub) -> None:
    single = start(training, digits_mlp("ddp-reference", epochs=20, seed=4))
    spec = digits_mlp("ddp", epochs=20, seed=4)
    spec.world_size = 2
    ddp = wait(training, start(training, spec).job_id, timeout=180)
    reference = wait(training, single.job_id)
    assert ddp.state == common_pb2.JOB_STATE_SUCCEEDED, ddp.failure_reason
    assert [h.epoch for h in ddp.history] == list(range(1, 21))
    assert ddp.test_metrics["accuracy"] >= 0.95
    assert abs(ddp.test_metrics["accuracy"] - reference.test_metrics["accuracy"]) <= 0.03
