"""Evaluation: accuracy, macro precision/recall/F1 and the confusion matrix; MSE/MAE/R²; the VAE's ELBO.

Metrics are computed in RAW units (what a user of the model sees); ``loss`` is in the standardized units
the optimizer minimizes, so it is comparable with the training loss.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from aiaas_services.modelzoo import StandardizedModel
from aiaas_services.modelzoo.zoo import Vae

EVAL_SEED = 12345  # the VAE's sampling noise during evaluation: fixed, so evaluation is repeatable


@dataclasses.dataclass
class Evaluation:
    """Scalar metrics, plus the confusion matrix (row = true class) for classification."""

    metrics: dict[str, float]
    confusion: list[list[int]] | None = None


def evaluate(model: StandardizedModel, x: np.ndarray, y: np.ndarray, task: str, batch_size: int = 4096) -> Evaluation:
    """Evaluate on numpy arrays (RAW features; labels or targets), in eval mode, without gradients."""
    return evaluate_tensors(model, torch.from_numpy(x), torch.from_numpy(y), task, batch_size)


def evaluate_tensors(
    model: StandardizedModel, x: torch.Tensor, y: torch.Tensor, task: str, batch_size: int = 4096
) -> Evaluation:
    """Evaluate in eval mode, without gradients, in batches. The trainer keeps its validation split as
    tensors on the model's device, so a per-epoch validation converts and copies nothing."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = x.to(device)
    try:
        with torch.no_grad():
            if task == "vae":
                return _evaluate_vae(model, x, batch_size)
            outputs = torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)
    if task == "classification":
        labels = y.to(device=outputs.device, dtype=torch.long)
        num_classes = outputs.shape[1]
        confusion = confusion_matrix(labels.cpu().numpy(), outputs.argmax(1).cpu().numpy(), num_classes)
        precision, recall, f1 = macro_scores(confusion)
        return Evaluation(
            {
                "loss": float(F.cross_entropy(outputs, labels)),
                "accuracy": float(np.trace(confusion)) / max(len(labels), 1),
                "precision_macro": float(precision),
                "recall_macro": float(recall),
                "f1_macro": float(f1),
            },
            confusion.tolist(),
        )
    target = y.cpu().numpy().reshape(len(y), -1).astype(np.float64)
    prediction = outputs.cpu().numpy().astype(np.float64).reshape(target.shape)
    scale = model.output_std.cpu().numpy().astype(np.float64)
    return Evaluation(
        {
            "loss": float((((prediction - target) / scale) ** 2).mean()),
            "mse": float(((prediction - target) ** 2).mean()),
            "mae": float(np.abs(prediction - target).mean()),
            "r2": r2_score(target, prediction),
        }
    )


def confusion_matrix(y: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class); rows are true classes."""
    cells = y.astype(np.int64) * num_classes + predictions.astype(np.int64)
    return np.bincount(cells, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def macro_scores(confusion: np.ndarray) -> tuple[float, float, float]:
    """Macro precision, recall and F1 (a class with no predictions or no samples scores 0, as
    scikit-learn's ``zero_division=0``)."""
    true_positive = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0).astype(np.float64)
    actual = confusion.sum(axis=1).astype(np.float64)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, actual, out=np.zeros_like(true_positive), where=actual > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(true_positive), where=total > 0)
    return float(precision.mean()), float(recall.mean()), float(f1.mean())


def r2_score(target: np.ndarray, prediction: np.ndarray) -> float:
    """Coefficient of determination, averaged over outputs (0 when the target is constant)."""
    residual = ((target - prediction) ** 2).sum(axis=0)
    spread = ((target - target.mean(axis=0)) ** 2).sum(axis=0)
    scores = np.where(spread > 0, 1 - residual / np.where(spread > 0, spread, 1), 0.0)
    return float(scores.mean())


def _evaluate_vae(model: StandardizedModel, x: torch.Tensor, batch_size: int) -> Evaluation:
    vae = model.net
    assert isinstance(vae, Vae)
    generator = torch.Generator(device=x.device).manual_seed(EVAL_SEED)
    recon_sum = kl_sum = 0.0
    for i in range(0, len(x), batch_size):
        recon, kl = vae.elbo_terms(model.standardize(x[i : i + batch_size]), generator)
        recon_sum += float(recon.sum())
        kl_sum += float(kl.sum())
    n = max(len(x), 1)
    recon_mean, kl_mean = recon_sum / n, kl_sum / n
    return Evaluation(
        {
            "loss": recon_mean + vae.beta * kl_mean,
            "elbo": -(recon_mean + kl_mean),
            "reconstruction_error": recon_mean,
            "kl": kl_mean,
        }
    )
