"""Explanations from the serialization service: integrated gradients on the PyTorch original (a checkpoint,
or the checkpoint an export names), Kernel SHAP on an imported ONNX graph; completeness holds for both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_digits

from aiaas.cli.main import main as cli
from aiaas.client.registry import ONNX, SyncRegistryClient
from aiaas.common.v1 import common_pb2
from aiaas.explain.v1 import explain_pb2, explain_pb2_grpc
from aiaas_services.serialization.explain import COMPLETENESS_TOLERANCE
from tests.support.processes import ServiceProcess

DIGIT = load_digits().data[7].astype(np.float32)


@pytest.fixture(scope="module")
def explainer(serialization_process: ServiceProcess) -> Iterator[explain_pb2_grpc.ExplanationServiceStub]:
    with grpc.insecure_channel(serialization_process.address) as channel:
        yield explain_pb2_grpc.ExplanationServiceStub(channel)


def assert_complete(reply: explain_pb2.ExplainResponse) -> None:
    gap = reply.prediction - reply.baseline_prediction
    error = abs(sum(reply.attributions) - gap)
    assert error <= COMPLETENESS_TOLERANCE * max(1.0, abs(gap)), (error, gap)
    assert reply.completeness_error == pytest.approx(error, abs=1e-9)
    assert np.count_nonzero(reply.attributions) > 10  # the digit's ink matters, not one feature


def test_integrated_gradients_on_a_checkpoint_and_on_an_export_of_it(
    explainer: explain_pb2_grpc.ExplanationServiceStub,
    checkpoints: dict[str, tuple[str, int]],
    registry: SyncRegistryClient,
    tmp_path: Path,
) -> None:
    name, number = checkpoints["mlp"]
    request = explain_pb2.ExplainRequest(ref=common_pb2.VersionRef(model_name=name, version=number), inputs=DIGIT)
    reply = explainer.Explain(request, timeout=120)
    assert reply.method == "integrated_gradients" and reply.target == 7  # trained: it reads a 7 as a 7
    assert len(reply.attributions) == 64 and reply.baseline_prediction != reply.prediction
    assert_complete(reply)

    # An ONNX version made by an export names its checkpoint in the `source` tag: explained on the original.
    from aiaas_services.inference.examples import export_mlp

    onnx_file = export_mlp(tmp_path / "model.onnx", seed=1)
    exported = registry.push(
        f"{name}-export", {"model.onnx": onnx_file}, format=ONNX, tags={"source": f"{name}:{number}"}
    )
    request.ref.CopyFrom(common_pb2.VersionRef(model_name=exported.model_name, version=exported.version))
    via_export = explainer.Explain(request, timeout=120)
    assert (via_export.explained_model, via_export.explained_version) == (name, number)
    assert via_export.attributions == pytest.approx(reply.attributions)

    with_target = explain_pb2.ExplainRequest(ref=request.ref, inputs=DIGIT, target=3)
    other = explainer.Explain(with_target, timeout=120)
    assert other.target == 3 and other.prediction < reply.prediction
    assert_complete(other)


def test_kernel_shap_on_an_imported_onnx_model(
    explainer: explain_pb2_grpc.ExplanationServiceStub,
    registry: SyncRegistryClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    serialization_process: ServiceProcess,
) -> None:
    from aiaas_services.inference.examples import export_mlp

    onnx_file = export_mlp(tmp_path / "imported.onnx", seed=5)
    version = registry.push("imported-mlp", {"model.onnx": onnx_file}, format=ONNX)
    registry.set_alias("imported-mlp", "production", version.version)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"input": np.stack([DIGIT, np.zeros(64, np.float32)])})[0]

    reply = explainer.Explain(
        explain_pb2.ExplainRequest(ref=common_pb2.VersionRef(model_name="imported-mlp"), inputs=DIGIT)
    )
    assert reply.method == "kernel_shap" and reply.version == version.version
    assert reply.target == int(outputs[0].argmax())
    assert reply.prediction == pytest.approx(float(outputs[0, reply.target]), abs=1e-5)
    assert reply.baseline_prediction == pytest.approx(float(outputs[1, reply.target]), abs=1e-5)
    assert_complete(reply)
    assert reply.completeness_error < 1e-6  # exact by construction

    with pytest.raises(grpc.RpcError) as no_original:
        explainer.Explain(
            explain_pb2.ExplainRequest(
                ref=common_pb2.VersionRef(model_name="imported-mlp"), inputs=DIGIT, method="integrated_gradients"
            )
        )
    assert no_original.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "kernel_shap" in no_original.value.details()
    with pytest.raises(grpc.RpcError) as short:
        explainer.Explain(
            explain_pb2.ExplainRequest(ref=common_pb2.VersionRef(model_name="imported-mlp"), inputs=[1.0])
        )
    assert short.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "64 input features" in short.value.details()

    capsys.readouterr()
    row = ",".join(f"{v:g}" for v in DIGIT)
    assert (
        cli(
            [
                "explain",
                "imported-mlp@production",
                "--input",
                row,
                "--top",
                "5",
                "--target",
                serialization_process.address,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "kernel_shap" in out and "feature" in out and "sum of attributions" in out


def test_fuzz_explain(
    explainer: explain_pb2_grpc.ExplanationServiceStub, serialization_process: ServiceProcess
) -> None:
    """Generated requests (also for a real model, the imported one above when it ran first): never UNKNOWN or
    INTERNAL, never a leak, the service stays up. Floats without subnormals: training helpers in this process
    may have switched flush-to-zero on."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.integration.robustness.conftest import assert_clean_details

    numbers = st.floats(allow_subnormal=False, width=32)

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.sampled_from(["imported-mlp", "digits-mlp", "", "nope", "a/b", "x" * 200]),
        st.one_of(st.none(), st.integers(-5, 5), st.sampled_from(["production", "", "9999"])),
        st.one_of(st.lists(numbers, max_size=70), st.just([1.0] * 64)),
        st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
        st.sampled_from(["", "integrated_gradients", "kernel_shap", "lime"]),
        st.integers(-10, 3000),
        st.lists(numbers, max_size=66),
        st.one_of(
            st.just(""),
            st.text(st.characters(exclude_categories=["Cs"]), max_size=60),
            st.just("x" * 10_001),
        ),
    )
    def check(
        name: str,
        selector: object,
        inputs: list[float],
        target: int | None,
        method: str,
        steps: int,
        baseline: list[float],
        text: str,
    ) -> None:
        ref = common_pb2.VersionRef(model_name=name)
        if isinstance(selector, int):
            ref.version = selector
        elif isinstance(selector, str) and selector:
            ref.alias = selector
        request = explain_pb2.ExplainRequest(
            ref=ref, inputs=inputs, method=method, steps=steps, baseline=baseline, text=text
        )
        if target is not None:
            request.target = target
        try:
            explainer.Explain(request, timeout=60)
        except grpc.RpcError as exc:
            assert exc.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (exc.code(), exc.details())
            assert_clean_details(exc.details(), serialization_process.home)

    check()
    assert serialization_process.process.poll() is None
