"""Small PyTorch models exported to ONNX as a user would (the legacy exporter, a dynamic batch axis)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from aiaas_services.modelzoo import build_module


def digits_mlp_spec(hidden: int = 32, **extra: Any) -> dict[str, Any]:
    """A model-zoo spec of a digits-shaped MLP (64 features, 10 classes), plus ``extra`` keys."""
    return {
        "architecture": {"kind": "mlp", "hidden_sizes": [hidden], "activation": "relu", "dropout": 0.0},
        "task": "classification",
        "num_features": 64,
        "num_classes": 10,
        "input_name": "input",
        "output_name": "output",
        "standardization": None,
        **extra,
    }


def export_onnx(module: torch.nn.Module, target: Path | io.BytesIO, features: int = 64) -> None:
    """``module`` ([batch, features] -> [batch, ...]) as opset-17 ONNX named input/output."""
    torch.onnx.export(
        module,
        (torch.zeros(2, features),),
        target if isinstance(target, io.BytesIO) else str(target),  # type: ignore[arg-type]  # a file object too
        dynamo=False,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        opset_version=17,
    )


def onnx_bytes(module: torch.nn.Module, features: int = 64) -> bytes:
    """``export_onnx`` into memory."""
    buffer = io.BytesIO()
    export_onnx(module, buffer, features)
    return buffer.getvalue()


def export_digits_mlp(path: Path, hidden: int = 32, seed: int = 0) -> None:
    """An untrained digits MLP (seeded) exported to ``path``."""
    torch.manual_seed(seed)
    module = build_module(digits_mlp_spec(hidden)).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(module, path)
