"""Proto <-> domain conversions for the training service: ``TrainingSpec`` -> ``JobSpec`` (parsed here
once), job records and events -> protos. No logic of its own."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, timestamp_pb2

from aiaas.common.v1 import common_pb2
from aiaas.training.v1 import training_pb2
from aiaas.wire import JobState
from aiaas_services.modelzoo.specs import architecture_from_proto
from aiaas_services.training.spec import (
    DISTILL,
    FINETUNE,
    SCRATCH,
    DatasetRef,
    ExportRequest,
    JobSpec,
    ModelRef,
    TextJob,
    TrainConfig,
)
from aiaas_services.training.store import EventRecord, JobRecord

STATE_TO_PROTO = {state.name: common_pb2.JobState.Value(f"JOB_STATE_{state.name}") for state in JobState if state}
STATE_FROM_PROTO = {v: k for k, v in STATE_TO_PROTO.items()}


def job_spec_from_proto(spec: training_pb2.TrainingSpec) -> JobSpec:
    """The request's ``TrainingSpec`` as the domain's ``JobSpec``: proto defaults resolved, enums named.
    Values are checked by ``JobSpec.check``, against the service's limits."""
    export = None
    if spec.HasField("export"):
        export = ExportRequest(tuple(spec.export.variants), spec.export.SerializeToString(deterministic=True))
    dataset = None
    if spec.data.WhichOneof("source") == "registry":
        source = spec.data.registry
        dataset = DatasetRef(
            model_name=source.ref.model_name,
            version=source.ref.version,
            alias=source.ref.alias,
            artifact_name=source.artifact_name or "data.npz",
        )
    text = text_job_from_proto(spec.text) if spec.HasField("text") else None
    return JobSpec(
        model_name=spec.model_name,
        architecture=architecture_from_proto(spec.architecture) if spec.architecture.WhichOneof("kind") else {},
        data=json_format.MessageToDict(spec.data, preserving_proto_field_name=True),
        train=train_config_from_proto(spec, text),
        description=spec.description,
        tags=dict(spec.tags),
        dataset=dataset,
        export=export,
        text=text,
    )


def text_job_from_proto(text: training_pb2.TextSpec) -> TextJob:
    """A ``TextSpec`` as the domain's ``TextJob``: the mode follows from base / teacher, zeros are defaults.
    Both set is passed on as mode "both", which ``TextJob.check`` refuses with its reason."""
    base, teacher = text.HasField("base"), text.HasField("teacher")
    mode = "both" if base and teacher else FINETUNE if base else DISTILL if teacher else SCRATCH
    ref = text.base if base else text.teacher if teacher else None
    return TextJob(
        mode=mode,
        task=text.task or "sequence-classification",
        source=ModelRef(ref.model_name, ref.version, ref.alias) if ref is not None else None,
        max_length=text.max_length or (128 if mode == FINETUNE else 64),
        freeze_encoder=text.freeze_encoder,
        temperature=text.temperature or 2.0,
        alpha=text.alpha or 0.7,
        student_vocab_size=text.student_vocab_size or 2000,
        student_hidden_size=text.student_hidden_size or 64,
        student_layers=text.student_layers or 2,
        student_heads=text.student_heads or 2,
    )


def train_config_from_proto(spec: training_pb2.TrainingSpec, text: TextJob | None = None) -> TrainConfig:
    """The hyperparameters of a ``TrainingSpec``, with the documented defaults for zero values (a text job
    has its own: fewer epochs, smaller batches, AdamW, and a fine-tune's small learning rate)."""
    opt = spec.optimizer
    finetune = text is not None and text.mode == FINETUNE
    return TrainConfig(
        optimizer="adamw" if text is not None else _enum_name(opt, "kind", "adam"),
        learning_rate=opt.learning_rate or (5e-5 if finetune else 1e-3),
        momentum=opt.momentum,
        weight_decay=opt.weight_decay or (0.01 if text is not None else 0.0),
        l1_penalty=opt.l1_penalty,
        schedule=_enum_name(opt, "schedule", "constant"),
        step_size=opt.step_size or 10,
        gamma=opt.gamma or 0.1,
        grad_clip_norm=opt.grad_clip_norm,
        epochs=spec.epochs or (20 if text is None else 3 if finetune else 15),
        batch_size=spec.batch_size or (64 if text is None else 16),
        seed=spec.seed,
        early_stopping_metric=spec.early_stopping.metric,
        patience=spec.early_stopping.patience or 5,
        min_delta=spec.early_stopping.min_delta,
        device=(spec.device or "auto").lower(),
        world_size=max(1, spec.world_size),
    )


