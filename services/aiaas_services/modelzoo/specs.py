"""The JSON model spec: defaults, validation, and conversion from the training request.

A spec is a plain dict (it is stored as ``spec.json`` beside the weights)::

    {"architecture": {"kind": "mlp", "hidden_sizes": [64], "activation": "relu", "dropout": 0.0},
     "task": "classification", "num_features": 64, "num_classes": 10, "num_outputs": 10,
     "input_name": "input", "output_name": "output",
     "standardization": {"mean": [...], "std": [...]} | None,
     "target_standardization": {"mean": [...], "std": [...]} | None,   # regression only
     "data": {...DataSpec as JSON...}, "seed": 0, "class_names": [...]}

Every default is resolved when the spec is made, so a stored spec says exactly what was built.
This module needs neither torch nor gRPC.
"""

from __future__ import annotations

import math
from typing import Any

ARCHITECTURE_KINDS = ("linear", "mlp", "cnn", "rnn", "transformer", "vae")
ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid", "silu")
RNN_CELLS = ("rnn", "lstm", "gru")
TASKS = ("classification", "regression", "vae")


class SpecError(ValueError):
    """A model spec that cannot be built; the message names the field and the fix."""


def _positive_ints(values: Any, field: str) -> list[int]:
    try:
        result = [int(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{field} must be a list of integers") from exc
    if any(v <= 0 for v in result):
        raise SpecError(f"{field} must all be positive, got {result}")
    return result


def _dropout(value: Any, field: str) -> float:
    dropout = float(value or 0.0)
    if not 0.0 <= dropout < 1.0:
        raise SpecError(f"{field} must be in [0, 1), got {dropout}")
    return dropout


def _sequence_length(arch: dict[str, Any], num_features: int, kind: str) -> int:
    length = int(arch.get("sequence_length") or num_features)
    if length <= 0:
        raise SpecError(f"{kind}.sequence_length must be positive, got {length}")
    if num_features % length:
        raise SpecError(
            f"{kind}.sequence_length={length} does not divide the {num_features} features; "
            f"choose a divisor of {num_features}"
        )
    return length


def normalize_architecture(arch: dict[str, Any], num_features: int) -> dict[str, Any]:
    """Fill in defaults and check an architecture against the data's feature count.

    Raises SpecError with an actionable message when the architecture cannot work on this data.
    """
    kind = str(arch.get("kind", ""))
    if kind not in ARCHITECTURE_KINDS:
        raise SpecError(f"architecture.kind must be one of {', '.join(ARCHITECTURE_KINDS)}, got {kind!r}")
    if num_features <= 0:
        raise SpecError(f"the data has no features (num_features={num_features})")
    if kind == "linear":
        return {"kind": "linear"}
    if kind == "mlp":
        activation = str(arch.get("activation") or "relu")
        if activation not in ACTIVATIONS:
            raise SpecError(f"mlp.activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        return {
            "kind": "mlp",
            "hidden_sizes": _positive_ints(arch.get("hidden_sizes") or [64], "mlp.hidden_sizes"),
            "activation": activation,
            "dropout": _dropout(arch.get("dropout"), "mlp.dropout"),
        }
    if kind == "cnn":
        channels = int(arch.get("channels") or 1)
        height = int(arch.get("height") or 0)
        width = int(arch.get("width") or 0)
        if not height and not width:
            side = math.isqrt(num_features // channels)
            height = width = side
        elif not width and height:
            width = num_features // (channels * height)
        elif not height:
            height = num_features // (channels * width)
        if channels <= 0 or height <= 0 or width <= 0 or channels * height * width != num_features:
            raise SpecError(
                f"cnn.channels*height*width = {channels}*{height}*{width} must equal the {num_features} features"
            )
        conv = _positive_ints(arch.get("conv_channels") or [8, 16], "cnn.conv_channels")
        if min(height, width) >> len(conv) < 1:
            raise SpecError(
                f"cnn: {len(conv)} conv layers each halve the {height}x{width} image; use at most "
                f"{int(math.log2(min(height, width)))} layers"
            )
        return {
            "kind": "cnn",
            "channels": channels,
            "height": height,
            "width": width,
            "conv_channels": conv,
            "hidden_sizes": _positive_ints(arch.get("hidden_sizes") or [], "cnn.hidden_sizes"),
            "dropout": _dropout(arch.get("dropout"), "cnn.dropout"),
        }
    if kind == "rnn":
        cell = str(arch.get("cell") or "lstm")
        if cell not in RNN_CELLS:
            raise SpecError(f"rnn.cell must be one of {', '.join(RNN_CELLS)}, got {cell!r}")
        hidden = int(arch.get("hidden_size") or 32)
        layers = int(arch.get("num_layers") or 1)
        if hidden <= 0 or layers <= 0:
            raise SpecError("rnn.hidden_size and rnn.num_layers must be positive")
        return {
            "kind": "rnn",
            "cell": cell,
            "hidden_size": hidden,
            "num_layers": layers,
            "sequence_length": _sequence_length(arch, num_features, "rnn"),
            "bidirectional": bool(arch.get("bidirectional", False)),
            "dropout": _dropout(arch.get("dropout"), "rnn.dropout"),
        }
    if kind == "transformer":
        d_model = int(arch.get("d_model") or 32)
        heads = int(arch.get("num_heads") or 4)
        layers = int(arch.get("num_layers") or 2)
        feedforward = int(arch.get("dim_feedforward") or 2 * d_model)
        if min(d_model, heads, layers, feedforward) <= 0:
            raise SpecError("transformer d_model, num_heads, num_layers and dim_feedforward must be positive")
        if d_model % heads:
            raise SpecError(f"transformer.num_heads={heads} must divide d_model={d_model}")
        return {
            "kind": "transformer",
            "sequence_length": _sequence_length(arch, num_features, "transformer"),
            "d_model": d_model,
            "num_heads": heads,
            "num_layers": layers,
            "dim_feedforward": feedforward,
            "dropout": _dropout(arch.get("dropout"), "transformer.dropout"),
        }
    # vae
    latent = int(arch.get("latent_size") or 8)
    if latent <= 0:
        raise SpecError(f"vae.latent_size must be positive, got {latent}")
    beta = float(arch.get("beta") or 1.0)  # 0 means "default" in the proto
    if beta < 0:
        raise SpecError(f"vae.beta must be >= 0, got {beta}")
    return {
        "kind": "vae",
        "latent_size": latent,
        "hidden_sizes": _positive_ints(arch.get("hidden_sizes") or [64], "vae.hidden_sizes"),
        "beta": beta,
    }


def output_width(spec: dict[str, Any]) -> int:
    """Width of the module's output: classes, regression targets, or features for the VAE."""
    task = spec.get("task")
    if task == "classification":
        return int(spec["num_classes"])
    if task == "vae":
        return int(spec["num_features"])
    return int(spec.get("num_outputs") or 1)


def validate_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Check a whole spec and return it with its architecture normalized (defaults filled in)."""
    if not isinstance(spec, dict):
        raise SpecError("the spec must be a JSON object")
    task = spec.get("task")
    if task not in TASKS:
        raise SpecError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    num_features = int(spec.get("num_features") or 0)
    arch = normalize_architecture(dict(spec.get("architecture") or {}), num_features)
    if (arch["kind"] == "vae") != (task == "vae"):
        raise SpecError("the vae architecture goes with task 'vae' (and only it)")
    if task == "classification" and int(spec.get("num_classes") or 0) < 2:
        raise SpecError(f"classification needs at least 2 classes, got {spec.get('num_classes')}")
    for key in ("standardization", "target_standardization"):
        block = spec.get(key)
        if block is None:
            continue
        width = num_features if key == "standardization" else output_width(spec)
        if len(block.get("mean", [])) != width or len(block.get("std", [])) != width:
            raise SpecError(f"{key} must hold {width} means and {width} stds")
        if any(float(s) <= 0 for s in block["std"]):
            raise SpecError(f"{key}.std values must be positive")
    return {**spec, "architecture": arch}


def architecture_from_proto(architecture: Any) -> dict[str, Any]:
    """The JSON architecture of a ``aiaas.training.v1.Architecture`` message (defaults not yet filled)."""
    kind = architecture.WhichOneof("kind")
    if kind is None:
        raise SpecError("spec.architecture is required: set one of linear, mlp, cnn, rnn, transformer, vae")
    if kind == "linear":
        return {"kind": "linear"}
    if kind == "mlp":
        m = architecture.mlp
        return {
            "kind": "mlp",
            "hidden_sizes": list(m.hidden_sizes),
            "activation": _enum_suffix(m.DESCRIPTOR.fields_by_name["activation"], m.activation, "relu"),
            "dropout": m.dropout,
        }
    if kind == "cnn":
        c = architecture.cnn
        return {
            "kind": "cnn",
            "channels": c.channels,
            "height": c.height,
            "width": c.width,
            "conv_channels": list(c.conv_channels),
            "hidden_sizes": list(c.hidden_sizes),
            "dropout": c.dropout,
        }
    if kind == "rnn":
        r = architecture.rnn
        return {
            "kind": "rnn",
            "cell": _enum_suffix(r.DESCRIPTOR.fields_by_name["cell"], r.cell, "lstm"),
            "hidden_size": r.hidden_size,
            "num_layers": r.num_layers,
            "sequence_length": r.sequence_length,
            "bidirectional": r.bidirectional,
            "dropout": r.dropout,
        }
    if kind == "transformer":
        t = architecture.transformer
        return {
            "kind": "transformer",
            "sequence_length": t.sequence_length,
            "d_model": t.d_model,
            "num_heads": t.num_heads,
            "num_layers": t.num_layers,
            "dim_feedforward": t.dim_feedforward,
            "dropout": t.dropout,
        }
    v = architecture.vae
    return {"kind": "vae", "latent_size": v.latent_size, "hidden_sizes": list(v.hidden_sizes), "beta": v.beta}


def _enum_suffix(field: Any, number: int, default: str) -> str:
    """``ACTIVATION_GELU`` -> ``gelu``; UNSPECIFIED -> the documented default."""
    name: str = field.enum_type.values_by_number[number].name
    # enum values are <ENUM_NAME>_<VALUE> (RnnCell -> RNN_CELL_GRU); drop the enum's own words
    suffix = "_".join(name.split("_")[len(_camel_words(field.enum_type.name)) :]).lower()
    return default if suffix == "unspecified" else suffix


def _camel_words(name: str) -> list[str]:
    words: list[str] = []
    for ch in name:
        if ch.isupper() or not words:
            words.append(ch)
        else:
            words[-1] += ch
    return words
