"""Client of the serialization service: start/follow export jobs, import ONNX files, format proofs.

Synchronous over a ``grpc.Channel`` (scripts and the CLI); services can use the generated aio stubs
with the same request builders.

    with grpc.insecure_channel("127.0.0.1:50053") as channel:
        client = SerializationClient(channel)
        job = client.start_export("digits-mlp:1", ["fp32", "int8-static"])
        for event in client.watch(job.job_id):
            print(event.message or event.state_changed)
        print(proof_rows(client.get_job(job.job_id)))
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc

from aiaas.client.registry import RefLike, version_ref
from aiaas.common.v1 import common_pb2
from aiaas.serialization.v1 import serialization_pb2 as pb
from aiaas.serialization.v1 import serialization_pb2_grpc
from aiaas.wire import TERMINAL_JOB_STATES, CalibrationMethod

CHUNK_SIZE = 1024 * 1024
CALIBRATION_METHODS = {method.text: method for method in CalibrationMethod if method}
TERMINAL_STATES = TERMINAL_JOB_STATES


def export_options(
    variants: Sequence[str],
    opset: int = 0,
    method: str = "minmax",
    per_channel: bool = False,
    calibration_samples: int = 0,
    calibration_data: RefLike | None = None,
    calibration_artifact: str = "",
    pruning_sparsity: float = 0.0,
    reduce_range: bool = False,
    tolerances: Mapping[str, common_pb2.VariantTolerance] | None = None,
    set_alias: str = "",
    fixed_quantization: bool = False,
    keep_fp32: str = "",
    structured_pruning: float = 0.0,
) -> common_pb2.ExportOptions:
    """An ExportOptions message from plain values."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")
    calibration = common_pb2.CalibrationOptions(
        method=CALIBRATION_METHODS[method],  # type: ignore[arg-type]
        per_channel=per_channel,
        num_samples=calibration_samples,
        calibration_artifact=calibration_artifact,
    )
    if calibration_data is not None:
        calibration.calibration_data.CopyFrom(version_ref(calibration_data))
    return common_pb2.ExportOptions(
        variants=list(variants),
        opset=opset,
        calibration=calibration,
        pruning_sparsity=pruning_sparsity,
        reduce_range=reduce_range,
        tolerances=dict(tolerances or {}),
        set_alias=set_alias,
        fixed_quantization=fixed_quantization,
        keep_fp32=keep_fp32,
        structured_pruning=structured_pruning,
    )


def parse_tolerance(text: str) -> tuple[str, common_pb2.VariantTolerance]:
    """``int8-static:max_drop=0.02,max_abs=0.5,min_top1=0.98,min_cos=0.97`` -> (variant, VariantTolerance)."""
    variant, _, body = text.partition(":")
    if not variant or not body:
        raise ValueError(
            f"tolerance {text!r}: use VARIANT:max_abs=X,max_drop=Y,min_top1=Z,min_cos=C,min_p1_cos=P,max_rel=R"
        )
    names = {
        "max_abs": "max_abs_error",
        "max_drop": "max_metric_drop",
        "min_top1": "min_top1_agreement",
        "min_cos": "min_worst_row_cosine",
        "min_p1_cos": "min_p1_cosine",
        "max_rel": "max_rel_error",
    }
    fields: dict[str, float] = {}
    for part in body.split(","):
        key, _, value = part.partition("=")
        if key.strip() not in names:
            raise ValueError(f"tolerance {text!r}: unknown limit {key!r} ({', '.join(names)})")
        fields[names[key.strip()]] = float(value)
    return variant, common_pb2.VariantTolerance(**fields)


# Tasks an imported ONNX file may name, and those of an imported Hugging Face folder.
ONNX_TASKS = ("classification", "regression", "vae")
HF_TASKS = ("embedding", "sequence-classification")


def import_requests(
    path: Path,
    model_name: str,
    description: str = "",
    tags: Mapping[str, str] | None = None,
    task: str = "",
    format: str = "",  # noqa: A002 - the proto field's name
    calibration: Path | None = None,
    calibration_text: bytes = b"",
) -> Iterator[pb.ImportModelRequest]:
    """The ImportModel stream for a file: header (with the calibration ``.npz`` of a file, or the
    calibration sentences of a folder, if any), 1 MiB chunks, then the sha256."""
    size = path.stat().st_size
    header = pb.ImportHeader(
        model_name=model_name,
        description=description,
        tags=tags,
        size_bytes=size,
        task=task,
        format=format,
        calibration_npz=calibration.read_bytes() if calibration is not None else b"",
        calibration_text=calibration_text,
    )
    yield pb.ImportModelRequest(header=header)
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
            yield pb.ImportModelRequest(chunk=chunk)
    yield pb.ImportModelRequest(sha256=digest.hexdigest())