def export_options(request: ExportRequest) -> common_pb2.ExportOptions:
    """The ``ExportOptions`` a job's request carried."""
    options: common_pb2.ExportOptions = common_pb2.ExportOptions.FromString(request.options)
    return options


def version_ref(ref: ModelRef) -> common_pb2.VersionRef:
    """A pinned or aliased model version as the registry takes it."""
    if ref.alias:
        return common_pb2.VersionRef(model_name=ref.model_name, alias=ref.alias)
    return common_pb2.VersionRef(model_name=ref.model_name, version=ref.version)


def dataset_ref(dataset: DatasetRef) -> common_pb2.VersionRef:
    """The registry version holding a job's dataset."""
    if dataset.alias:
        return common_pb2.VersionRef(model_name=dataset.model_name, alias=dataset.alias)
    if dataset.version:
        return common_pb2.VersionRef(model_name=dataset.model_name, version=dataset.version)
    return common_pb2.VersionRef(model_name=dataset.model_name)  # the registry answers what is missing


def _enum_name(message: Any, field: str, default: str) -> str:
    descriptor = message.DESCRIPTOR.fields_by_name[field].enum_type
    name: str = descriptor.values_by_number[getattr(message, field)].name
    suffix = name.rsplit("_", 1)[-1].lower()
    return default if suffix == "unspecified" else suffix


def timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def epoch_metrics(record: dict[str, Any]) -> training_pb2.EpochMetrics:
    return training_pb2.EpochMetrics(
        epoch=int(record["epoch"]),
        train={k: float(v) for k, v in record.get("train", {}).items()},
        validation={k: float(v) for k, v in record.get("validation", {}).items()},
        learning_rate=float(record.get("learning_rate", 0.0)),
        seconds=float(record.get("seconds", 0.0)),
    )


def job_to_proto(job: JobRecord, history: list[dict[str, Any]] | None = None) -> training_pb2.Job:
    """A job as the API shows it; ``history`` None leaves the per-epoch history out (ListJobs)."""
    result = job.result
    message = training_pb2.Job(
        job_id=job.job_id,
        state=STATE_TO_PROTO[job.state],
        spec=training_pb2.TrainingSpec.FromString(job.request),
        failure_reason=job.failure_reason,
        current_epoch=job.current_epoch,
        total_epochs=job.total_epochs,
        test_metrics={k: float(v) for k, v in result.get("test_metrics", {}).items()},
        confusion_matrix=[int(v) for row in result.get("confusion_matrix") or [] for v in row],
        num_classes=int(result.get("num_classes") or 0),
        export_job_id=result.get("export_job_id", ""),
        trace_id=job.trace_id,
        dataset_digest=result.get("dataset_digest", ""),
        device=result.get("device", ""),
    )
    if history:
        message.history.extend(epoch_metrics(r) for r in history)
    registered = result.get("registered")
    if registered:
        message.registered.CopyFrom(
            common_pb2.VersionRef(model_name=registered["model_name"], version=int(registered["version"]))
        )
    for field, value in (
        ("created_at", job.created_at),
        ("started_at", job.started_at),
        ("finished_at", job.finished_at),
    ):
        stamp = timestamp(value)
        if stamp is not None:
            getattr(message, field).CopyFrom(stamp)
    return message


def event_to_proto(event: EventRecord) -> training_pb2.WatchJobResponse:
    response = training_pb2.WatchJobResponse(sequence=event.sequence, state=STATE_TO_PROTO[event.state])
    stamp = timestamp(event.time)
    assert stamp is not None
    response.time.CopyFrom(stamp)
    if event.kind == "epoch":
        response.epoch.CopyFrom(epoch_metrics(event.payload))
    elif event.kind == "message":
        response.message = str(event.payload)
    else:
        response.state_changed = str(event.payload)
    return response
