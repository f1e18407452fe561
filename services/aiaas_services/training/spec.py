"""What a training job asks for, in plain Python: ``JobSpec`` and its ``TrainConfig``, and their checks.

The codec builds a ``JobSpec`` once from the request's ``TrainingSpec``; the engine checks it against the
service's limits, stores it with the job and hands it to the worker. Nothing here knows gRPC or protos.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

from aiaas.wire import VARIANTS
from aiaas_services.datasets import SKLEARN_DATASETS
from aiaas_services.modelzoo.specs import SpecError, normalize_architecture
from aiaas_services.runtime.errors import InvalidArgument
from aiaas_services.runtime.names import check_name

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


def data_task_and_features(data: dict[str, Any]) -> tuple[str | None, int | None]:
    """The task and feature count a data description (``JobSpec.data``) will produce, when knowable
    without loading it."""
    if "sklearn" in data:
        name = data["sklearn"]
        if name not in SKLEARN_DATASETS:
            raise ConfigError(
                f"spec.data.sklearn: unknown dataset {name!r}; choose one of {', '.join(SKLEARN_DATASETS)}"
            )
        return ("regression" if name == "diabetes" else "classification"), SKLEARN_FEATURES[name]
    if "synthetic" in data:
        synthetic = data["synthetic"]
        kind = synthetic.get("kind", "")
        defaults = {"linear": 1, "blobs": 2, "sequences": 16}
        if kind not in defaults:
            raise ConfigError(f"spec.data.synthetic.kind must be linear, blobs or sequences, got {kind!r}")
        if not 0 <= int(synthetic.get("num_samples", 0)) <= 1_000_000:
            raise ConfigError("spec.data.synthetic.num_samples must be at most 1000000")
        features = int(synthetic.get("num_features", 0)) or defaults[kind]
        return ("regression" if kind == "linear" else "classification"), features
    if "registry" in data:
        registry = data["registry"]
        if not registry.get("ref", {}).get("model_name"):
            raise ConfigError("spec.data.registry.ref.model_name is required")
        return (registry.get("task") or "classification"), None
    raise ConfigError("spec.data needs a source: sklearn, synthetic or registry")


@dataclasses.dataclass(frozen=True)
class DatasetRef:
    """A dataset kept in the registry: a version (by number or alias) and the artifact holding it."""

    model_name: str
    version: int = 0
    alias: str = ""
    artifact_name: str = "data.npz"


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """A registered model version by number or alias (the service pins an alias to its number on submit)."""

    model_name: str
    version: int = 0
    alias: str = ""

    def __str__(self) -> str:
        return f"{self.model_name}@{self.alias}" if self.alias else f"{self.model_name}:{self.version}"


TEXT_TASKS = ("sequence-classification",)
TEXT_TABLE_SUFFIXES = (".csv", ".jsonl", ".json")
FINETUNE, DISTILL, SCRATCH = "finetune", "distill", "scratch"


@dataclasses.dataclass(frozen=True)
class TextJob:
    """A text classifier job: fine-tune ``source`` (mode finetune), distill it into a small student
    (mode distill), or train the student on the labels alone (mode scratch, no source)."""

    mode: str
    task: str = "sequence-classification"
    source: ModelRef | None = None
    max_length: int = 128
    freeze_encoder: bool = False
    temperature: float = 2.0
    alpha: float = 0.7
    student_vocab_size: int = 2000
    student_hidden_size: int = 64
    student_layers: int = 2
    student_heads: int = 2

    @property
    def role(self) -> str:
        """What the source is to this job: its base or its teacher."""
        return "teacher" if self.mode == DISTILL else "base"

    def check(self, spec: JobSpec) -> None:
        """Raise ConfigError for a text job no training could run."""
        if self.task not in TEXT_TASKS:
            raise ConfigError(f"spec.text.task must be {' or '.join(TEXT_TASKS)}, got {self.task!r}")
        if self.mode not in (FINETUNE, DISTILL, SCRATCH):
            raise ConfigError("spec.text: set base (fine-tune) or teacher (distill), not both")
        if self.source is not None and (not self.source.model_name or not (self.source.version or self.source.alias)):
            raise ConfigError(f"spec.text.{self.role}: name the model and a version or an alias, got {self.source}")
        if spec.architecture:
            raise ConfigError("spec.architecture is not used by a text job (spec.text); leave it unset")
        registry = spec.data.get("registry")
        if not registry:
            raise ConfigError(
                "a text job takes its labelled text from spec.data.registry: a CSV (text,label header) or JSONL "
                "artifact uploaded to the registry"
            )
        if not registry.get("ref", {}).get("model_name"):
            raise ConfigError("spec.data.registry.ref.model_name is required (the dataset holding the table)")
        if not 0 <= float(spec.data.get("test_fraction") or 0) < 0.9:
            raise ConfigError("spec.data.test_fraction must be in [0, 0.9) (0 = 0.2 held out)")
        if not str(registry.get("artifact_name", "")).endswith(TEXT_TABLE_SUFFIXES):
            raise ConfigError(
                f"spec.data.registry.artifact_name must end with .csv, .jsonl or .json for a text job, got "
                f"{registry.get('artifact_name', '')!r}"
            )
        if registry.get("task") not in (None, "", "classification"):
            raise ConfigError("spec.data.registry.task must be classification (or empty) for a text job")
        if not 8 <= self.max_length <= 512:
            raise ConfigError(f"spec.text.max_length must be between 8 and 512, got {self.max_length}")
        if not 0 < self.temperature <= 100:
            raise ConfigError(f"spec.text.temperature must be in (0, 100], got {self.temperature}")
        if not 0 < self.alpha <= 1:
            raise ConfigError(f"spec.text.alpha must be in (0, 1], got {self.alpha}")
        if not 100 <= self.student_vocab_size <= 50_000:
            raise ConfigError(
                f"spec.text.student_vocab_size must be between 100 and 50000, got {self.student_vocab_size}"
            )
        if not 1 <= self.student_layers <= 12 or not 1 <= self.student_heads <= 16:
            raise ConfigError("spec.text.student_layers must be 1..12 and student_heads 1..16")
        if not 8 <= self.student_hidden_size <= 1024 or self.student_hidden_size % self.student_heads:
            raise ConfigError(
                f"spec.text.student_hidden_size must be 8..1024 and divisible by student_heads, got "
                f"{self.student_hidden_size} with {self.student_heads} heads"
            )
        if spec.train.world_size != 1:
            raise ConfigError("spec.world_size: a text job runs in one process (leave it 0 or 1)")
        spec.train.check_metric("classification")


@dataclasses.dataclass(frozen=True)
class ExportRequest:
    """The export a job asks for once registered: variant names, and the request's ``ExportOptions``
    as it sent them (the training service forwards them to the serialization service unchanged)."""

    variants: tuple[str, ...]
    options: bytes


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """One training job's request, resolved: what to train, on what, how, and where the result goes."""

    model_name: str
    architecture: dict[str, Any]  # modelzoo's JSON form; empty when the request named none
    data: dict[str, Any]  # the datasets module's JSON form (also stored in spec.json)
    train: TrainConfig
    description: str = ""
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    dataset: DatasetRef | None = None  # set when the data lives in the registry
    export: ExportRequest | None = None
    text: TextJob | None = None  # set for a text classifier job (then architecture is empty)

    def check(self, *, max_epochs: int, max_world_size: int) -> None:
        """Every check that can be made without loading data; raises ConfigError."""
        if not self.model_name:
            raise ConfigError("spec.model_name is required (the registry model to register the result under)")
        try:
            check_name(self.model_name)
        except InvalidArgument as exc:
            raise ConfigError(f"spec.model_name: {exc}") from exc
        unknown_variants = sorted(set(self.export.variants if self.export else ()) - set(VARIANTS))
        if unknown_variants:
            raise ConfigError(
                f"spec.export.variants: unknown {', '.join(unknown_variants)}; choose from {', '.join(VARIANTS)}"
            )
        self.train.check(max_epochs=max_epochs, max_world_size=max_world_size)
        if self.text is not None:
            self.text.check(self)
            return
        task, features = data_task_and_features(self.data)
        try:
            if not self.architecture:
                raise SpecError("spec.architecture is required: set one of linear, mlp, cnn, rnn, transformer, vae")
            if features is not None:
                normalize_architecture(dict(self.architecture), features)
        except SpecError as exc:
            raise ConfigError(f"spec.architecture: {exc}") from exc
        self.train.check_metric("vae" if self.architecture["kind"] == "vae" else task or "classification")

    def to_json(self) -> str:
        """The form the job store keeps."""
        fields = dataclasses.asdict(self)
        if self.export is not None:
            fields["export"]["options"] = base64.b64encode(self.export.options).decode()
        return json.dumps(fields, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        """Inverse of ``to_json``."""
        fields = json.loads(text)
        export = fields.pop("export")
        dataset = fields.pop("dataset")
        stored = fields.pop("text", None)  # absent in jobs stored before text jobs existed
        job: TextJob | None = None
        if stored is not None:
            source = stored.pop("source")
            job = TextJob(**stored, source=ModelRef(**source) if source else None)
        return cls(
            **{k: v for k, v in fields.items() if k != "train"},
            train=TrainConfig(**fields["train"]),
            dataset=DatasetRef(**dataset) if dataset else None,
            export=ExportRequest(tuple(export["variants"]), base64.b64decode(export["options"])) if export else None,
            text=job,
        )
