"""Torch modules for every architecture, wrapped so that standardization lives inside the graph.

``build_module(spec)`` returns a ``StandardizedModel``: it takes RAW features ``[batch, num_features]``
(float32), standardizes them with registered buffers (so the exported ONNX graph needs no outside
preprocessing), runs the network and returns logits (classification), predictions in target units
(regression) or the reconstruction in raw feature units (VAE, deterministic: decodes the latent mean).
All modules are written with ONNX export in mind: no op whose export freezes the batch size.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import nn

from aiaas_services.modelzoo.specs import output_width, validate_spec


def _activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "silu": nn.SiLU}[name]()


def _mlp(widths: list[int], activation: str, dropout: float) -> list[nn.Module]:
    """Hidden layers only (Linear, activation, dropout) from widths[0] through widths[-1]."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(widths):
        layers += [nn.Linear(fan_in, fan_out), _activation(activation)]
        if dropout:
            layers.append(nn.Dropout(dropout))
    return layers


class Mlp(nn.Module):
    """Fully connected network."""

    def __init__(self, num_features: int, outputs: int, arch: dict[str, Any]) -> None:
        super().__init__()
        widths = [num_features, *arch["hidden_sizes"]]
        self.layers = nn.Sequential(*_mlp(widths, arch["activation"], arch["dropout"]), nn.Linear(widths[-1], outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Cnn(nn.Module):
    """Small image network: (3x3 conv, ReLU, 2x2 max-pool) per layer, then fully connected layers."""

    def __init__(self, outputs: int, arch: dict[str, Any]) -> None:
        super().__init__()
        self.image_shape = (arch["channels"], arch["height"], arch["width"])
        convs: list[nn.Module] = []
        channels, height, width = self.image_shape
        for out_channels in arch["conv_channels"]:
            convs += [nn.Conv2d(channels, out_channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels, height, width = out_channels, height // 2, width // 2
        self.convs = nn.Sequential(*convs)
        widths = [channels * height * width, *arch["hidden_sizes"]]
        head: list[nn.Module] = _mlp(widths, "relu", 0.0)
        if arch["dropout"]:
            head.append(nn.Dropout(arch["dropout"]))
        self.head = nn.Sequential(*head, nn.Linear(widths[-1], outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images = x.reshape(-1, *self.image_shape)
        return self.head(torch.flatten(self.convs(images), 1))


class Rnn(nn.Module):
    """RNN/LSTM/GRU over ``sequence_length`` steps; the last step's output feeds the head."""

    def __init__(self, num_features: int, outputs: int, arch: dict[str, Any]) -> None:
        super().__init__()
        self.steps = arch["sequence_length"]
        self.step_features = num_features // self.steps
        cell = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[arch["cell"]]
        self.rnn = cell(
            self.step_features,
            arch["hidden_size"],
            num_layers=arch["num_layers"],
            batch_first=True,
            bidirectional=arch["bidirectional"],
            dropout=arch["dropout"] if arch["num_layers"] > 1 else 0.0,
        )
        directions = 2 if arch["bidirectional"] else 1
        self.head = nn.Linear(directions * arch["hidden_size"], outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sequence = x.reshape(-1, self.steps, self.step_features)
        out, _ = self.rnn(sequence)
        return self.head(out[:, -1, :])


class EncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer written with plain ops (exports with a dynamic batch axis,
    unlike ``nn.TransformerEncoderLayer``'s fused inference fast path)."""

    def __init__(self, d_model: int, heads: int, feedforward: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = d_model // heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, feedforward), nn.GELU(), nn.Linear(feedforward, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps, d_model = x.shape[1], x.shape[2]
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        q = q.reshape(-1, steps, self.heads, self.head_dim).transpose(1, 2)
        k = k.reshape(-1, steps, self.heads, self.head_dim).transpose(1, 2)
        v = v.reshape(-1, steps, self.heads, self.head_dim).transpose(1, 2)
        weights = torch.softmax(q @ k.transpose(-2, -1) * (1.0 / math.sqrt(self.head_dim)), dim=-1)
        attended = (self.dropout(weights) @ v).transpose(1, 2).reshape(-1, steps, d_model)
        x = x + self.dropout(self.proj(attended))
        return x + self.dropout(self.ff(self.norm2(x)))


class Transformer(nn.Module):
    """Transformer encoder classifier/regressor: features become ``sequence_length`` tokens, a learned
    position embedding is added, and the mean of the encoded tokens feeds the head."""

    def __init__(self, num_features: int, outputs: int, arch: dict[str, Any]) -> None:
        super().__init__()
        self.steps = arch["sequence_length"]
        self.step_features = num_features // self.steps
        d_model = arch["d_model"]
        self.embed = nn.Linear(self.step_features, d_model)
        self.position = nn.Parameter(torch.zeros(1, self.steps, d_model))
        nn.init.normal_(self.position, std=0.02)
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, arch["num_heads"], arch["dim_feedforward"], arch["dropout"])
            for _ in range(arch["num_layers"])
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x.reshape(-1, self.steps, self.step_features)) + self.position
        for layer in self.layers:
            tokens = layer(tokens)
        return self.head(self.norm(tokens).mean(dim=1))


class Vae(nn.Module):
    """Variational autoencoder on (standardized) features; ``forward`` decodes the latent mean."""

    def __init__(self, num_features: int, arch: dict[str, Any]) -> None:
        super().__init__()
        hidden = arch["hidden_sizes"]
        self.beta = float(arch["beta"])
        self.encoder = nn.Sequential(*_mlp([num_features, *hidden], "relu", 0.0))
        self.mean = nn.Linear(hidden[-1], arch["latent_size"])
        self.log_var = nn.Linear(hidden[-1], arch["latent_size"])
        widths = [arch["latent_size"], *reversed(hidden)]
        self.decoder = nn.Sequential(*_mlp(widths, "relu", 0.0), nn.Linear(widths[-1], num_features))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mean(h), self.log_var(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x)[0])

    def elbo_terms(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample reconstruction error (Gaussian, unit variance: 0.5*squared error summed over
        features) and KL divergence to N(0, I), using one reparameterized sample."""
        mean, log_var = self.encode(x)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        z = mean + torch.exp(0.5 * log_var) * noise
        reconstruction = self.decoder(z)
        recon_error = 0.5 * ((reconstruction - x) ** 2).sum(dim=1)
        kl = -0.5 * (1 + log_var - mean**2 - log_var.exp()).sum(dim=1)
        return recon_error, kl


def _standardization_buffers(block: dict[str, Any] | None, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    if block is None:
        return torch.zeros(width), torch.ones(width)
    mean = torch.tensor(block["mean"], dtype=torch.float32)
    std = torch.tensor(block["std"], dtype=torch.float32)
    return mean, std


class StandardizedModel(nn.Module):
    """RAW features in, task output out; standardization of inputs (and of regression targets) are
    buffers, so they are saved in the weights and folded into the exported graph."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.task: str = spec["task"]
        features = int(spec["num_features"])
        outputs = output_width(spec)
        arch = spec["architecture"]
        net: nn.Module
        kind = arch["kind"]
        if kind == "linear":
            net = nn.Linear(features, outputs)
        elif kind == "mlp":
            net = Mlp(features, outputs, arch)
        elif kind == "cnn":
            net = Cnn(outputs, arch)
        elif kind == "rnn":
            net = Rnn(features, outputs, arch)
        elif kind == "transformer":
            net = Transformer(features, outputs, arch)
        else:
            net = Vae(features, arch)
        self.net = net
        mean, std = _standardization_buffers(spec.get("standardization"), features)
        self.register_buffer("input_mean", mean)
        self.register_buffer("input_std", std)
        # regression predictions are made in standardized target units; the VAE reconstructs
        # standardized features: both are mapped back to raw units on the way out
        if self.task == "vae":
            out_mean, out_std = mean.clone(), std.clone()
        else:
            out_mean, out_std = _standardization_buffers(spec.get("target_standardization"), outputs)
            if self.task == "classification":
                out_mean, out_std = torch.zeros(outputs), torch.ones(outputs)
        self.register_buffer("output_mean", out_mean)
        self.register_buffer("output_std", out_std)

    input_mean: torch.Tensor
    input_std: torch.Tensor
    output_mean: torch.Tensor
    output_std: torch.Tensor

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """RAW features -> the standardized features the network sees."""
        return (x - self.input_mean) / self.input_std

    def forward_standardized(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output in standardized units (what the training loss compares)."""
        return self.net(self.standardize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.forward_standardized(x)
        if self.task == "classification":
            return out
        return out * self.output_std + self.output_mean


def build_module(spec: dict[str, Any]) -> StandardizedModel:
    """Build the (untrained) module a spec describes; load ``weights.safetensors`` into it to restore
    a checkpoint. Raises SpecError for a spec that cannot be built."""
    return StandardizedModel(validate_spec(spec))


def checkpoint_spec(
    architecture: dict[str, Any],
    *,
    task: str,
    num_features: int,
    num_classes: int,
    num_outputs: int = 1,
    standardization: dict[str, list[float]] | None = None,
    target_standardization: dict[str, list[float]] | None = None,
    data: dict[str, Any] | None = None,
    seed: int = 0,
    class_names: list[str] | None = None,
) -> dict[str, Any]:
    """The full, validated JSON spec for an architecture (``architecture_from_proto``'s form) and its data.

    ``task`` is the data's task; a VAE architecture turns it into ``"vae"``.
    """
    arch = dict(architecture)
    spec_task = "vae" if arch["kind"] == "vae" else task
    spec: dict[str, Any] = {
        "architecture": arch,
        "task": spec_task,
        "num_features": int(num_features),
        "num_classes": int(num_classes) if spec_task == "classification" else 0,
        "num_outputs": int(num_outputs) if spec_task == "regression" else 0,
        "input_name": "input",
        "output_name": "output",
        "standardization": standardization,
        "target_standardization": target_standardization if spec_task == "regression" else None,
        "data": data or {},
        "seed": int(seed),
        "class_names": list(class_names or []),
    }
    return validate_spec(spec)
