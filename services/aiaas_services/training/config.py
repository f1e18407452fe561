"""A training request resolved into plain Python: every default filled in, every limit checked.

``TrainConfig.from_proto`` is used twice: by the server to refuse a bad request up front
(INVALID_ARGUMENT) and by the worker to train. It knows nothing of gRPC.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiaas.wire import VARIANTS
from aiaas_services.datasets import SKLEARN_DATASETS
from aiaas_services.modelzoo.specs import SpecError, architecture_from_proto, normalize_architecture
from aiaas_services.runtime.errors import InvalidArgument
from aiaas_services.runtime.names import check_name

# The variant names the serialization service makes (its pipeline/variants.py is the authority).
EXPORT_VARIANTS = VARIANTS

OPTIMIZERS = ("adam", "sgd", "adamw")
SCHEDULES = ("constant", "step", "cosine")
SKLEARN_FEATURES = {"digits": 64, "iris": 4, "wine": 13, "breast_cancer": 30, "diabetes": 10}
CLASSIFICATION_METRICS = ("loss", "accuracy", "precision_macro", "recall_macro", "f1_macro")
REGRESSION_METRICS = ("loss", "mse", "mae", "r2")
VAE_METRICS = ("loss", "elbo", "reconstruction_error", "kl")
HIGHER_IS_BETTER = frozenset({"accuracy", "precision_macro", "recall_macro", "f1_macro", "r2", "elbo"})


class ConfigError(ValueError):
    """A request that cannot train; the message names the field and what to change."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one job (what the worker needs besides the data and the model spec)."""

    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    l1_penalty: float = 0.0
    schedule: str = "constant"
    step_size: int = 10
    gamma: float = 0.1
    grad_clip_norm: float = 0.0
    epochs: int = 20
    batch_size: int = 64
    seed: int = 0
    early_stopping_metric: str = ""
    patience: int = 5
    min_delta: float = 0.0
    device: str = "auto"
    world_size: int = 1

    @classmethod
    def from_proto(cls, spec: Any, *, max_epochs: int = 10_000, max_world_size: int = 8) -> TrainConfig:
        """Resolve a ``aiaas.training.v1.TrainingSpec``; raises ConfigError naming the bad field."""
        opt = spec.optimizer
        optimizer = _enum_name(opt, "kind", "adam")
        schedule = _enum_name(opt, "schedule", "constant")
        config = cls(
            optimizer=optimizer,
            learning_rate=opt.learning_rate or 1e-3,
            momentum=opt.momentum,
            weight_decay=opt.weight_decay,
            l1_penalty=opt.l1_penalty,
            schedule=schedule,
            step_size=opt.step_size or 10,
            gamma=opt.gamma or 0.1,
            grad_clip_norm=opt.grad_clip_norm,
            epochs=spec.epochs or 20,
            batch_size=spec.batch_size or 64,
            seed=spec.seed,
            early_stopping_metric=spec.early_stopping.metric,
            patience=spec.early_stopping.patience or 5,
            min_delta=spec.early_stopping.min_delta,
            device=(spec.device or "auto").lower(),
            world_size=max(1, spec.world_size),
        )
        config.check(max_epochs=max_epochs, max_world_size=max_world_size)
        return config

    def check(self, *, max_epochs: int, max_world_size: int) -> None:
        """Raise ConfigError for values no training could use."""
        if not 1 <= self.epochs <= max_epochs:
            raise ConfigError(f"spec.epochs must be between 1 and {max_epochs}, got {self.epochs}")
        if not 1 <= self.batch_size <= 1_000_000:
            raise ConfigError(f"spec.batch_size must be between 1 and 1000000, got {self.batch_size}")
        if not 0 < self.learning_rate <= 10:
            raise ConfigError(f"spec.optimizer.learning_rate must be in (0, 10], got {self.learning_rate}")
        for name in ("momentum", "weight_decay", "l1_penalty", "grad_clip_norm", "min_delta"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.step_size < 1 or not 0 < self.gamma <= 1:
            raise ConfigError("spec.optimizer.step_size must be >= 1 and gamma in (0, 1]")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"spec.device must be cpu, cuda, cuda:N or auto, got {self.device!r}")
        if not 1 <= self.world_size <= max_world_size:
            raise ConfigError(f"spec.world_size must be between 1 and {max_world_size}, got {self.world_size}")
        if self.patience < 1:
            raise ConfigError("spec.early_stopping.patience must be at least 1")

    def check_metric(self, task: str) -> None:
        """The early-stopping metric must exist for the task."""
        if not self.early_stopping_metric:
            return
        available = metrics_for(task)
        if self.early_stopping_metric not in available:
            raise ConfigError(
                f"spec.early_stopping.metric {self.early_stopping_metric!r} is not computed for {task}; "
                f"use one of {', '.join(available)}"
            )

    def hyperparameters(self) -> dict[str, str]:
        """Flat strings for the registry's lineage."""
        return {k: str(v) for k, v in dataclasses.asdict(self).items()}


