"""A real registry and a real serialization service (session-scoped processes) and checkpoint helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aiaas.client.registry import PYTORCH_CHECKPOINT, SyncRegistryClient
from aiaas.serialization.v1 import serialization_pb2_grpc
from tests.integration.serialization.checkpoints import train_checkpoint
from tests.support import minilm as minilm_support
from tests.support.channels import on_channel
from tests.support.processes import ServiceProcess, serve_serialization


@pytest.fixture(scope="session")
def serialization_process(registry_process: ServiceProcess, session_home: Path) -> Iterator[ServiceProcess]:
    yield from serve_serialization(
        registry_process,
        session_home / "serialization",
        AIAAS_SERIALIZATION_LATENCY_REPEATS="5",
        AIAAS_SERIALIZATION_MAX_CONCURRENT_JOBS="2",
    )


@pytest.fixture(scope="session")
def serialization(serialization_process: ServiceProcess) -> Iterator[serialization_pb2_grpc.SerializationServiceStub]:
    yield from on_channel(serialization_process.address, serialization_pb2_grpc.SerializationServiceStub)


@pytest.fixture(scope="session")
def registry(registry_process: ServiceProcess) -> Iterator[SyncRegistryClient]:
    client = SyncRegistryClient(registry_process.address, actor="tests")
    yield client
    client.close()


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory, registry: SyncRegistryClient) -> dict[str, tuple[str, int]]:
    """Every architecture trained briefly on digits and registered as a READY checkpoint."""
    root = tmp_path_factory.mktemp("checkpoints")
    refs = {}
    for kind in ("linear", "mlp", "cnn", "rnn", "transformer", "vae"):
        folder = train_checkpoint(kind, root / kind, epochs=10 if kind == "mlp" else 4)
        version = registry.push(
            f"digits-{kind}",
            {"spec.json": folder / "spec.json", "weights.safetensors": folder / "weights.safetensors"},
            format=PYTORCH_CHECKPOINT,
        )
        refs[kind] = (version.model_name, version.version)
    return refs


@pytest.fixture(scope="session")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> minilm_support.ExportedMiniLM:
    """The packaged pretrained MiniLM exported to ONNX with token-id inputs, once per session."""
    return minilm_support.export(tmp_path_factory.mktemp("minilm"))
