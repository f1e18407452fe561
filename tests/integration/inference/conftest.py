"""Inference servers for the integration tests: real processes on ephemeral loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from aiaas.oip.v2 import grpc_service_pb2_grpc
from aiaas_services.inference.examples import build_repository
from tests.support.processes import ServiceProcess, serve

EXAMPLES = ("mlp", "transformer", "bytes", "fp16", "bf16", "add_sub", "bool", "slow")


def serve_repository(
    tmp_path_factory: pytest.TempPathFactory, name: str, model_repository: Path, **settings: str
) -> Iterator[ServiceProcess]:
    """Inference on ``model_repository`` only, with ``AIAAS_INFERENCE_<setting>`` overrides."""
    env = {f"AIAAS_INFERENCE_{key}": value for key, value in settings.items()}
    yield from serve(
        "inference",
        tmp_path_factory.mktemp(name),
        env={"AIAAS_INFERENCE_MODEL_REPOSITORY": str(model_repository), **env},
    )


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local model repository with the example models (version 1 each)."""
    return build_repository(tmp_path_factory.mktemp("inference-repo"), EXAMPLES)


@pytest.fixture(scope="session")
def standalone(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """Inference on the local repository only (no registry), batching on, 2 instances."""
    yield from serve_repository(tmp_path_factory, "inference-standalone", model_repository, METRICS_PORT="0")


@pytest.fixture(scope="session")
def narrow(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One instance, batching off, a queue of 2: for deadline and full-queue tests."""
    yield from serve_repository(
        tmp_path_factory, "inference-narrow", model_repository, INSTANCES="1", BATCHING="false", QUEUE_LIMIT="2"
    )


@pytest.fixture(scope="session")
def channel(standalone: ServiceProcess) -> Iterator[grpc.Channel]:
    """A channel to the standalone server."""
    with grpc.insecure_channel(standalone.address) as ch:
        yield ch


@pytest.fixture(scope="session")
def stub(channel: grpc.Channel) -> grpc_service_pb2_grpc.GRPCInferenceServiceStub:
    """Raw generated stub (no client library in between)."""
    return grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
