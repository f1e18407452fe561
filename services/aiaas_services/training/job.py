"""One training job from request to files on disk (runs inside a worker process; no gRPC).

``run_job`` loads the data, builds the model, trains it (resuming from the epoch checkpoint when asked),
evaluates it on the test split, and writes what the registry will receive into ``<job dir>/result``:
``weights.safetensors``, ``spec.json``, ``curves.png``, ``reference.json`` (reference statistics for drift
monitoring) and ``result.json`` (test metrics, confusion matrix, dataset digest). With world_size > 1 it
runs once per DDP rank; only rank 0 writes and reports.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from opentelemetry import trace

from aiaas_services.datasets import Splits, fit_standardization, load_splits
from aiaas_services.modelzoo import build_module, checkpoint_spec
from aiaas_services.monitoring.drift import reference_stats
from aiaas_services.training.curves import plot_curves
from aiaas_services.training.evaluation import evaluate
from aiaas_services.training.paths import DATASET_FILE, RESULT_DIR, JobRequest
from aiaas_services.training.spec import JobSpec
from aiaas_services.training.tensorfile import write_safetensors
from aiaas_services.training.trainer import Distributed, Hooks, Trainer, configure_torch, seed_everything

tracer = trace.get_tracer(__name__)


def pick_device(requested: str) -> torch.device:
    """ "auto" means CUDA when there is one; asking for CUDA without one is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} was asked for but this machine has no CUDA device")
    return torch.device(requested)


def model_spec_for(spec: JobSpec, splits: Splits) -> dict[str, Any]:
    """The checkpoint's spec.json: architecture, task, shapes, standardization, data and seed."""
    standardization = None if spec.data.get("no_standardize") else fit_standardization(splits.x_train)
    target_standardization = None
    if splits.task == "regression":
        target_standardization = fit_standardization(splits.y_train.reshape(len(splits.y_train), -1))
    return checkpoint_spec(
        spec.architecture,
        task=splits.task,
        num_features=splits.num_features,
        num_classes=splits.num_classes,
        num_outputs=splits.num_outputs,
        standardization=standardization,
        target_standardization=target_standardization,
        data=spec.data,
        seed=spec.train.seed,
        class_names=splits.class_names,
    )


def run_job(request: JobRequest, hooks: Hooks, dist: Distributed | None = None) -> dict[str, Any]:
    """Train, evaluate and write the result files; returns the result summary (rank 0) or {}."""
    if request.spec.text is not None:
        from aiaas_services.training.text.job import run_text_job  # transformers: only when a text job runs

        return run_text_job(request, hooks)
    dist = dist or Distributed()
    configure_torch(request.torch_threads)
    spec = request.spec
    config = spec.train
    job_dir = Path(request.job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    payload_path = job_dir / DATASET_FILE
    payload = payload_path.read_bytes() if payload_path.exists() else None
    with tracer.start_as_current_span("training.load_data"):
        splits = load_splits(spec.data, config.seed, payload)
    model_spec = model_spec_for(spec, splits)
    task = model_spec["task"]
    config.check_metric(task)
    device = pick_device(config.device)
    seed_everything(config.seed)
    model = build_module(model_spec)
    trainer = Trainer(config, model, splits, task, job_dir, hooks, dist, device)
    if request.resume and _resume(trainer):
        hooks.on_message(f"resumed from the checkpoint of epoch {trainer.progress.epoch}")
        for record in trainer.progress.history:  # the server keeps those it has not seen yet
            hooks.on_epoch(record)
    with tracer.start_as_current_span("training.fit") as span:
        span.set_attribute("training.rank", dist.rank)
        progress = trainer.fit()
        span.set_attribute("training.epochs_run", progress.epoch)
    if dist.rank != 0:
        return {}
    model.cpu()
    with tracer.start_as_current_span("training.evaluate"):
        test = evaluate(model, splits.x_test, splits.y_test, task)
    result_dir = job_dir / RESULT_DIR
    result_dir.mkdir(parents=True, exist_ok=True)
    write_safetensors(result_dir / "weights.safetensors", model.state_dict())
    (result_dir / "spec.json").write_text(json.dumps(model_spec, indent=2))
    with tracer.start_as_current_span("training.reference_stats"):
        reference = training_reference(model, splits.x_train, task, model_spec["num_classes"])
    (result_dir / "reference.json").write_text(json.dumps(reference))
    plot_curves(
        progress.history, result_dir / "curves.png", f"{spec.model_name} ({model_spec['architecture']['kind']})"
    )
    result = {
        "test_metrics": test.metrics,
        "confusion_matrix": test.confusion,
        "num_classes": model_spec["num_classes"],
        "dataset_digest": splits.digest,
        "device": str(device),
        "epochs_run": progress.epoch,
        "stopped_early": progress.stopped_early,
        "num_features": model_spec["num_features"],
        "output_width": int(model.output_std.numel()) if task != "classification" else model_spec["num_classes"],
        "task": task,
    }
    tmp = result_dir / "result.json.tmp"
    tmp.write_text(json.dumps(result))
    os.replace(tmp, result_dir / "result.json")
    return result


def training_reference(model: torch.nn.Module, x_train: np.ndarray, task: str, num_classes: int) -> dict[str, Any]:
    """Reference statistics for drift monitoring: the training inputs and the model's predicted classes."""
    predicted = None
    if task == "classification" and len(x_train):
        model.eval()
        with torch.no_grad():
            outputs = [model(torch.from_numpy(x_train[i : i + 4096])) for i in range(0, len(x_train), 4096)]
        predicted = torch.cat(outputs).argmax(1).numpy()
    return reference_stats(x_train.reshape(len(x_train), -1), predicted, num_classes if predicted is not None else 0)


def _resume(trainer: Trainer) -> bool:
    """Load the epoch checkpoint if there is one; a damaged one fails the job with that reason."""
    try:
        return trainer.load_checkpoint()
    except Exception as exc:
        raise RuntimeError(
            f"cannot resume: the epoch checkpoint is unreadable ({type(exc).__name__}); start a new job"
        ) from exc
