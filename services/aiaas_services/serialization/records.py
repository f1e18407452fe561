"""The serialization service's own records: export requests, jobs, their variant reports and events.

Plain dataclasses, stored as JSON by ``store.py`` and turned into messages only by ``codec.py``, so the
domain (jobs, worker, pipeline) never handles generated code for its own data.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiaas_services.serialization.pipeline.limits import Tolerance
from aiaas_services.serialization.pipeline.proof import Candidate, OutputProof, Report
from aiaas_services.serialization.pipeline.validate import TensorInfo

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})


@dataclasses.dataclass(frozen=True)
class Ref:
    """A registry version (``version``) or alias (``alias``) of a model."""

    model_name: str = ""
    version: int = 0
    alias: str = ""

    def selector(self) -> int | str:
        return self.version or self.alias


@dataclasses.dataclass(frozen=True)
class Calibration:
    """How INT8 calibrates and on what (``data``: an .npz version in the registry)."""

    method: str = "minmax"
    per_channel: bool = False
    num_samples: int = 0
    data: Ref = Ref()
    artifact: str = ""


@dataclasses.dataclass(frozen=True)
class ExportSpec:
    """What a request asks to make (unvalidated values; ``options.pipeline_options`` checks them)."""

    variants: tuple[str, ...] = ()
    opset: int = 0
    calibration: Calibration = Calibration()
    pruning_sparsity: float = 0.0
    tolerances: dict[str, Tolerance] = dataclasses.field(default_factory=dict)
    reduce_range: bool = False
    set_alias: str = ""
    fixed_quantization: bool = False
    keep_fp32: str = ""
    structured_pruning: float = 0.0
    unknown_method: int = 0  # a calibration method number the codec did not know (refused by validation)


@dataclasses.dataclass(frozen=True)
class ExportRequest:
    """A StartExportJob request."""

    source: Ref
    spec: ExportSpec = ExportSpec()
    request_id: str = ""
    target_model_name: str = ""
    training_job_id: str = ""


@dataclasses.dataclass
class VariantRecord:
    """A variant's proof and the registry version it became (empty Ref when nothing was registered)."""

    report: Report
    registered: Ref = Ref()


@dataclasses.dataclass
class JobRecord:
    """An export job."""

    job_id: str
    state: str
    source: Ref
    spec: ExportSpec
    target_model_name: str = ""
    training_job_id: str = ""
    trace_id: str = ""
    failure_reason: str = ""
    reports: list[VariantRecord] = dataclasses.field(default_factory=list)
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None


@dataclasses.dataclass(frozen=True)
class EventRecord:
    """One job event: ``kind`` is state_changed or message (``text``), or variant (``variant``)."""

    sequence: int
    time: float
    state: str
    kind: str
    text: str = ""
    variant: VariantRecord | None = None


@dataclasses.dataclass(frozen=True)
class ImportHeader:
    """The first part of an import: where to register and what the model is."""

    model_name: str
    description: str = ""
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    size_bytes: int = 0
    task: str = ""
    format: str = ""  # "" or "onnx": one ONNX file; "hf": a tar of a Hugging Face folder
    calibration_npz: bytes = b""  # representative inputs: reference statistics for drift monitoring
    calibration_text: bytes = b""  # an HF folder's calibration sentences (UTF-8 lines or JSON lines)


@dataclasses.dataclass(frozen=True)
class ImportPart:
    """One message of an import stream: exactly one of header, chunk, sha256 ("kind" says which;
    "" for a message that carried none)."""

    kind: str
    header: ImportHeader | None = None
    chunk: bytes = b""
    sha256: str = ""


@dataclasses.dataclass(frozen=True)
class Imported:
    """A registered import: the version and what validation found."""

    registered: Ref
    opset: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    reference_rows: int = 0  # calibration rows behind the registered reference.json (0 = none)


# -- JSON ------------------------------------------------------------------------------------------


def to_json(value: Any) -> Any:
    """Records as JSON-ready values (tuples become lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def ref_of(data: dict[str, Any]) -> Ref:
    return Ref(**data)


def spec_of(data: dict[str, Any]) -> ExportSpec:
    fields = dict(data)
    fields["variants"] = tuple(fields.get("variants", ()))
    calibration = dict(fields.get("calibration", {}))
    calibration["data"] = ref_of(calibration.get("data", {}))
    fields["calibration"] = Calibration(**calibration)
    fields["tolerances"] = {k: Tolerance(**v) for k, v in fields.get("tolerances", {}).items()}
    return ExportSpec(**fields)


def request_of(data: dict[str, Any]) -> ExportRequest:
    fields = dict(data)
    fields["source"] = ref_of(fields["source"])
    fields["spec"] = spec_of(fields["spec"])
    return ExportRequest(**fields)


def report_of(data: dict[str, Any]) -> Report:
    fields = dict(data)
    fields["outputs"] = [OutputProof(**o) for o in fields.get("outputs", [])]
    fields["candidates"] = [Candidate(**c) for c in fields.get("candidates", [])]
    return Report(**fields)


def variant_of(data: dict[str, Any]) -> VariantRecord:
    return VariantRecord(report_of(data["report"]), ref_of(data.get("registered", {})))


def job_of(data: dict[str, Any]) -> JobRecord:
    fields = dict(data)
    fields["source"] = ref_of(fields["source"])
    fields["spec"] = spec_of(fields["spec"])
    fields["reports"] = [variant_of(r) for r in fields.get("reports", [])]
    return JobRecord(**fields)


def event_of(data: dict[str, Any]) -> EventRecord:
    fields = dict(data)
    if fields.get("variant") is not None:
        fields["variant"] = variant_of(fields["variant"])
    return EventRecord(**fields)
