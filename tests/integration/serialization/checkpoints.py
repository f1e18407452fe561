"""Small trained checkpoints in the training service's format (spec.json + weights.safetensors), made
here with the model zoo so the serialization tests do not wait on the training service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

from aiaas_services.datasets import fit_standardization, load_splits
from aiaas_services.modelzoo import build_module, validate_spec

ARCHITECTURES: dict[str, dict[str, Any]] = {
    "linear": {"kind": "linear"},
    "mlp": {"kind": "mlp", "hidden_sizes": [64]},
    "cnn": {"kind": "cnn", "conv_channels": [8, 16]},
    "rnn": {"kind": "rnn", "cell": "gru", "hidden_size": 32, "sequence_length": 8},
    "transformer": {"kind": "transformer", "sequence_length": 8, "d_model": 32, "num_heads": 4, "num_layers": 1},
    "vae": {"kind": "vae", "latent_size": 8, "hidden_sizes": [64]},
}


def train_checkpoint(kind: str, folder: Path, epochs: int = 15, data: dict[str, Any] | None = None) -> Path:
    """Train ``kind`` briefly on digits (or ``data``) and write spec.json + weights.safetensors."""
    data = data or {"sklearn": "digits"}
    splits = load_splits(data, seed=0)
    task = "vae" if kind == "vae" else splits.task
    spec = validate_spec(
        {
            "architecture": ARCHITECTURES[kind],
            "task": task,
            "num_features": splits.num_features,
            "num_classes": splits.num_classes,
            "num_outputs": 1,
            "input_name": "input",
            "output_name": "output",
            "standardization": fit_standardization(splits.x_train),
            "target_standardization": None,
            "data": data,
            "seed": 0,
            "class_names": splits.class_names,
        }
    )
    torch.set_num_threads(1)  # the machine is shared: one thread is faster than oversubscription
    torch.manual_seed(0)
    module = build_module(spec)
    optimizer = torch.optim.Adam(module.parameters(), lr=3e-3)
    x, y = torch.from_numpy(splits.x_train), torch.from_numpy(splits.y_train)
    module.train()
    for _ in range(epochs):
        for start in range(0, len(x), 64):
            optimizer.zero_grad()
            out = module(x[start : start + 64])
            if task == "classification":
                loss = torch.nn.functional.cross_entropy(out, y[start : start + 64])
            elif task == "vae":
                loss = torch.mean((out - x[start : start + 64]) ** 2)
            else:
                loss = torch.mean((out.squeeze(-1) - y[start : start + 64]) ** 2)
            loss.backward()
            optimizer.step()
    module.eval()
    folder.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(
        {k: v.contiguous() for k, v in module.state_dict().items()}, folder / "weights.safetensors"
    )
    (folder / "spec.json").write_text(json.dumps(spec))
    return folder


def accuracy_of(folder: Path) -> float:
    """Test accuracy of a saved classification checkpoint under PyTorch."""
    spec = json.loads((folder / "spec.json").read_text())
    module = build_module(spec)
    module.load_state_dict(safetensors.torch.load_file(folder / "weights.safetensors"))
    splits = load_splits(spec["data"], spec["seed"])
    with torch.no_grad():
        logits = module.eval()(torch.from_numpy(splits.x_test)).numpy()
    return float(np.mean(logits.argmax(1) == splits.y_test))
