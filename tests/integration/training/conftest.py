"""Fixtures: a real registry and a real training service (session-scoped processes), sync stubs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiaas.client.registry import SyncRegistryClient
from aiaas.common.v1 import common_pb2
from aiaas.training.v1 import training_pb2, training_pb2_grpc
from tests.support.channels import on_channel
from tests.support.processes import ServiceProcess, serve, serve_serialization

TERMINAL = {common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED, common_pb2.JOB_STATE_CANCELLED}


def training_env(registry: ServiceProcess, **extra: str) -> dict[str, str]:
    return {
        "AIAAS_TRAINING_REGISTRY_TARGET": registry.address,
        "AIAAS_TRAINING_SERIALIZATION_TARGET": "127.0.0.1:1",  # nothing listens: exports are refused
        "AIAAS_TRAINING_MAX_CONCURRENT_JOBS": "2",
        **extra,
    }


@pytest.fixture(scope="session")
def serialization_for_training(session_home: Path, registry_process: ServiceProcess) -> Iterator[ServiceProcess]:
    """A real serialization service, for jobs with an export block."""
    yield from serve_serialization(registry_process, session_home / "serialization-for-training")


@pytest.fixture(scope="session")
def training_process(
    session_home: Path, registry_process: ServiceProcess, serialization_for_training: ServiceProcess
) -> Iterator[ServiceProcess]:
    env = training_env(registry_process, AIAAS_TRAINING_SERIALIZATION_TARGET=serialization_for_training.address)
    yield from serve("training", session_home / "training", env=env)


@pytest.fixture(scope="session")
def training(training_process: ServiceProcess) -> Iterator[training_pb2_grpc.TrainingServiceStub]:
    yield from on_channel(training_process.address, training_pb2_grpc.TrainingServiceStub)


@pytest.fixture(scope="session")
def registry(registry_process: ServiceProcess) -> Iterator[SyncRegistryClient]:
    client = SyncRegistryClient(registry_process.address)
    yield client
    client.close()


def start(stub: training_pb2_grpc.TrainingServiceStub, spec: training_pb2.TrainingSpec) -> training_pb2.Job:
    response = stub.StartTrainingJob(training_pb2.StartTrainingJobRequest(spec=spec), timeout=30)
    assert response.job.state == common_pb2.JOB_STATE_QUEUED
    return response.job


def wait(stub: training_pb2_grpc.TrainingServiceStub, job_id: str, timeout: float = 120.0) -> training_pb2.Job:
    """Follow the job's WatchJob stream to its end, then return the job."""
    deadline = time.monotonic() + timeout
    for _ in stub.WatchJob(training_pb2.WatchJobRequest(job_id=job_id), timeout=timeout):
        assert time.monotonic() < deadline
    job = stub.GetJob(training_pb2.GetJobRequest(job_id=job_id), timeout=30).job
    assert job.state in TERMINAL, job
    return job


def digits_mlp(model_name: str, epochs: int = 20, seed: int = 1) -> training_pb2.TrainingSpec:
    spec = training_pb2.TrainingSpec(model_name=model_name, epochs=epochs, batch_size=32, seed=seed)
    spec.architecture.mlp.hidden_sizes.extend([64])
    spec.data.sklearn = "digits"
    return spec
