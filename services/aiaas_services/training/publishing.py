"""What the job engine needs after training, as a protocol: the registry side (``registration.py``) implements it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Protocol

from aiaas_services.training.spec import DatasetRef, ModelRef
from aiaas_services.training.store import JobRecord


class PublishError(Exception):
    """Registering a finished job failed; the message is safe to show. ``not_found``: the registry has no
    such model, version or artifact."""

    def __init__(self, message: str, not_found: bool = False) -> None:
        super().__init__(message)
        self.not_found = not_found


@dataclasses.dataclass(frozen=True)
class SourceModel:
    """What the registry says of a text job's base or teacher (the version pinned)."""

    model_name: str
    version: int
    format: str  # "hf", "onnx", "pytorch-checkpoint" ...
    task: str  # the version's task tag
    ready: bool


@dataclasses.dataclass
class Published:
    """Where a job's checkpoint went, and what else happened (export job, notes for the event log)."""

    model_name: str
    version: int
    export_job_id: str = ""
    messages: list[str] = dataclasses.field(default_factory=list)


class Publisher(Protocol):
    """Hands a finished job's files to the registry (and, when asked, to the serialization service)."""

    async def fetch_dataset(self, dataset: DatasetRef) -> bytes: ...

    async def describe(self, ref: ModelRef) -> SourceModel: ...

    async def fetch_folder(self, ref: ModelRef, folder: Path) -> None: ...

    async def publish(self, job: JobRecord, result_dir: Path, after_restart: bool = False) -> Published: ...
