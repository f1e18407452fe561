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


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local model repository with the example models (version 1 each)."""
    return build_repository(tmp_path_factory.mktemp("inference-repo"), EXAMPLES)


@pytest.fixture(scope="session")
def standalone(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """Inference on the local repository only (no registry), batching on, 2 instances."""
    home = tmp_path_factory.mktemp("inference-standalone")
    yield from serve(
        "inference",
        home,
        env={"AIAAS_INFERENCE_MODEL_REPOSITORY": str(model_repository), "AIAAS_INFERENCE_METRICS_PORT": "0"},
    )


@pytest.fixture(scope="session")
def narrow(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One instance, batching off, a queue of 2: for deadline and full-queue tests."""
    home = tmp_path_factory.mktemp("inference-narrow")
    yield from serve(
        "inference",
        home,
        env={
            "AIAAS_INFERENCE_MODEL_REPOSITORY": str(model_repository),
            "AIAAS_INFERENCE_INSTANCES": "1",
            "AIAAS_INFERENCE_BATCHING": "false",
            "AIAAS_INFERENCE_QUEUE_LIMIT": "2",
        },
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
