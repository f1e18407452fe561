"""Execution-provider and variant choice: pure functions, unit-tested without a GPU.

``onnxruntime.get_available_providers()`` lists CUDA whenever the GPU build is installed, even on a
machine with no GPU; the session then silently runs on the CPU. So we ask for what is configured, and
afterwards report ``session.get_providers()`` (what the session really got) and log any fallback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

GRAPH_LEVELS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class ProviderConfig:
    """What the settings ask of ONNX Runtime for one model."""

    preferred: Sequence[str] = (CUDA, CPU)
    cuda_device_id: int = 0
    cuda_mem_limit_bytes: int = 0
    cudnn_conv_algo_search: str = "EXHAUSTIVE"
    cuda_graph: bool = False
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    graph_optimization: str = "all"


@dataclass(frozen=True)
class ProviderPlan:
    """The providers (with options) to pass to ``InferenceSession`` and the reasons for what was left out."""

    providers: list[tuple[str, dict[str, str]]]
    notes: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """Provider names in order."""
        return [name for name, _ in self.providers]


def plan_providers(config: ProviderConfig, available: Sequence[str], static_shapes: bool) -> ProviderPlan:
    """Order the configured providers that ONNX Runtime offers, with their options; CPU always last.

    ``static_shapes`` says whether every input dimension is fixed: CUDA graphs replay one captured
    shape only, so they are enabled only then.
    """
    providers: list[tuple[str, dict[str, str]]] = []
    notes: list[str] = []
    for name in config.preferred:
        if name not in available:
            notes.append(f"{name} is not available in this onnxruntime build")
            continue
        if name == CUDA:
            options = {
                "device_id": str(config.cuda_device_id),
                "cudnn_conv_algo_search": config.cudnn_conv_algo_search,
                "arena_extend_strategy": "kSameAsRequested",
            }
            if config.cuda_mem_limit_bytes > 0:
                options["gpu_mem_limit"] = str(config.cuda_mem_limit_bytes)
            if config.cuda_graph:
                if static_shapes:
                    options["enable_cuda_graph"] = "1"
                else:
                    notes.append("CUDA graphs skipped: the model has dynamic input dimensions")
            providers.append((name, options))
        elif name != CPU:
            providers.append((name, {}))
    providers.append((CPU, {}))
    return ProviderPlan(providers=providers, notes=notes)


def fallback_note(requested: Sequence[str], granted: Sequence[str]) -> str | None:
    """A log line when the session did not get the first provider asked for (e.g. CUDA without a GPU)."""
    if requested and granted and requested[0] != granted[0]:
        return f"{requested[0]} requested but the session runs on {granted[0]} (fallback)"
    return None


def preferred_variants(provider: str) -> list[str]:
    """Variant names in order of preference for the hardware a session runs on."""
    if provider == CUDA:
        return ["fp16", "fp32", "int8-dynamic", "int8-static"]
    return ["int8-dynamic", "int8-static", "fp32", "fp16"]


def choose_variant(candidates: Mapping[str, Any], provider: str, requested: str = "") -> str | None:
    """The variant to serve among ``candidates`` (variant name -> anything).

    A requested variant wins when present (None when it is not). Otherwise the hardware's preference
    order decides; an unknown variant name is taken only when nothing known is there.
    """
    if requested:
        return requested if requested in candidates else None
    for name in preferred_variants(provider):
        if name in candidates:
            return name
    return next(iter(sorted(candidates)), None)


def session_option_values(config: ProviderConfig) -> dict[str, Any]:
    """Thread counts and graph level, validated (the values ``SessionOptions`` gets)."""
    level = config.graph_optimization.lower()
    if level not in GRAPH_LEVELS:
        raise ValueError(
            f"graph_optimization must be one of {', '.join(GRAPH_LEVELS)}, got {config.graph_optimization!r}"
        )
    return {
        "intra_op_num_threads": max(0, config.intra_op_threads),
        "inter_op_num_threads": max(0, config.inter_op_threads),
        "graph_optimization_level": level,
    }
