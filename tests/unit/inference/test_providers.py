"""Provider and variant choice as pure functions: the CUDA path is planned and checked without a GPU."""

from __future__ import annotations

import pytest

from aiaas_services.inference.providers import (
    CPU,
    CUDA,
    ProviderConfig,
    choose_variant,
    fallback_note,
    plan_providers,
    session_option_values,
)


def test_cuda_first_with_its_options_when_available() -> None:
    config = ProviderConfig(cuda_device_id=1, cuda_mem_limit_bytes=2 << 30, cudnn_conv_algo_search="HEURISTIC")
    plan = plan_providers(config, [CUDA, CPU], static_shapes=False)
    assert plan.names == [CUDA, CPU]
    options = dict(plan.providers)[CUDA]
    assert options["device_id"] == "1"
    assert options["gpu_mem_limit"] == str(2 << 30)
    assert options["cudnn_conv_algo_search"] == "HEURISTIC"
    assert "enable_cuda_graph" not in options


def test_cuda_graphs_only_for_fixed_shapes() -> None:
    config = ProviderConfig(cuda_graph=True)
    fixed = plan_providers(config, [CUDA, CPU], static_shapes=True)
    assert dict(fixed.providers)[CUDA]["enable_cuda_graph"] == "1"
    dynamic = plan_providers(config, [CUDA, CPU], static_shapes=False)
    assert "enable_cuda_graph" not in dict(dynamic.providers)[CUDA]
    assert any("dynamic input dimensions" in note for note in dynamic.notes)


def test_cpu_only_build_falls_back_with_a_note() -> None:
    plan = plan_providers(ProviderConfig(), [CPU], static_shapes=False)
    assert plan.names == [CPU]
    assert plan.notes == [f"{CUDA} is not available in this onnxruntime build"]


def test_cpu_is_always_last_and_present() -> None:
    plan = plan_providers(ProviderConfig(preferred=(CPU,)), [CUDA, CPU], static_shapes=True)
    assert plan.names == [CPU]


def test_fallback_note_compares_asked_with_granted() -> None:
    assert fallback_note([CUDA, CPU], [CPU]) == f"{CUDA} requested but the session runs on {CPU} (fallback)"
    assert fallback_note([CUDA, CPU], [CUDA, CPU]) is None


@pytest.mark.parametrize(
    ("provider", "candidates", "requested", "expected"),
    [
        (CUDA, {"fp32", "fp16", "int8-dynamic"}, "", "fp16"),
        (CPU, {"fp32", "fp16", "int8-dynamic"}, "", "int8-dynamic"),
        (CPU, {"fp32", "fp16", "int8-static"}, "", "int8-static"),
        (CPU, {"fp32", "fp16"}, "", "fp32"),
        (CUDA, {"fp32", "int8-dynamic"}, "", "fp32"),
        (CPU, {"fp32", "fp16"}, "fp16", "fp16"),
        (CPU, {"fp32"}, "int8-dynamic", None),
        (CPU, {"custom"}, "", "custom"),
    ],
)
def test_variant_choice(provider: str, candidates: set[str], requested: str, expected: str | None) -> None:
    assert choose_variant(dict.fromkeys(candidates), provider, requested) == expected


def test_session_options_are_validated() -> None:
    assert session_option_values(ProviderConfig(intra_op_threads=2, graph_optimization="BASIC")) == {
        "intra_op_num_threads": 2,
        "inter_op_num_threads": 1,
        "graph_optimization_level": "basic",
    }
    with pytest.raises(ValueError, match="graph_optimization must be one of"):
        session_option_values(ProviderConfig(graph_optimization="max"))