class SerializationClient:
    """Typed calls of ``aiaas.serialization.v1.SerializationService``."""

    def __init__(self, channel: grpc.Channel, timeout: float | None = 30.0) -> None:
        self.stub = serialization_pb2_grpc.SerializationServiceStub(channel)
        self.timeout = timeout

    def start_export(
        self,
        source: RefLike,
        variants: Sequence[str] = ("fp32",),
        options: common_pb2.ExportOptions | None = None,
        target_model_name: str = "",
        request_id: str = "",
        training_job_id: str = "",
    ) -> pb.ExportJob:
        """Queue an export; ``options`` (if given) wins over ``variants``."""
        request = pb.StartExportJobRequest(
            source=version_ref(source),
            options=options or export_options(variants),
            target_model_name=target_model_name,
            request_id=request_id,
            training_job_id=training_job_id,
        )
        job: pb.ExportJob = self.stub.StartExportJob(request, timeout=self.timeout).job
        return job

    def get_job(self, job_id: str) -> pb.ExportJob:
        job: pb.ExportJob = self.stub.GetExportJob(pb.GetExportJobRequest(job_id=job_id), timeout=self.timeout).job
        return job

    def list_jobs(self, state: int = 0, page_size: int = 50) -> list[pb.ExportJob]:
        request = pb.ListExportJobsRequest(page_size=page_size, state=state)  # type: ignore[arg-type]
        return list(self.stub.ListExportJobs(request, timeout=self.timeout).jobs)

    def cancel(self, job_id: str) -> pb.ExportJob:
        job: pb.ExportJob = self.stub.CancelExportJob(
            pb.CancelExportJobRequest(job_id=job_id), timeout=self.timeout
        ).job
        return job

    def watch(self, job_id: str, after_sequence: int = 0) -> Iterable[pb.WatchExportJobResponse]:
        """Events (history first) until the job ends; no deadline, since jobs take what they take."""
        request = pb.WatchExportJobRequest(job_id=job_id, after_sequence=after_sequence)
        stream: Iterable[pb.WatchExportJobResponse] = self.stub.WatchExportJob(request)
        return stream

    def import_file(
        self,
        path: Path | str,
        model_name: str,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        task: str = "",
        calibration: Path | str | None = None,
    ) -> pb.ImportModelResponse:
        """Upload and register an ONNX file (validated by the service); with ``calibration`` (an ``.npz`` of
        representative inputs) the service also registers reference statistics for drift monitoring."""
        calibration_path = Path(calibration) if calibration is not None else None
        requests = import_requests(Path(path), model_name, description, tags, task, calibration=calibration_path)
        response: pb.ImportModelResponse = self.stub.ImportModel(requests, timeout=None)
        return response

    def import_hf_folder(
        self,
        folder: Path | str,
        model_name: str,
        task: str = "embedding",
        description: str = "",
        tags: Mapping[str, str] | None = None,
        calibration: Path | str | None = None,
    ) -> pb.ImportModelResponse:
        """Upload a Hugging Face folder's top-level files as a tar; the service vets and registers it (format HF).
        With ``calibration`` (a UTF-8 file of sentences, one per line, or JSON lines with a ``text`` field)
        the service also registers reference statistics for drift monitoring of its exports."""
        sentences = Path(calibration).read_bytes() if calibration is not None else b""
        with tempfile.TemporaryDirectory() as scratch:
            archive = pack_hf_folder(Path(folder), Path(scratch) / "model.tar")
            requests = import_requests(
                archive, model_name, description, tags, task, format="hf", calibration_text=sentences
            )
            response: pb.ImportModelResponse = self.stub.ImportModel(requests, timeout=None)
        return response


def pack_hf_folder(folder: Path, archive: Path) -> Path:
    """An uncompressed tar of ``folder``'s top-level regular files (links and sub-folders are left out:
    the service takes flat folders only, and refuses pickles and anything that is not a plain file)."""
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder (a Hugging Face model folder: config.json, *.safetensors)")
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(folder.iterdir()):
            if entry.is_file() and not entry.is_symlink() and not entry.name.startswith("."):
                tar.add(entry, arcname=entry.name, recursive=False)
    return archive


PROOF_HEADERS = (
    "variant",
    "status",
    "version",
    "metric",
    "value",
    "reference",
    "max_abs_err",
    "worst_cos",
    "p1_cos",
    "top1",
    "size_kb",
    "b1_ms",
    "b32_ms",
    "provider",
)


def proof_rows(job: pb.ExportJob) -> list[list[Any]]:
    """One table row per variant report (see PROOF_HEADERS)."""
    rows = []
    for r in job.reports:
        rows.append(
            [
                r.variant,
                "READY" if r.accepted else ("FAILED" if r.failed else "REJECTED"),
                f"{r.registered.model_name}:{r.registered.version}" if r.registered.model_name else "",
                r.metric_name,
                f"{r.metric_value:.4f}",
                f"{r.reference_metric_value:.4f}",
                f"{r.max_abs_error:.2e}",
                f"{r.worst_row_cosine:.6f}",
                f"{r.p1_cosine:.6f}",
                f"{r.top1_agreement:.4f}" if r.top1_agreement else "-",
                f"{r.size_bytes / 1024:.1f}",
                f"{r.latency_ms_batch1:.3f}",
                f"{r.latency_ms_batch32:.3f}",
                r.preferred_provider.replace("ExecutionProvider", ""),
            ]
        )
    return rows
