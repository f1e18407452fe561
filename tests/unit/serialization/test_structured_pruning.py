"""Structured pruning on model zoo modules (no services): smaller shapes, BatchNorm sliced, a pruned network
equal to the original with the removed units silenced, nothing removed = bit-identical, refusals."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from aiaas_services.modelzoo import build_module, validate_spec
from aiaas_services.runtime.errors import InvalidArgument
from aiaas_services.serialization import options as request_options
from aiaas_services.serialization.pipeline import run, structured
from aiaas_services.serialization.records import ExportSpec
from aiaas_services.serialization.settings import SerializationSettings

FEATURES = 64  # digits-sized: 8x8 images


def model(architecture: dict[str, Any], classes: int = 10) -> nn.Module:
    spec = validate_spec(
        {"architecture": architecture, "task": "classification", "num_features": FEATURES, "num_classes": classes}
    )
    torch.manual_seed(0)
    return build_module(spec).eval()


def kept_rows(original: torch.Tensor, pruned: torch.Tensor) -> list[int]:
    """Which of the original's output rows the pruned layer kept (rows are copied, not changed)."""
    return [i for i, row in enumerate(original) if any(torch.equal(row, other) for other in pruned)]


def test_pruned_mlp_has_the_expected_smaller_shapes() -> None:
    mlp = model({"kind": "mlp", "hidden_sizes": [64, 32]})
    before = structured.count_parameters(mlp)
    outcome = structured.prune_model(mlp, 0.25)
    assert [tuple(m.weight.shape) for m in linears(mlp)] == [(48, 64), (24, 48), (10, 24)]
    assert [m.bias.shape[0] for m in linears(mlp)] == [48, 24, 10]
    assert outcome.widths == ["64->48", "32->24"]
    assert outcome.params_before == before == 64 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10
    assert outcome.params_after == structured.count_parameters(mlp) == 48 * 64 + 48 + 48 * 24 + 24 + 24 * 10 + 10
    assert outcome.reached == pytest.approx(0.25)
    assert mlp(torch.randn(3, FEATURES)).shape == (3, 10)


@pytest.mark.parametrize("fraction", [0.0, 0.001])
def test_removing_no_unit_gives_bit_identical_outputs(fraction: float) -> None:
    mlp = model({"kind": "mlp", "hidden_sizes": [64, 32]})
    x = torch.randn(50, FEATURES) * 3 + 1
    with torch.no_grad():
        want = mlp(x)
        outcome = structured.prune_model(mlp, fraction)
        got = mlp(x)
    assert outcome.params_after == outcome.params_before and outcome.reached == 0.0
    assert torch.equal(got, want)


def linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def norms(module: nn.Module) -> list[nn.BatchNorm1d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm1d)]


def silence(consumer: nn.Linear | nn.Conv2d, width: int, keep: list[int]) -> None:
    """Zero the consumer's input columns of the units not kept (they no longer reach the output)."""
    silenced = torch.ones(width, dtype=torch.bool)
    silenced[keep] = False
    with torch.no_grad():
        consumer.weight[:, silenced] = 0.0


def test_pruned_mlp_equals_the_original_with_removed_units_silenced() -> None:
    mlp = model({"kind": "mlp", "hidden_sizes": [40]})
    original = copy.deepcopy(mlp)
    structured.prune_model(mlp, 0.5)
    keep = kept_rows(linears(original)[0].weight, linears(mlp)[0].weight)
    assert len(keep) == 20
    silence(linears(original)[-1], 40, keep)
    x = torch.randn(30, FEATURES)
    with torch.no_grad():
        torch.testing.assert_close(mlp(x), original(x), rtol=1e-5, atol=1e-5)


