"""The export -> variants -> proof pipeline on small modules and generated data (no services)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from aiaas_services.modelzoo import build_module, validate_spec
from aiaas_services.serialization.pipeline import export, proof, run, variants

FEATURES = 12
CLASSES = 3


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(0).uniform(-4, 4, size=(CLASSES, FEATURES))
    y = rng.integers(0, CLASSES, size=n)
    return (centers[y] + rng.standard_normal((n, FEATURES))).astype(np.float32) * 5 + 20, y


@pytest.fixture(scope="module")
def trained() -> tuple[torch.nn.Module, run.ProofData]:
    """An MLP trained on raw (unstandardized, offset) blobs: standardization lives inside the module."""
    x, y = blobs(600, 1)
    spec = validate_spec(
        {
            "architecture": {"kind": "mlp", "hidden_sizes": [32]},
            "task": "classification",
            "num_features": FEATURES,
            "num_classes": CLASSES,
            "standardization": {"mean": x.mean(0).tolist(), "std": x.std(0).tolist()},
        }
    )
    torch.manual_seed(0)
    module = build_module(spec)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(module(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        optimizer.step()
    x_test, y_test = blobs(200, 2)
    return module.eval(), run.ProofData({"input": x}, {"input": x_test}, y_test, "classification")


def test_export_names_batch_axis_and_folds_standardization(
    trained: tuple[torch.nn.Module, run.ProofData], tmp_path: Path
) -> None:
    module, data = trained
    result = export.export_fp32(module, FEATURES, tmp_path, exporter="torchscript")
    model = onnx.load(str(result.path))
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["output"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert model.opset_import[0].version == export.DEFAULT_OPSET
    session = proof.cpu_session(result.path)
    with torch.no_grad():
        want = module(torch.from_numpy(data.proof["input"])).numpy()
    got = session.run(None, {"input": data.proof["input"]})[0]  # RAW features in: the graph standardizes
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_dynamo_export_is_tried_first(trained: tuple[torch.nn.Module, run.ProofData], tmp_path: Path) -> None:
    result = export.export_fp32(trained[0], FEATURES, tmp_path, exporter="auto")
    assert result.exporter == "dynamo"  # torch 2.13 + onnxscript: the dynamo exporter handles the zoo's MLP


def test_every_variant_is_made_and_proven(trained: tuple[torch.nn.Module, run.ProofData], tmp_path: Path) -> None:
    module, data = trained
    options = run.PipelineOptions(variants=variants.VARIANTS, exporter="torchscript", latency_repeats=3)
    prepared = run.from_module(module, FEATURES, data, options, tmp_path)
    seen: list[str] = []
    results = {
        r.variant: r for r in run.make_and_prove(prepared, data, options, tmp_path, {"aiaas.k": "v"}, seen.append)
    }
    assert list(results) == list(variants.VARIANTS)
    assert "making int8-static" in seen and "proving fp16" in seen
    for name, result in results.items():
        report = result.report
        assert report.accepted, (name, report.reason)
        assert report.metric_name == "accuracy" and report.reference_metric_value > 0.9
        assert report.preferred_provider == variants.PREFERRED_PROVIDER[name]
        stamped = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
        assert stamped["aiaas.k"] == "v" and stamped["aiaas.variant"] == name
    assert results["fp32"].report.max_abs_error < 1e-4
    assert results["fp16"].report.max_abs_error < 1e-2 * 30
    # fp16 keeps FP32 inputs/outputs so clients do not change
    fp16 = onnx.load(str(results["fp16"].path))
    assert fp16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert fp16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    static = onnx.load(str(results["int8-static"].path))
    assert any(n.op_type == "QuantizeLinear" for n in static.graph.node)  # QDQ format
    dynamic = onnx.load(str(results["int8-dynamic"].path))
    assert any(n.op_type in ("DynamicQuantizeLinear", "MatMulInteger") for n in dynamic.graph.node)


def test_pruning_zeroes_the_requested_share() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.ReLU(), torch.nn.Linear(20, 3))
    reached = export.prune_weights(module, 0.7)
    assert abs(reached - 0.7) < 0.01
    assert not any(name.endswith("_orig") for name, _ in module.named_parameters())  # made permanent
    with pytest.raises(ValueError):
        export.prune_weights(module, 1.0)


def test_opset_outside_range_is_refused(trained: tuple[torch.nn.Module, run.ProofData], tmp_path: Path) -> None:
    with pytest.raises(export.ExportError, match="opset 9"):
        export.export_fp32(trained[0], FEATURES, tmp_path, opset=9)


def test_an_error_fails_that_variant_alone(
    trained: tuple[torch.nn.Module, run.ProofData], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, data = trained

    def broken(_fp32: Path, _destination: Path) -> None:
        raise RuntimeError("converter exploded\nsecond line")

    monkeypatch.setattr(variants, "make_fp16", broken)
    options = run.PipelineOptions(variants=("fp16", "fp32"), exporter="torchscript", latency_repeats=1)
    prepared = run.from_module(module, FEATURES, data, options, tmp_path)
    fp16, fp32 = run.make_and_prove(prepared, data, options, tmp_path)
    assert fp16.path is None and fp16.report.failed and not fp16.report.accepted
    assert fp16.report.reason == "fp16 failed: RuntimeError: converter exploded"
    assert fp32.report.accepted, fp32.report.reason


def test_int8_without_representative_data_is_rejected_unproven(
    trained: tuple[torch.nn.Module, run.ProofData], tmp_path: Path
) -> None:
    module, data = trained
    generated = run.ProofData({}, data.proof, None, "", representative=False, source="generated")
    options = run.PipelineOptions(variants=("fp32", "int8-dynamic"), exporter="torchscript", latency_repeats=1)
    prepared = run.from_module(module, FEATURES, generated, options, tmp_path)
    fp32, int8 = run.make_and_prove(prepared, generated, options, tmp_path)
    assert fp32.report.accepted and fp32.report.settings["proof_data"] == "generated"
    assert int8.path is None and not int8.report.accepted and not int8.report.failed
    assert int8.report.reason.startswith("not proven: int8-dynamic needs representative data")


def test_task_metrics() -> None:
    outputs = np.array([[0.1, 0.9], [0.8, 0.2]])
    assert proof.task_metric("classification", outputs, outputs, np.array([1, 1])) == ("accuracy", 0.5)
    assert proof.task_metric("regression", np.array([[1.0], [3.0]]), outputs, np.array([1.0, 1.0])) == ("mse", 2.0)
    assert proof.task_metric("vae", outputs, outputs, None) == ("reconstruction_mse", 0.0)
    assert proof.task_metric("", outputs, outputs, None) == ("none", 0.0)


def test_vnni_detection(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags : fpu avx avx2 fma\n")
    assert not variants.cpu_has_vnni(cpuinfo)
    cpuinfo.write_text("flags : avx2 avx512f avx512_vnni\n")
    assert variants.cpu_has_vnni(cpuinfo)
    assert not variants.cpu_has_vnni(tmp_path / "missing")
