"""Restart, worker death and DDP: each against its own real training service process."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeAlias

import grpc
import pytest

from aiaas.client.registry import SyncRegistryClient
from aiaas.common.v1 import common_pb2
from aiaas.training.v1 import training_pb2, training_pb2_grpc
from tests.integration.training.conftest import digits_mlp, start, training_env, wait
from tests.support.processes import ServiceProcess, serve, start_service

Stub: TypeAlias = training_pb2_grpc.TrainingServiceStub


@pytest.fixture
def private_home(tmp_path: Path) -> Path:
    return tmp_path / "training-home"


def open_stub(service: ServiceProcess) -> tuple[grpc.Channel, Stub]:
    channel = grpc.insecure_channel(service.address)
    return channel, training_pb2_grpc.TrainingServiceStub(channel)


def start_and_wait_first_epoch(stub: Stub, spec: training_pb2.TrainingSpec) -> training_pb2.Job:
    """Start the job and return once it has reported its first epoch."""
    job = start(stub, spec)
    stream = stub.WatchJob(training_pb2.WatchJobRequest(job_id=job.job_id), timeout=60)
    for event in stream:
        if event.HasField("epoch"):
            break
    stream.cancel()
    return job


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
        job = start_and_wait_first_epoch(stub, spec)
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


@pytest.mark.parametrize("left_behind", ["pending", "ready"])
def test_a_crash_during_registration_leaves_no_half_registered_version(tmp_path: Path, left_behind: str) -> None:
    """The service dies after training, while registering (the registry is frozen mid-way). After the
    restart the job ends with exactly one READY version: the one the interrupted attempt had finished,
    or a new one; every version the attempt left PENDING is marked FAILED with the reason."""
    from aiaas.registry.v1 import registry_pb2

    registry_process = start_service("registry", tmp_path / "registry")
    env = training_env(registry_process, AIAAS_TRAINING_MAX_CONCURRENT_JOBS="1")
    home = tmp_path / "training-home"
    service = start_service("training", home, env=env)
    spec = digits_mlp("crash-while-registering", epochs=2, seed=3)
    channel, stub = open_stub(service)
    try:
        job = start(stub, spec)
        for event in stub.WatchJob(training_pb2.WatchJobRequest(job_id=job.job_id), timeout=120):
            if event.HasField("epoch") and event.epoch.epoch == spec.epochs:
                os.kill(registry_process.process.pid, signal.SIGSTOP)  # registration now hangs
                break
    finally:
        channel.close()
    service.kill()
    os.kill(registry_process.process.pid, signal.SIGCONT)
    registry = SyncRegistryClient(registry_process.address)
    try:
        # what an attempt that got as far as creating (or finishing) its version leaves behind
        lineage = registry_pb2.Lineage(training_job_id=job.job_id)
        checkpoint_format = registry_pb2.MODEL_FORMAT_PYTORCH_CHECKPOINT
        earlier = registry.create_version(spec.model_name, format=checkpoint_format, lineage=lineage)
        if left_behind == "ready":
            ref = common_pb2.VersionRef(model_name=spec.model_name, version=earlier.version)
            registry.upload_bytes(spec.model_name, earlier.version, "spec.json", b"{}")
            registry.set_status(ref, registry_pb2.VERSION_STATUS_READY, "finished before the crash")
        service = start_service("training", home, env=env)
        channel, stub = open_stub(service)
        try:
            done = wait(stub, job.job_id)
        finally:
            channel.close()
            service.terminate()
        assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done.failure_reason
        versions = [v for v in registry.list_versions(spec.model_name) if v.lineage.training_job_id == job.job_id]
        assert {v.version: v.status for v in versions}[done.registered.version] == registry_pb2.VERSION_STATUS_READY
        others = [v for v in versions if v.version != done.registered.version]
        assert all(v.status == registry_pb2.VERSION_STATUS_FAILED for v in others)
        assert all("restarted while registering" in v.status_reason for v in others)
        if left_behind == "ready":
            assert done.registered.version == earlier.version  # adopted, not registered twice
        else:
            assert earlier.version in {v.version for v in others}
    finally:
        registry.close()
        registry_process.terminate()


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
    yield from serve(
        "training", private_home, env=training_env(registry_process, AIAAS_TRAINING_MAX_CONCURRENT_JOBS="1")
    )


def test_a_dying_worker_fails_its_job_and_the_service_carries_on(lone_service: ServiceProcess) -> None:
    channel, stub = open_stub(lone_service)
    try:
        job = start_and_wait_first_epoch(stub, digits_mlp("doomed", epochs=500))
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
