"""Proto <-> domain conversions for the training service (no logic of its own)."""

from __future__ import annotations

from typing import Any

from google.protobuf import timestamp_pb2

from aiaas.common.v1 import common_pb2
from aiaas.training.v1 import training_pb2
from aiaas_services.training.store import EventRecord, JobRecord

STATE_TO_PROTO = {
    "QUEUED": common_pb2.JOB_STATE_QUEUED,
    "RUNNING": common_pb2.JOB_STATE_RUNNING,
    "SUCCEEDED": common_pb2.JOB_STATE_SUCCEEDED,
    "FAILED": common_pb2.JOB_STATE_FAILED,
    "CANCELLED": common_pb2.JOB_STATE_CANCELLED,
}
STATE_FROM_PROTO = {v: k for k, v in STATE_TO_PROTO.items()}


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
        spec=training_pb2.TrainingSpec.FromString(job.spec),
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
