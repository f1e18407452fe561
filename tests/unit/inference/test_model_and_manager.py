"""A loaded model's validation and run paths, and the manager's lookups, on real ONNX Runtime sessions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from aiaas_services.inference.batching import BatchPolicy
from aiaas_services.inference.examples import build_repository
from aiaas_services.inference.manager import ModelManager
from aiaas_services.inference.model import bound_runner, plain_runner
from aiaas_services.inference.providers import CPU, ProviderConfig
from aiaas_services.inference.served import LoadOptions, ModelSpec, scan_repository
from aiaas_services.runtime.errors import InvalidArgument, NotFound, Unavailable


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = build_repository(tmp_path_factory.mktemp("unit-repo"), ("mlp", "add_sub"))
    (root / "mlp" / "2").mkdir()
    (root / "mlp" / "2" / "model.onnx").write_bytes((root / "mlp" / "1" / "model.onnx").read_bytes())
    (root / "mlp" / "2" / "variant.txt").write_text("fp32\n")
    (root / "mlp" / "notes").mkdir()
    return root


def manager(repository: Path) -> ModelManager:
    options = LoadOptions(ProviderConfig(preferred=(CPU,)), 1, BatchPolicy(), max_elements=10_000, warmup_runs=1)
    return ModelManager(options, repository=repository)


def test_scan_repository_takes_numeric_versions_with_a_model(repository: Path) -> None:
    found = scan_repository(repository)
    assert sorted(found) == ["add_sub", "mlp"]
    assert sorted(found["mlp"]) == ["1", "2"]


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("digits-onnx", ModelSpec("digits-onnx", alias="production")),
        ("digits-onnx@staging", ModelSpec("digits-onnx", alias="staging")),
        ("digits-onnx@4", ModelSpec("digits-onnx", version=4)),
    ],
)
def test_model_spec_parse(text: str, spec: ModelSpec) -> None:
    assert ModelSpec.parse(text, "production") == spec


async def test_manager_resolves_versions_variants_and_reports_errors(repository: Path) -> None:
    models = manager(repository)
    await models.start()
    try:
        assert models.resolve("mlp").version == "2"  # the newest is the default
        assert models.resolve("mlp", "1").version == "1"
        assert models.resolve("mlp", variant="fp32").version == "2"
        with pytest.raises(NotFound, match="version '3' is not loaded"):
            models.resolve("mlp", "3")
        with pytest.raises(NotFound, match="variant 'int8-dynamic' is not loaded"):
            models.resolve("mlp", variant="int8-dynamic")
        with pytest.raises(NotFound, match="not served here"):
            models.resolve("ghost")
        await models.unload("mlp")
        with pytest.raises(Unavailable, match="not ready: unloaded"):
            models.resolve("mlp")
        await models.load("mlp")
        assert models.is_ready("mlp", "1")
        assert ("add_sub", "1", "READY", "") in models.index()
    finally:
        await models.close()


async def test_prepare_checks_the_signature(repository: Path) -> None:
    models = manager(repository)
    await models.start()
    try:
        add_sub = models.resolve("add_sub")
        ok = add_sub.prepare({"a": np.ones((3, 16), np.int32), "b": np.ones((3, 16), np.int32)})
        assert ok.rows == 3 and ok.key == ((16,), (16,))
        with pytest.raises(InvalidArgument, match="missing input"):
            add_sub.prepare({"a": np.ones((1, 16), np.int32)})
        with pytest.raises(InvalidArgument, match="dimension 1 is 8, the model expects 16"):
            add_sub.prepare({"a": np.ones((1, 8), np.int32), "b": np.ones((1, 16), np.int32)})
        with pytest.raises(InvalidArgument, match="disagree on the batch size"):
            add_sub.prepare({"a": np.ones((1, 16), np.int32), "b": np.ones((2, 16), np.int32)})
        with pytest.raises(InvalidArgument, match="more than the limit of 10000"):
            add_sub.prepare({"a": np.ones((400, 16), np.int32), "b": np.ones((400, 16), np.int32)})
        mlp = models.resolve("mlp")
        assert mlp.provider == CPU and mlp.batchable
        out = await mlp.batcher.submit({"input": np.ones((2, 64), np.float32)}, 2, (64,), None)
        assert out[0].shape == (2, 10)
    finally:
        await models.close()


def test_io_binding_runner_matches_plain_run_on_the_cpu(repository: Path) -> None:
    """The CUDA path's IO binding code, run with device "cpu": same answers as session.run."""
    session = ort.InferenceSession(str(repository / "mlp/1/model.onnx"), providers=[CPU])
    x = np.random.default_rng(0).standard_normal((5, 64)).astype(np.float32)
    bound = bound_runner(session, device="cpu")({"input": x})
    plain = plain_runner(session)({"input": x})
    np.testing.assert_allclose(bound[0], plain[0], rtol=1e-6)


def test_loaded_models_close_in_a_thread(repository: Path) -> None:
    async def scenario() -> None:
        models = manager(repository)
        await models.start()
        await models.close()
        assert models.served == {}

    asyncio.run(scenario())
