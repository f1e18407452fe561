"""Service processes for the robustness suites: a registry, and an inference server on a local repository."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from tests.support.models import export_digits_mlp
from tests.support.processes import ServiceProcess, serve, start_service

FORBIDDEN_IN_DETAILS = ("Traceback", 'File "', "/work/", "/tmp/", "site-packages", "Error(")


def fuzz_settings(max_examples: int) -> settings:
    """Hypothesis settings of the fuzz suites: no deadline, no example database, fixtures shared."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )


def assert_clean_details(details: str | None, home: Path) -> None:
    """A client must never see the server's paths, stack or exception reprs."""
    text = details or ""
    for marker in (*FORBIDDEN_IN_DETAILS, str(home)):
        assert marker not in text, f"leaked {marker!r} in {text!r}"


@pytest.fixture(scope="session")
def inference_standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """Inference serving `digits` v1 from a local model repository (no registry)."""
    home = tmp_path_factory.mktemp("robust-inference")
    repo = home / "models"
    export_digits_mlp(repo / "digits" / "1" / "model.onnx")
    yield from serve(
        "inference",
        home,
        env={"AIAAS_INFERENCE_MODEL_REPOSITORY": str(repo), "AIAAS_INFERENCE_QUEUE_LIMIT": "64"},
    )


# Tokens of the guarded inference server: one per rule of runtime/access.py that a REST call can break.
GUARDED_TOKENS = {
    "reader": {"principal": "reader", "scopes": ["read"]},
    "digits-only": {"principal": "digits-app", "scopes": ["read:digits*"]},
    "no-quota": {"principal": "spent", "scopes": ["read"], "quota": {"requests": 0, "per_seconds": 3600}},
    "slow": {"principal": "slow", "scopes": ["read"], "rate_per_second": 1, "burst": 1},
}


@pytest.fixture(scope="session")
def guarded_inference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """Inference with bearer tokens (GUARDED_TOKENS) serving `digits` and `other` from a local repository."""
    import json
    import shutil

    home = tmp_path_factory.mktemp("robust-guarded")
    repo = home / "models"
    export_digits_mlp(repo / "digits" / "1" / "model.onnx")
    (repo / "other" / "1").mkdir(parents=True)
    shutil.copy(repo / "digits" / "1" / "model.onnx", repo / "other" / "1" / "model.onnx")
    tokens = home / "tokens.json"
    tokens.write_text(json.dumps(GUARDED_TOKENS))
    service = start_service(
        "inference",
        home,
        env={"AIAAS_INFERENCE_MODEL_REPOSITORY": str(repo), "AIAAS_AUTH_TOKENS_FILE": str(tokens)},
    )
    yield service
    service.terminate()


@pytest.fixture(scope="session")
def registry_robust(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A registry of its own for hostile requests."""
    home = tmp_path_factory.mktemp("robust-registry")
    yield from serve("registry", home)


@pytest.fixture(scope="session")
def training_robust(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A training service of its own (no registry: nothing is started by the requests sent to it)."""
    yield from serve("training", tmp_path_factory.mktemp("robust-training"))


@pytest.fixture(scope="session")
def serialization_robust(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A serialization service of its own."""
    yield from serve("serialization", tmp_path_factory.mktemp("robust-serialization"))


def save_external_model(folder: Path, location: str = "weights.bin") -> Path:
    """``model.onnx`` (input [-1, 4] -> output [-1, 2], one MatMul) with its weight in ``folder/location``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.arange(8, dtype=np.float32).reshape(4, 2), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["output"])],
        "external",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, 2])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save_model(
        model,
        str(folder / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    if location != "weights.bin":
        stored = onnx.load(str(folder / "model.onnx"), load_external_data=False)
        for entry in stored.graph.initializer[0].external_data:
            if entry.key == "location":
                entry.value = location
        onnx.save(stored, str(folder / "model.onnx"))
    return folder / "model.onnx"


def build_broken_repository(repo: Path, outside: Path) -> None:
    """A model repository with a bad version beside a good one, and external data that breaks the rules."""
    export_digits_mlp(repo / "digits" / "1" / "model.onnx")
    good = (repo / "digits" / "1" / "model.onnx").read_bytes()
    (repo / "digits" / "2").mkdir(parents=True)
    (repo / "digits" / "2" / "model.onnx").write_bytes(good[: len(good) // 3])  # truncated
    save_external_model(repo / "external" / "1")  # fine: weights.bin is a plain file beside it
    outside.mkdir(parents=True, exist_ok=True)
    save_external_model(outside / "src")
    hard = save_external_model(repo / "hardlink" / "1").parent
    (hard / "weights.bin").unlink()
    os.link(outside / "src" / "weights.bin", hard / "weights.bin")
    soft = save_external_model(repo / "symlink" / "1").parent
    (soft / "weights.bin").unlink()
    (soft / "weights.bin").symlink_to(outside / "src" / "weights.bin")
    save_external_model(repo / "dotdot" / "1", location="../../../outside/src/weights.bin")
    save_external_model(repo / "absolute" / "1", location=str(outside / "src" / "weights.bin"))


@pytest.fixture(scope="session")
def broken_repository(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """Inference over ``build_broken_repository``."""
    home = tmp_path_factory.mktemp("robust-broken")
    build_broken_repository(home / "models", home / "outside")
    yield from serve("inference", home, env={"AIAAS_INFERENCE_MODEL_REPOSITORY": str(home / "models")})
