"""Per-feature attributions of one prediction (no gRPC).

- **Integrated gradients** (Captum) on a PyTorch module: the path integral of the gradient from the
  baseline to the input, by Gauss-Legendre quadrature in float64. Completeness: the attributions sum to
  f(x) - f(baseline) up to the quadrature error, which Captum returns as the convergence delta.
- **Kernel SHAP** on an ONNX graph (ONNX Runtime, any model): Shapley values of the features, where a
  coalition keeps its features from the input and takes the rest from the baseline. Coalitions are sampled
  from the Shapley kernel (in complementary pairs) and the values solved by weighted least squares with the
  efficiency constraint built in, so they sum to f(x) - f(baseline) exactly (to float rounding).

Completeness, as tested: integrated gradients within ``COMPLETENESS_TOLERANCE`` x max(1, |f(x) - f(b)|)
at the default ``IG_STEPS`` (the gradient of a ReLU network jumps along the path, so quadrature converges
slowly: on the digits MLP 64 steps missed by up to 0.004 of a 0.75 gap); Kernel SHAP to 1e-6 (exact by
construction).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from captum.attr import IntegratedGradients

from aiaas_services.runtime.errors import InvalidArgument

COMPLETENESS_TOLERANCE = 1e-2
IG_STEPS = 256
SHAP_SAMPLES = 2048
MAX_STEPS = 4096
MAX_SAMPLES = 65536


@dataclass
class Attribution:
    """Attributions of one row, and the outputs they explain."""

    method: str
    target: int
    attributions: np.ndarray
    prediction: float
    baseline_prediction: float

    @property
    def completeness_error(self) -> float:
        return abs(float(self.attributions.sum()) - (self.prediction - self.baseline_prediction))


def _target(outputs: np.ndarray, target: int | None) -> int:
    width = outputs.shape[-1] if outputs.ndim > 1 else 1
    if target is None:
        return int(np.argmax(outputs.reshape(-1))) if width > 1 else 0
    if not 0 <= target < width:
        raise InvalidArgument(f"target {target} is outside the model's {width} outputs")
    return target


def integrated_gradients(
    module: Any, x: np.ndarray, baseline: np.ndarray, target: int | None, steps: int = IG_STEPS
) -> Attribution:
    """Integrated gradients of ``module`` (a torch.nn.Module taking [batch, features]) at one row."""
    if not 2 <= steps <= MAX_STEPS:
        raise InvalidArgument(f"steps must be 2..{MAX_STEPS} for integrated gradients, got {steps}")
    model = module.double().eval()
    inputs = torch.from_numpy(x.astype(np.float64)).reshape(1, -1)
    base = torch.from_numpy(baseline.astype(np.float64)).reshape(1, -1)
    with torch.no_grad():
        outputs = model(torch.cat([inputs, base])).reshape(2, -1).numpy()
    chosen = _target(outputs[:1], target)
    explainer = IntegratedGradients(model)
    attributions = explainer.attribute(inputs, baselines=base, target=chosen, n_steps=steps, method="gausslegendre")
    return Attribution(
        "integrated_gradients",
        chosen,
        attributions.detach().numpy().reshape(-1),
        float(outputs[0, chosen]),
        float(outputs[1, chosen]),
    )


def _shapley_masks(features: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Coalition masks (rows x features), sizes drawn from the Shapley kernel, in complementary pairs."""
    sizes = np.arange(1, features)
    weights = (features - 1) / (sizes * (features - sizes))
    half = max(1, samples // 2)
    chosen = rng.choice(sizes, size=half, p=weights / weights.sum())
    masks = np.zeros((half, features), dtype=bool)
    for row, size in enumerate(chosen):
        masks[row, rng.choice(features, size=size, replace=False)] = True
    return np.concatenate([masks, ~masks])


def kernel_shap(
    session: Any, x: np.ndarray, baseline: np.ndarray, target: int | None, samples: int = SHAP_SAMPLES, seed: int = 0
) -> Attribution:
    """Kernel SHAP of the first output of an ONNX Runtime session (first input [batch, features]) at one row."""
    features = x.size
    if features < 2:
        raise InvalidArgument("Kernel SHAP needs at least 2 input features")
    if not 16 <= samples <= MAX_SAMPLES:
        raise InvalidArgument(f"steps must be 16..{MAX_SAMPLES} coalitions for Kernel SHAP, got {samples}")
    name = session.get_inputs()[0].name

    def run(rows: np.ndarray) -> np.ndarray:
        outputs = []
        for start in range(0, len(rows), 1024):
            out = session.run(None, {name: rows[start : start + 1024].astype(np.float32)})[0]
            outputs.append(np.asarray(out, dtype=np.float64).reshape(len(rows[start : start + 1024]), -1))
        return np.concatenate(outputs)

    ends = run(np.stack([x.reshape(-1), baseline.reshape(-1)]))
    chosen = _target(ends[:1], target)
    fx, fb = float(ends[0, chosen]), float(ends[1, chosen])
    masks = _shapley_masks(features, samples, np.random.default_rng(seed))
    values = run(np.where(masks, x.reshape(1, -1), baseline.reshape(1, -1)))[:, chosen] - fb
    # Efficiency as a constraint: the last feature's value is (fx - fb) minus the others', so solve for
    # the first features - 1 only (the shap package's reduction).
    z = masks.astype(np.float64)
    design = z[:, :-1] - z[:, -1:]
    response = values - z[:, -1] * (fx - fb)
    solved, *_ = np.linalg.lstsq(design, response, rcond=None)
    phi = np.append(solved, (fx - fb) - solved.sum())
    return Attribution("kernel_shap", chosen, phi, fx, fb)


def check_row(inputs: list[float], baseline: list[float], features: int) -> tuple[np.ndarray, np.ndarray]:
    """The input row and baseline as arrays of the model's width; InvalidArgument when they do not fit."""
    if len(inputs) != features:
        raise InvalidArgument(f"the model takes {features} input features, got {len(inputs)}")
    if baseline and len(baseline) != features:
        raise InvalidArgument(f"baseline has {len(baseline)} values; the model takes {features}")
    x = np.asarray(inputs, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64) if baseline else np.zeros(features)
    if not (np.isfinite(x).all() and np.isfinite(b).all()):
        raise InvalidArgument("inputs and baseline must be finite numbers")
    return x, b


def onnx_session(path: Path) -> Any:
    """A CPU ONNX Runtime session for explanations (1 thread: this runs beside export jobs)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
