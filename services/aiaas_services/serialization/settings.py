"""Settings of the serialization service (env prefix AIAAS_SERIALIZATION_)."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from aiaas_services.runtime.settings import ServiceSettings, setting


@dataclasses.dataclass(frozen=True)
class SerializationSettings(ServiceSettings):
    """Serialization service: ONNX export, quantization and proof."""

    env_prefix: typing.ClassVar[str] = "AIAAS_SERIALIZATION_"
    service_name: typing.ClassVar[str] = "serialization"

    port: int = setting(50053, "Port to listen on; 0 picks a free one (see port_file).")
    registry_target: str = setting("127.0.0.1:50051", "Registry service address (checkpoints in, variants out).")
    registry_timeout_seconds: float = setting(60.0, "Deadline of each unary registry call.")
    max_concurrent_jobs: int = setting(1, "Export jobs that run at once, each in its own spawned worker process.")
    max_queued_jobs: int = setting(100, "Queued jobs beyond which StartExportJob answers RESOURCE_EXHAUSTED.")
    default_opset: int = setting(18, "ONNX opset used when a request leaves it 0.")
    exporter: str = setting(
        "auto", "torch.onnx exporter: auto (dynamo, falling back to torchscript), dynamo, torchscript."
    )
    ort_optimization: str = setting("basic", "ORT optimization level baked into saved graphs: basic or extended.")
    reduce_range_without_vnni: bool = setting(
        False,
        "With fixed_quantization: 7-bit weights (reduce_range) when the CPU lacks VNNI even if the request did not "
        "ask. The INT8 search tries both on such CPUs and keeps what the proof passes.",
    )
    calibration_samples: int = setting(256, "Calibration samples for int8-static when the request leaves it 0.")
    proof_threads: int = setting(1, "ONNX Runtime intra-op threads for the proof and its latency numbers.")
    latency_repeats: int = setting(30, "Timed runs per latency number (the median is reported).")
    torch_threads: int = setting(1, "torch threads in a worker process.")
    max_import_bytes: int = setting(512 * 1024 * 1024, "Largest ONNX file ImportModel accepts.")
    max_tensor_bytes: int = setting(1 << 30, "Largest single tensor an imported model may declare.")
    import_min_opset: int = setting(13, "Oldest default-domain opset an import may use.")
    import_max_opset: int = setting(21, "Newest default-domain opset an import may use.")

    @property
    def data_dir(self) -> Path:
        """``<home>/serialization``: the job database and per-job work folders."""
        return self.home_path / "serialization"
