"""Service processes for the robustness suites: a registry, and an inference server on a local repository."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from aiaas_services.modelzoo import build_module
from tests.support.processes import ServiceProcess, start_service

FORBIDDEN_IN_DETAILS = ("Traceback", 'File "', "/work/", "/tmp/", "site-packages", "Error(")


def assert_clean_details(details: str | None, home: Path) -> None:
    """A client must never see the server's paths, stack or exception reprs."""
    text = details or ""
    for marker in (*FORBIDDEN_IN_DETAILS, str(home)):
        assert marker not in text, f"leaked {marker!r} in {text!r}"


def export_digits_mlp(path: Path) -> None:
    """A digits-shaped MLP (64 → 10) exported to ONNX with a dynamic batch axis."""
    spec = {
        "architecture": {"kind": "mlp", "hidden_sizes": [32], "activation": "relu", "dropout": 0.0},
        "task": "classification",
        "num_features": 64,
        "num_classes": 10,
        "input_name": "input",
        "output_name": "output",
        "standardization": None,
    }
    torch.manual_seed(0)
    module = build_module(spec).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.from_numpy(np.zeros((2, 64), dtype=np.float32))
    torch.onnx.export(
        module,
        (example,),
        str(path),
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )


@pytest.fixture(scope="session")
def inference_standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """Inference serving `digits` v1 from a local model repository (no registry)."""
    home = tmp_path_factory.mktemp("robust-inference")
    repo = home / "models"
    export_digits_mlp(repo / "digits" / "1" / "model.onnx")
    service = start_service(
        "inference",
        home,
        env={"AIAAS_INFERENCE_MODEL_REPOSITORY": str(repo), "AIAAS_INFERENCE_QUEUE_LIMIT": "64"},
    )
    yield service
    service.terminate()


@pytest.fixture(scope="session")
def registry_robust(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A registry of its own for hostile requests."""
    home = tmp_path_factory.mktemp("robust-registry")
    service = start_service("registry", home)
    yield service
    service.terminate()


@pytest.fixture(scope="session")
def training_robust(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A training service of its own (no registry: nothing is started by the requests sent to it)."""
    service = start_service("training", tmp_path_factory.mktemp("robust-training"))
    yield service
    service.terminate()


@pytest.fixture(scope="session")
def serialization_robust(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A serialization service of its own."""
    service = start_service("serialization", tmp_path_factory.mktemp("robust-serialization"))
    yield service
    service.terminate()