def test_batchnorm_between_is_sliced_with_its_running_statistics() -> None:
    torch.manual_seed(1)
    chain = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3)).eval()
    norm = norms(chain)[0]
    assert norm.running_mean is not None and norm.running_var is not None
    with torch.no_grad():
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
        norm.weight.uniform_(0.5, 1.5)
    original = copy.deepcopy(chain)
    outcome = structured.prune_sequential(chain, 0.5)
    sliced, before = norms(chain)[0], norms(original)[0]
    assert sliced.running_mean is not None and sliced.running_var is not None and before.running_var is not None
    assert outcome.widths == ["16->8"] and sliced.num_features == 8
    assert sliced.running_mean.shape == sliced.running_var.shape == sliced.weight.shape == (8,)
    keep = kept_rows(linears(original)[0].weight, linears(chain)[0].weight)
    assert torch.equal(sliced.running_var, before.running_var[keep])
    silence(linears(original)[-1], 16, keep)
    x = torch.randn(20, 8)
    with torch.no_grad():
        torch.testing.assert_close(chain(x), original(x), rtol=1e-5, atol=1e-5)


def test_cnn_prunes_conv_channels_feeding_a_conv_and_keeps_the_last_conv() -> None:
    cnn = model({"kind": "cnn", "conv_channels": [8, 16], "channels": 1, "height": 8, "width": 8})
    original = copy.deepcopy(cnn)
    outcome = structured.prune_model(cnn, 0.5)
    shapes = [tuple(c.weight.shape) for c in convs(cnn)]
    assert shapes == [(4, 1, 3, 3), (16, 4, 3, 3)]  # the last conv feeds flatten: kept whole
    assert outcome.widths == ["8->4"] and outcome.params_after < outcome.params_before
    keep = kept_rows(convs(original)[0].weight, convs(cnn)[0].weight)
    silence(convs(original)[1], 8, keep)
    x = torch.randn(5, FEATURES)
    with torch.no_grad():
        torch.testing.assert_close(cnn(x), original(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("architecture", "words"),
    [
        ({"kind": "rnn", "cell": "gru", "hidden_size": 8, "sequence_length": 8}, "'rnn'"),
        ({"kind": "transformer", "sequence_length": 8, "d_model": 8, "num_heads": 2, "num_layers": 1}, "attention"),
        ({"kind": "vae", "latent_size": 4, "hidden_sizes": [16]}, "two heads"),
        ({"kind": "linear"}, "no hidden units"),
        ({"kind": "cnn", "conv_channels": [8], "channels": 1, "height": 8, "width": 8}, "neither"),
    ],
)
def test_architectures_it_cannot_prune_are_named(architecture: dict[str, Any], words: str) -> None:
    task = "vae" if architecture["kind"] == "vae" else "classification"
    spec = validate_spec({"architecture": architecture, "task": task, "num_features": FEATURES, "num_classes": 10})
    assert words in structured.unsupported_reason(spec)
    with pytest.raises(structured.Unsupported):
        structured.prune_model(build_module(spec), 0.25)


@pytest.mark.parametrize("fraction", [-0.1, 0.95, 1.0])
def test_fraction_outside_0_to_0_9_is_invalid_argument(fraction: float) -> None:
    with pytest.raises(InvalidArgument, match="structured_pruning must be in"):
        request_options.pipeline_options(ExportSpec(structured_pruning=fraction), SerializationSettings())


def test_export_is_smaller_and_proven_against_the_unpruned_outputs(tmp_path: Path) -> None:
    mlp = model({"kind": "mlp", "hidden_sizes": [64]})
    x = np.random.default_rng(0).standard_normal((40, FEATURES)).astype(np.float32)
    with torch.no_grad():
        unpruned = mlp(torch.from_numpy(x)).double().numpy()
    data = run.ProofData(calibration={"input": x}, proof={"input": x}, y=unpruned.argmax(1), task="classification")
    options = run.PipelineOptions(structured_pruning=0.5, latency_repeats=2)
    prepared = run.from_module(mlp, FEATURES, data, options, tmp_path)
    np.testing.assert_array_equal(prepared.reference["output"], unpruned)
    assert prepared.export_settings["params_after"] == str(32 * 64 + 32 + 32 * 10 + 10)
    graph = onnx.load(str(prepared.fp32)).graph
    shapes = sorted(tuple(i.dims) for i in graph.initializer if len(i.dims) == 2)
    assert shapes == sorted([(64, 32), (32, 10)]) or shapes == sorted([(32, 64), (10, 32)])
