"""The PNG of training curves registered beside the checkpoint (matplotlib's Agg canvas: no display, no
pyplot state, so it is quick and safe in a worker process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_curves(history: list[dict[str, Any]], path: Path, title: str) -> None:
    """Loss (train and validation) and the validation task metric, per epoch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [record["epoch"] for record in history]
    figure = Figure(figsize=(9, 3.5), dpi=72)
    FigureCanvasAgg(figure)
    loss_axis, metric_axis = figure.subplots(1, 2)
    loss_axis.plot(epochs, [r["train"].get("loss") for r in history], label="train")
    loss_axis.plot(epochs, [r["validation"].get("loss") for r in history], label="validation")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("loss")
    loss_axis.legend()
    validation = history[-1]["validation"] if history else {}
    name = next((m for m in ("accuracy", "r2", "elbo") if m in validation), "loss")
    metric_axis.plot(epochs, [r["validation"].get(name) for r in history], color="tab:green")
    metric_axis.set_xlabel("epoch")
    metric_axis.set_ylabel(f"validation {name}")
    figure.suptitle(title)
    figure.savefig(path, format="png")
