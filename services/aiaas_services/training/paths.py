"""Light definitions shared by the server and the workers (no torch import, so the server starts fast)."""

from __future__ import annotations

import dataclasses

from aiaas_services.training.spec import JobSpec

RESULT_DIR = "result"  # <job dir>/result: weights.safetensors, spec.json, curves.png, result.json
DATASET_FILE = "dataset.bin"  # <job dir>/dataset.bin: a registry dataset's bytes, fetched by the server
CHECKPOINT_FILE = "checkpoint.safetensors"  # <job dir>/checkpoint.safetensors: the last epoch's state
SOURCE_DIR = "source"  # <job dir>/source: a text job's base or teacher HF folder, fetched by the server
TEXT_CHECKPOINT_FILE = "text-checkpoint.pt"  # <job dir>/text-checkpoint.pt: a text job's last epoch (weights_only)


@dataclasses.dataclass(frozen=True)
class JobRequest:
    """What a worker needs to run a job (picklable plain data)."""

    job_id: str
    spec: JobSpec
    job_dir: str
    resume: bool = False
    torch_threads: int = 1
