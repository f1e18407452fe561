"""Settings of the training service (env prefix AIAAS_TRAINING_)."""

from __future__ import annotations

import dataclasses
import typing

from aiaas_services.runtime.settings import ServiceSettings, setting


@dataclasses.dataclass(frozen=True)
class TrainingSettings(ServiceSettings):
    """Training service: PyTorch training jobs."""

    env_prefix: typing.ClassVar[str] = "AIAAS_TRAINING_"
    service_name: typing.ClassVar[str] = "training"

    port: int = setting(50052, "Port to listen on; 0 picks a free one (see port_file).")
    registry_target: str = setting("127.0.0.1:50051", "Registry service address (checkpoints are registered there).")
    serialization_target: str = setting("127.0.0.1:50053", "Serialization service address (for a job's export block).")
    max_concurrent_jobs: int = setting(2, "Jobs that train at once; each has its own warm worker process.")
    max_queued_jobs: int = setting(100, "Queued jobs beyond which StartTrainingJob answers RESOURCE_EXHAUSTED.")
    torch_threads: int = setting(1, "torch intra-op threads per worker (fixed, so results are reproducible).")
    max_epochs: int = setting(10_000, "Largest number of epochs a request may ask for.")
    max_world_size: int = setting(8, "Largest number of DDP processes a request may ask for.")
    registry_timeout_seconds: float = setting(60.0, "Deadline of each registry/serialization call.")
