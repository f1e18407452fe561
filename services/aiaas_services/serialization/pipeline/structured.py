"""Structured pruning: remove whole hidden units so the exported graph has smaller weight matrices.

Only connections that are certainly private are cut: inside an ``nn.Sequential`` a layer's output feeds
the next module alone, so a Linear (or Conv2d) whose outputs reach the next Linear (Conv2d) through
elementwise modules only (activations, Dropout, BatchNorm, pooling for convolutions) can lose output units
as long as the consumer loses the matching input columns and any BatchNorm between loses the same
features. The network's last layer (its outputs) is never cut. Units are ranked by the L2 norm of their
incoming weights (and bias) times that of their outgoing weights (times |gamma|/sqrt(var+eps) of a
BatchNorm between), and the weakest ``fraction`` of each hidden layer is removed.
Supported: the model zoo's ``mlp`` and ``cnn`` (conv->conv channels and the fully connected head).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeAlias, cast

import torch
from torch import nn

MAX_FRACTION = 0.9
ELEMENTWISE = (nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Identity, nn.Dropout)
BETWEEN_LINEAR = (*ELEMENTWISE, nn.BatchNorm1d)
BETWEEN_CONV = (*ELEMENTWISE, nn.Dropout2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d)
SUPPORTED_KINDS = ("mlp", "cnn")
Layer: TypeAlias = nn.Linear | nn.Conv2d
WHY_NOT = {
    "linear": "a linear model has no hidden units to remove",
    "rnn": "recurrent cells (rnn/lstm/gru) tie each hidden unit across gates and time steps",
    "transformer": "attention heads and residual connections need head-aware pruning, which is not offered",
    "vae": "the encoder's last layer feeds two heads (mean and log-variance) and the sampling path",
}


class Unsupported(ValueError):
    """The architecture cannot be pruned structurally (the message says which and why)."""


@dataclasses.dataclass
class Outcome:
    """What the prune did: parameters and hidden units before and after, per-layer widths."""

    fraction: float
    params_before: int
    params_after: int
    units_before: int
    units_after: int
    widths: list[str] = dataclasses.field(default_factory=list)  # "64->48" per pruned layer

    @property
    def reached(self) -> float:
        """Share of hidden units actually removed (rounding per layer makes it differ from ``fraction``)."""
        return 1.0 - self.units_after / self.units_before if self.units_before else 0.0

    def settings(self) -> dict[str, str]:
        return {
            "structured_pruning": f"{self.fraction:g}",
            "structured_pruning_reached": f"{self.reached:.4f}",
            "params_before": str(self.params_before),
            "params_after": str(self.params_after),
            "pruned_widths": ",".join(self.widths),
        }


def unsupported_reason(spec: dict[str, Any]) -> str:
    """Empty when the spec's architecture can be pruned structurally, else why not (for INVALID_ARGUMENT)."""
    arch = spec.get("architecture", {})
    kind = str(arch.get("kind", ""))
    if kind not in SUPPORTED_KINDS:
        why = WHY_NOT.get(kind, "only the model zoo's mlp and cnn are supported")
        return f"structured pruning is not offered for architecture {kind!r}: {why}; use mlp or cnn"
    if kind == "mlp" and not arch.get("hidden_sizes"):
        return "structured pruning needs at least one hidden layer; this mlp has none"
    if kind == "cnn" and len(arch.get("conv_channels", [])) < 2 and not arch.get("hidden_sizes"):
        return "structured pruning needs two convolutions or a hidden layer in the head; this cnn has neither"
    return ""


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def prune_model(model: nn.Module, fraction: float) -> Outcome:
    """Prune a model zoo ``StandardizedModel`` (mlp or cnn) in place; raises Unsupported otherwise."""
    net = getattr(model, "net", model)
    name = type(net).__name__.lower()
    if name == "mlp":
        chains = [cast(nn.Sequential, net.layers)]
    elif name == "cnn":
        chains = [cast(nn.Sequential, net.convs), cast(nn.Sequential, net.head)]
    else:
        why = WHY_NOT.get(name, "only the model zoo's mlp and cnn are supported")
        raise Unsupported(f"structured pruning is not offered for architecture {name!r}: {why}")
    before = count_parameters(model)
    outcome = Outcome(fraction, before, before, 0, 0)
    for chain in chains:
        prune_sequential(chain, fraction, outcome)
    if not outcome.units_before:
        raise Unsupported(f"the {name} has no hidden layer whose units can be removed")
    outcome.params_after = count_parameters(model)
    return outcome


