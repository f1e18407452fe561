"""Every architecture builds from JSON, exports to ONNX with a dynamic batch axis, and ONNX Runtime
matches PyTorch at batch sizes 1 and 7 (the serialization service relies on this)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from aiaas_services.modelzoo import SpecError, build_module, validate_spec
from tests.support.models import onnx_bytes

FEATURES = 16
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "linear": {"kind": "linear"},
    "mlp": {"kind": "mlp", "hidden_sizes": [32, 16], "activation": "gelu", "dropout": 0.1},
    "cnn": {"kind": "cnn", "channels": 1, "height": 4, "width": 4, "conv_channels": [4, 8], "hidden_sizes": [8]},
    "lstm": {"kind": "rnn", "cell": "lstm", "hidden_size": 8, "num_layers": 2, "sequence_length": 4},
    "gru-bidirectional": {"kind": "rnn", "cell": "gru", "hidden_size": 8, "sequence_length": 8, "bidirectional": True},
    "rnn": {"kind": "rnn", "cell": "rnn", "hidden_size": 8, "sequence_length": 16},
    "transformer": {"kind": "transformer", "sequence_length": 4, "d_model": 16, "num_heads": 2, "num_layers": 2},
    "vae": {"kind": "vae", "latent_size": 3, "hidden_sizes": [12]},
}


def make_spec(arch: dict[str, Any], task: str = "classification") -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "architecture": arch,
        "task": "vae" if arch["kind"] == "vae" else task,
        "num_features": FEATURES,
        "num_classes": 5,
        "num_outputs": 1,
        "standardization": {"mean": rng.normal(size=FEATURES).tolist(), "std": rng.uniform(0.5, 2, FEATURES).tolist()},
        "target_standardization": {"mean": [10.0], "std": [3.0]} if task == "regression" else None,
    }


def export(module: torch.nn.Module) -> bytes:
    return onnx_bytes(module, FEATURES)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_exports_and_matches_onnxruntime(name: str) -> None:
    torch.manual_seed(0)
    spec = make_spec(ARCHITECTURES[name])
    module = build_module(spec).eval()
    session = ort.InferenceSession(export(module), providers=["CPUExecutionProvider"])
    expected_width = FEATURES if spec["task"] == "vae" else 5
    for batch in (1, 7):
        x = np.random.default_rng(batch).normal(size=(batch, FEATURES)).astype(np.float32) * 3
        with torch.no_grad():
            want = module(torch.from_numpy(x)).numpy()
        got = session.run(["output"], {"input": x})[0]
        assert got.shape == (batch, expected_width)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_regression_output_is_in_target_units() -> None:
    module = build_module(make_spec({"kind": "linear"}, task="regression")).eval()
    with torch.no_grad():
        torch.nn.init.zeros_(module.net.weight)  # type: ignore[arg-type]
        torch.nn.init.zeros_(module.net.bias)  # type: ignore[arg-type]
        out = module(torch.ones(3, FEATURES))
    assert out.shape == (3, 1)
    assert torch.allclose(out, torch.full((3, 1), 10.0))  # 0 standardized == the target mean


def test_vae_forward_is_deterministic_in_eval() -> None:
    module = build_module(make_spec(ARCHITECTURES["vae"])).eval()
    x = torch.randn(4, FEATURES)
    with torch.no_grad():
        assert torch.equal(module(x), module(x))


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        ({"kind": "resnet"}, "architecture.kind must be one of"),
        ({"kind": "rnn", "sequence_length": 5}, "does not divide the 16 features"),
        ({"kind": "transformer", "sequence_length": 4, "d_model": 10, "num_heads": 3}, "must divide d_model"),
        ({"kind": "cnn", "channels": 1, "height": 3, "width": 3}, "must equal the 16 features"),
        ({"kind": "cnn", "height": 4, "width": 4, "conv_channels": [2, 2, 2]}, "use at most 2 layers"),
        ({"kind": "mlp", "hidden_sizes": [0]}, "must all be positive"),
        ({"kind": "mlp", "activation": "swish"}, "mlp.activation"),
        ({"kind": "mlp", "dropout": 1.5}, "mlp.dropout"),
    ],
)
def test_bad_architectures_are_refused_with_a_reason(arch: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        validate_spec(make_spec(arch))


def test_defaults_are_filled_in() -> None:
    spec = validate_spec(make_spec({"kind": "transformer"}))
    assert spec["architecture"] == {
        "kind": "transformer",
        "sequence_length": FEATURES,
        "d_model": 32,
        "num_heads": 4,
        "num_layers": 2,
        "dim_feedforward": 64,
        "dropout": 0.0,
    }