def metrics_for(task: str) -> tuple[str, ...]:
    """Validation metrics computed for a task."""
    return {"classification": CLASSIFICATION_METRICS, "regression": REGRESSION_METRICS}.get(task, VAE_METRICS)


def data_task_and_features(data: Any) -> tuple[str | None, int | None]:
    """The task and feature count a DataSpec will produce, when knowable without loading it."""
    source = data.WhichOneof("source")
    if source == "sklearn":
        if data.sklearn not in SKLEARN_DATASETS:
            raise ConfigError(
                f"spec.data.sklearn: unknown dataset {data.sklearn!r}; choose one of {', '.join(SKLEARN_DATASETS)}"
            )
        return ("regression" if data.sklearn == "diabetes" else "classification"), SKLEARN_FEATURES[data.sklearn]
    if source == "synthetic":
        kind = data.synthetic.kind
        defaults = {"linear": 1, "blobs": 2, "sequences": 16}
        if kind not in defaults:
            raise ConfigError(f"spec.data.synthetic.kind must be linear, blobs or sequences, got {kind!r}")
        if not 0 <= data.synthetic.num_samples <= 1_000_000:
            raise ConfigError("spec.data.synthetic.num_samples must be at most 1000000")
        return ("regression" if kind == "linear" else "classification"), data.synthetic.num_features or defaults[kind]
    if source == "registry":
        if not data.registry.ref.model_name:
            raise ConfigError("spec.data.registry.ref.model_name is required")
        return (data.registry.task or "classification"), None
    raise ConfigError("spec.data needs a source: sklearn, synthetic or registry")


def check_request(spec: Any, *, max_epochs: int, max_world_size: int) -> TrainConfig:
    """Every check that can be made without loading data; raises ConfigError."""
    if not spec.model_name:
        raise ConfigError("spec.model_name is required (the registry model to register the result under)")
    try:
        check_name(spec.model_name)
    except InvalidArgument as exc:
        raise ConfigError(f"spec.model_name: {exc}") from exc
    unknown_variants = sorted(set(spec.export.variants) - set(EXPORT_VARIANTS))
    if unknown_variants:
        raise ConfigError(
            f"spec.export.variants: unknown {', '.join(unknown_variants)}; choose from {', '.join(EXPORT_VARIANTS)}"
        )
    config = TrainConfig.from_proto(spec, max_epochs=max_epochs, max_world_size=max_world_size)
    task, features = data_task_and_features(spec.data)
    try:
        arch = architecture_from_proto(spec.architecture)
        if features is not None:
            normalize_architecture(arch, features)
    except SpecError as exc:
        raise ConfigError(f"spec.architecture: {exc}") from exc
    config.check_metric("vae" if arch["kind"] == "vae" else task or "classification")
    return config


def _enum_name(message: Any, field: str, default: str) -> str:
    descriptor = message.DESCRIPTOR.fields_by_name[field].enum_type
    name: str = descriptor.values_by_number[getattr(message, field)].name
    suffix = name.rsplit("_", 1)[-1].lower()
    return default if suffix == "unspecified" else suffix
