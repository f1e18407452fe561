"""Models from the registry: alias resolution, a hot swap and a rollback under continuous load with zero
failed requests, variant selection, and a registry that is down at start-up.

Real processes: the session's registry, inference servers watching it. Every answer is checked against
ONNX Runtime run in-process on the exact file of the version that answered, so a request that saw a
half-loaded or wrong model would fail too.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from aiaas.client.registry import ONNX, RegistryClient
from aiaas.oip.v2 import grpc_service_pb2 as pb
from aiaas.oip.v2 import grpc_service_pb2_grpc
from aiaas.registry.v1 import registry_pb2
from aiaas_services.inference.examples import export_mlp
from tests.support.background import registry_call
from tests.support.processes import ServiceProcess, serve, start_inference, start_service

MODEL = "swap-mlp-onnx"
VARIANTS = "variants-mlp-onnx"
X = np.random.default_rng(7).standard_normal((2, 64)).astype(np.float32)


def expected_output(path: Path) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": X})[0]


@pytest.fixture(scope="module")
def published(registry_process: ServiceProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[int, np.ndarray]:
    """Versions 1 and 2 of MODEL (different weights), production -> 1; expected outputs per version."""
    folder = tmp_path_factory.mktemp("swap-models")
    paths = {seed: export_mlp(folder / f"seed{seed}.onnx", seed=seed) for seed in (1, 2)}

    async def publish(client: RegistryClient) -> dict[int, np.ndarray]:
        expected = {}
        for path in paths.values():
            version = await client.push(MODEL, {"model.onnx": path}, format=ONNX, variant="fp32")
            expected[version.version] = expected_output(path)
        await client.set_alias(MODEL, "production", min(expected), reason="first deploy")
        return expected

    return registry_call(registry_process.address, publish)


@pytest.fixture(scope="module")
def watching(published, registry_process: ServiceProcess, tmp_path_factory) -> Iterator[ServiceProcess]:
    home = tmp_path_factory.mktemp("inference-registry")
    yield from serve(
        "inference",
        home,
        env={"AIAAS_INFERENCE_REGISTRY_TARGET": registry_process.address, "AIAAS_INFERENCE_MODELS": MODEL},
    )


class Load:
    """Threads sending ModelInfer continuously; records which version answered and every failure."""

    def __init__(self, address: str, expected: dict[int, np.ndarray], threads: int = 4) -> None:
        self.expected = expected
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []
        self.last_version = ""
        self._stop = threading.Event()
        self._channel = grpc.insecure_channel(address)
        self._stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self._request = pb.ModelInferRequest(
            model_name=MODEL,
            inputs=[pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[2, 64])],
            raw_input_contents=[X.tobytes()],
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = self._stub.ModelInfer(self._request, timeout=10)
            except grpc.RpcError as exc:
                self.failures.append(f"{exc.code().name}: {exc.details()}")
                continue
            got = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(2, 10)
            if not np.allclose(got, self.expected[int(response.model_version)], rtol=1e-5, atol=1e-6):
                self.failures.append(f"wrong output from version {response.model_version}")
            self.versions[response.model_version] += 1
            self.last_version = response.model_version

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def wait_for(self, version: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.last_version != version or self.versions[version] < 20:
            assert time.monotonic() < deadline, f"still answering {self.last_version}: {dict(self.versions)}"
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
        self._channel.close()


def test_alias_move_and_rollback_swap_under_load_with_zero_failures(watching, published, registry_process) -> None:
    with Load(watching.address, published) as load:
        load.wait_for("1")
        registry_call(registry_process.address, lambda c: c.set_alias(MODEL, "production", 2, reason="deploy v2"))
        load.wait_for("2")
        time.sleep(0.3)
        registry_call(registry_process.address, lambda c: c.rollback(MODEL, "production", reason="roll back"))
        load.wait_for("1")
        time.sleep(0.3)
    assert load.failures == []
    assert load.versions["1"] > 20 and load.versions["2"] > 20
    assert "serving swap-mlp-onnx: default version 2" in watching.log()


def test_config_reports_the_registry_version_and_variant(watching) -> None:
    with grpc.insecure_channel(watching.address) as channel:
        stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        config = stub.ModelConfig(pb.ModelConfigRequest(name=MODEL)).config
        assert config.parameters["source"].string_value == "registry"
        assert config.parameters["alias"].string_value == "production"
        assert config.parameters["variant"].string_value == "fp32"
        assert len(config.parameters["sha256"].string_value) == 64


@pytest.fixture(scope="module")
def variants(registry_process: ServiceProcess, tmp_path_factory) -> dict[str, int]:
    """Three variants of one training run (lineage parent ``variants-mlp`` v1): fp32, fp16, int8-dynamic.

    The files are small fp32 MLPs with different weights: only the registry's variant label matters here.
    """
    folder = tmp_path_factory.mktemp("variant-models")

    async def publish(client: RegistryClient) -> dict[str, int]:
        numbers = {}
        lineage = registry_pb2.Lineage(parent_version=1, parent_model_name="variants-mlp")
        for seed, variant in enumerate(("fp32", "fp16", "int8-dynamic"), start=3):
            path = export_mlp(folder / f"{variant}.onnx", seed=seed)
            version = await client.push(VARIANTS, {"model.onnx": path}, format=ONNX, variant=variant, lineage=lineage)
            numbers[variant] = version.version
        await client.set_alias(VARIANTS, "production", numbers["fp32"])
        return numbers

    return registry_call(registry_process.address, publish)


def _served_variant(address: str, variant: str = "") -> tuple[str, str]:
    with grpc.insecure_channel(address) as channel:
        stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        version = _infer(stub, VARIANTS, variant).model_version
        config = stub.ModelConfig(pb.ModelConfigRequest(name=VARIANTS, version=version)).config
        return version, config.parameters["variant"].string_value


@pytest.mark.parametrize("policy", ["alias", "hardware"])
def test_variant_selection(policy, variants, registry_process, tmp_path_factory) -> None:
    service = start_service(
        "inference",
        tmp_path_factory.mktemp(f"inference-variants-{policy}"),
        env={
            "AIAAS_INFERENCE_REGISTRY_TARGET": registry_process.address,
            "AIAAS_INFERENCE_MODELS": VARIANTS,
            "AIAAS_INFERENCE_VARIANT_POLICY": policy,
            "AIAAS_INFERENCE_INSTANCES": "1",
        },
    )
    try:
        default = _served_variant(service.address)
        # 'alias' serves exactly what production names; 'hardware' picks int8 on this CPU-only machine.
        want = "fp32" if policy == "alias" else "int8-dynamic"
        assert default == (str(variants[want]), want)
        # A client may ask for any loaded variant.
        assert _served_variant(service.address, "fp16") == (str(variants["fp16"]), "fp16")
    finally:
        service.terminate()


def test_unknown_registry_model_is_unavailable_then_loads_when_published(registry_process, tmp_path_factory) -> None:
    name = "late-mlp-onnx"
    service = start_inference(tmp_path_factory.mktemp("inference-late"), registry_process.address, name)
    try:
        with grpc.insecure_channel(service.address) as channel:
            stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
            request = pb.ModelInferRequest(
                model_name=name,
                inputs=[pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[2, 64])],
                raw_input_contents=[X.tobytes()],
            )
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(request, timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "not ready" in caught.value.details()
            assert not stub.ModelReady(pb.ModelReadyRequest(name=name)).ready

            path = export_mlp(tmp_path_factory.mktemp("late") / "late.onnx", seed=9)

            async def publish(client: RegistryClient) -> None:
                version = await client.push(name, {"model.onnx": path}, format=ONNX, variant="fp32")
                await client.set_alias(name, "production", version.version)

            registry_call(registry_process.address, publish)
            deadline = time.monotonic() + 30
            while not stub.ModelReady(pb.ModelReadyRequest(name=name)).ready:
                assert time.monotonic() < deadline, service.log()[-2000:]
                time.sleep(0.1)
            response = stub.ModelInfer(request, timeout=10)
            got = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(2, 10)
            np.testing.assert_allclose(got, expected_output(path), rtol=1e-5, atol=1e-6)
    finally:
        service.terminate()


def test_watch_reconnects_after_a_registry_restart(tmp_path_factory) -> None:
    """Registry down and back on the same port: the watch reconnects and a later alias move still lands."""
    name = "restart-mlp-onnx"
    registry_home = tmp_path_factory.mktemp("restart-registry")
    quick_stop = ["--grace-seconds", "1"]  # the watch stream stays open: don't wait 10 s for it on SIGTERM
    registry = start_service("registry", registry_home, args=quick_stop)
    folder = tmp_path_factory.mktemp("restart-models")
    paths = {seed: export_mlp(folder / f"{seed}.onnx", seed=seed) for seed in (11, 12)}

    async def publish(client: RegistryClient) -> list[int]:
        numbers = [(await client.push(name, {"model.onnx": p}, format=ONNX)).version for p in paths.values()]
        await client.set_alias(name, "production", numbers[0])
        return numbers

    first, second = registry_call(registry.address, publish)
    service = start_service(
        "inference",
        tmp_path_factory.mktemp("inference-restart"),
        env={
            "AIAAS_INFERENCE_REGISTRY_TARGET": registry.address,
            "AIAAS_INFERENCE_MODELS": name,
            "AIAAS_INFERENCE_WATCH_BACKOFF_MAX_SECONDS": "1",
        },
    )
    try:
        assert _version_of(service.address, name) == str(first)
        registry.terminate()
        time.sleep(1.0)
        assert _version_of(service.address, name) == str(first)  # still serving while the registry is down
        registry = start_service("registry", registry_home, args=[*quick_stop, "--port", str(registry.port)])
        registry_call(registry.address, lambda c: c.set_alias(name, "production", second))
        deadline = time.monotonic() + 30
        while _version_of(service.address, name) != str(second):
            assert time.monotonic() < deadline, service.log()[-3000:]
            time.sleep(0.1)
        assert "registry watch interrupted" in service.log()
    finally:
        service.terminate()
        registry.terminate()


def _version_of(address: str, name: str) -> str:
    with grpc.insecure_channel(address) as channel:
        return str(_infer(grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel), name).model_version)


def _infer(stub: grpc_service_pb2_grpc.GRPCInferenceServiceStub, name: str, variant: str = "") -> pb.ModelInferResponse:
    """Two digits-shaped rows through ``name`` (its ``variant`` when named)."""
    request = pb.ModelInferRequest(
        model_name=name,
        inputs=[pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[2, 64])],
        raw_input_contents=[X.tobytes()],
    )
    if variant:
        request.parameters["variant"].string_param = variant
    return stub.ModelInfer(request, timeout=10)