def prune_sequential(chain: nn.Sequential, fraction: float, outcome: Outcome | None = None) -> Outcome:
    """Prune every producer -> consumer pair inside ``chain`` in place (see the module docstring)."""
    if not 0.0 <= fraction <= MAX_FRACTION:
        raise ValueError(f"structured pruning fraction must be in [0, {MAX_FRACTION}], got {fraction}")
    own = outcome is None
    outcome = outcome or Outcome(fraction, count_parameters(chain), 0, 0, 0)
    layers = list(chain)
    for i, layer in enumerate(layers):
        pair = _consumer(layers, i)
        if pair is None:
            continue
        producer = cast(Layer, layer)
        between, consumer = pair
        width = _width(producer)
        remove = min(width - 1, int(fraction * width + 0.5))
        keep = _keep(producer, between, consumer, width - remove)
        _slice(producer, between, consumer, keep)
        outcome.units_before += width
        outcome.units_after += len(keep)
        outcome.widths.append(f"{width}->{len(keep)}")
    if own:
        outcome.params_after = count_parameters(chain)
    return outcome


def _consumer(layers: list[nn.Module], i: int) -> tuple[list[nn.Module], Layer] | None:
    """The modules between layer ``i`` and the next layer of its kind, when that connection is prunable."""
    producer = layers[i]
    if isinstance(producer, nn.Linear):
        kind: type[nn.Module] = nn.Linear
        allowed: tuple[type[nn.Module], ...] = BETWEEN_LINEAR
    elif isinstance(producer, nn.Conv2d) and producer.groups == 1:
        kind, allowed = nn.Conv2d, BETWEEN_CONV
    else:
        return None
    between: list[nn.Module] = []
    for layer in layers[i + 1 :]:
        if isinstance(layer, kind) and not (isinstance(layer, nn.Conv2d) and layer.groups != 1):
            return between, cast(Layer, layer)
        if not isinstance(layer, allowed):
            return None
        between.append(layer)
    return None  # the chain's last layer of this kind: its outputs leave the chain


def _width(layer: Layer) -> int:
    return int(layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels)


def _keep(producer: Layer, between: list[nn.Module], consumer: Layer, count: int) -> torch.Tensor:
    """Indices (ascending) of the ``count`` strongest units."""
    with torch.no_grad():
        rows = producer.weight.reshape(producer.weight.shape[0], -1)
        if producer.bias is not None:
            rows = torch.cat([rows, producer.bias.reshape(-1, 1)], dim=1)
        score = rows.norm(dim=1)
        for norm in between:
            if isinstance(norm, nn.BatchNorm1d | nn.BatchNorm2d) and norm.running_var is not None:
                gamma = norm.weight if norm.weight is not None else torch.ones_like(norm.running_var)
                score = score * gamma.abs() / torch.sqrt(norm.running_var + norm.eps)
        columns = consumer.weight.transpose(0, 1).reshape(consumer.weight.shape[1], -1)
        score = score * columns.norm(dim=1)
        order = torch.argsort(score, descending=True, stable=True)
        return torch.sort(order[:count]).values


def _slice(producer: Layer, between: list[nn.Module], consumer: Layer, keep: torch.Tensor) -> None:
    with torch.no_grad():
        producer.weight = nn.Parameter(producer.weight[keep].clone())
        if producer.bias is not None:
            producer.bias = nn.Parameter(producer.bias[keep].clone())
        if isinstance(producer, nn.Linear):
            producer.out_features = len(keep)
        else:
            producer.out_channels = len(keep)
        for norm in between:
            if isinstance(norm, nn.BatchNorm1d | nn.BatchNorm2d):
                _slice_norm(norm, keep)
        consumer.weight = nn.Parameter(consumer.weight[:, keep].clone())
        if isinstance(consumer, nn.Linear):
            consumer.in_features = len(keep)
        else:
            consumer.in_channels = len(keep)


def _slice_norm(norm: nn.BatchNorm1d | nn.BatchNorm2d, keep: torch.Tensor) -> None:
    if norm.weight is not None:
        norm.weight = nn.Parameter(norm.weight[keep].clone())
    if norm.bias is not None:
        norm.bias = nn.Parameter(norm.bias[keep].clone())
    if norm.running_mean is not None and norm.running_var is not None:
        norm.running_mean = norm.running_mean[keep].clone()
        norm.running_var = norm.running_var[keep].clone()
    norm.num_features = len(keep)
