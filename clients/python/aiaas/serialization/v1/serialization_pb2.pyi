import datetime

from aiaas.common.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VariantReport(_message.Message):
    __slots__ = ("variant", "accepted", "reason", "registered", "max_abs_error", "mean_abs_error", "cosine_similarity", "top1_agreement", "metric_name", "metric_value", "reference_metric_value", "size_bytes", "latency_ms_batch1", "latency_ms_batch32", "preferred_provider", "settings", "num_samples", "worst_row_cosine", "p1_cosine", "max_rel_error", "worst_rows", "outputs", "candidates", "failed", "limits", "latency_vs_fp32_batch32")
    class SettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LimitsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    MAX_ABS_ERROR_FIELD_NUMBER: _ClassVar[int]
    MEAN_ABS_ERROR_FIELD_NUMBER: _ClassVar[int]
    COSINE_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    TOP1_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    METRIC_NAME_FIELD_NUMBER: _ClassVar[int]
    METRIC_VALUE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_METRIC_VALUE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_BATCH1_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_BATCH32_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    WORST_ROW_COSINE_FIELD_NUMBER: _ClassVar[int]
    P1_COSINE_FIELD_NUMBER: _ClassVar[int]
    MAX_REL_ERROR_FIELD_NUMBER: _ClassVar[int]
    WORST_ROWS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_VS_FP32_BATCH32_FIELD_NUMBER: _ClassVar[int]
    variant: str
    accepted: bool
    reason: str
    registered: _common_pb2.VersionRef
    max_abs_error: float
    mean_abs_error: float
    cosine_similarity: float
    top1_agreement: float
    metric_name: str
    metric_value: float
    reference_metric_value: float
    size_bytes: int
    latency_ms_batch1: float
    latency_ms_batch32: float
    preferred_provider: str
    settings: _containers.ScalarMap[str, str]
    num_samples: int
    worst_row_cosine: float
    p1_cosine: float
    max_rel_error: float
    worst_rows: _containers.RepeatedScalarFieldContainer[int]
    outputs: _containers.RepeatedCompositeFieldContainer[OutputProof]
    candidates: _containers.RepeatedCompositeFieldContainer[QuantizationCandidate]
    failed: bool
    limits: _containers.ScalarMap[str, float]
    latency_vs_fp32_batch32: float
    def __init__(self, variant: _Optional[str] = ..., accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., registered: _Optional[_Union[_common_pb2.VersionRef, _Mapping]] = ..., max_abs_error: _Optional[float] = ..., mean_abs_error: _Optional[float] = ..., cosine_similarity: _Optional[float] = ..., top1_agreement: _Optional[float] = ..., metric_name: _Optional[str] = ..., metric_value: _Optional[float] = ..., reference_metric_value: _Optional[float] = ..., size_bytes: _Optional[int] = ..., latency_ms_batch1: _Optional[float] = ..., latency_ms_batch32: _Optional[float] = ..., preferred_provider: _Optional[str] = ..., settings: _Optional[_Mapping[str, str]] = ..., num_samples: _Optional[int] = ..., worst_row_cosine: _Optional[float] = ..., p1_cosine: _Optional[float] = ..., max_rel_error: _Optional[float] = ..., worst_rows: _Optional[_Iterable[int]] = ..., outputs: _Optional[_Iterable[_Union[OutputProof, _Mapping]]] = ..., candidates: _Optional[_Iterable[_Union[QuantizationCandidate, _Mapping]]] = ..., failed: _Optional[bool] = ..., limits: _Optional[_Mapping[str, float]] = ..., latency_vs_fp32_batch32: _Optional[float] = ...) -> None: ...

class OutputProof(_message.Message):
    __slots__ = ("name", "worst_row_cosine", "p1_cosine", "max_abs_error", "max_rel_error", "worst_rows")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WORST_ROW_COSINE_FIELD_NUMBER: _ClassVar[int]
    P1_COSINE_FIELD_NUMBER: _ClassVar[int]
    MAX_ABS_ERROR_FIELD_NUMBER: _ClassVar[int]
    MAX_REL_ERROR_FIELD_NUMBER: _ClassVar[int]
    WORST_ROWS_FIELD_NUMBER: _ClassVar[int]
    name: str
    worst_row_cosine: float
    p1_cosine: float
    max_abs_error: float
    max_rel_error: float
    worst_rows: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., worst_row_cosine: _Optional[float] = ..., p1_cosine: _Optional[float] = ..., max_abs_error: _Optional[float] = ..., max_rel_error: _Optional[float] = ..., worst_rows: _Optional[_Iterable[int]] = ...) -> None: ...

class QuantizationCandidate(_message.Message):
    __slots__ = ("settings", "passed", "reason", "latency_ms_batch32", "worst_row_cosine")
    class SettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_BATCH32_FIELD_NUMBER: _ClassVar[int]
    WORST_ROW_COSINE_FIELD_NUMBER: _ClassVar[int]
    settings: _containers.ScalarMap[str, str]
    passed: bool
    reason: str
    latency_ms_batch32: float
    worst_row_cosine: float
    def __init__(self, settings: _Optional[_Mapping[str, str]] = ..., passed: _Optional[bool] = ..., reason: _Optional[str] = ..., latency_ms_batch32: _Optional[float] = ..., worst_row_cosine: _Optional[float] = ...) -> None: ...

class ExportJob(_message.Message):
    __slots__ = ("job_id", "state", "source", "options", "reports", "failure_reason", "trace_id", "training_job_id", "created_at", "started_at", "finished_at", "target_model_name")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    TRAINING_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    TARGET_MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: _common_pb2.JobState
    source: _common_pb2.VersionRef
    options: _common_pb2.ExportOptions
    reports: _containers.RepeatedCompositeFieldContainer[VariantReport]
    failure_reason: str
    trace_id: str
    training_job_id: str
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    target_model_name: str
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.JobState, str]] = ..., source: _Optional[_Union[_common_pb2.VersionRef, _Mapping]] = ..., options: _Optional[_Union[_common_pb2.ExportOptions, _Mapping]] = ..., reports: _Optional[_Iterable[_Union[VariantReport, _Mapping]]] = ..., failure_reason: _Optional[str] = ..., trace_id: _Optional[str] = ..., training_job_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., target_model_name: _Optional[str] = ...) -> None: ...

class StartExportJobRequest(_message.Message):
    __slots__ = ("source", "options", "request_id", "target_model_name", "training_job_id")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    TRAINING_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    source: _common_pb2.VersionRef
    options: _common_pb2.ExportOptions
    request_id: str
    target_model_name: str
    training_job_id: str
    def __init__(self, source: _Optional[_Union[_common_pb2.VersionRef, _Mapping]] = ..., options: _Optional[_Union[_common_pb2.ExportOptions, _Mapping]] = ..., request_id: _Optional[str] = ..., target_model_name: _Optional[str] = ..., training_job_id: _Optional[str] = ...) -> None: ...

class StartExportJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: ExportJob
    def __init__(self, job: _Optional[_Union[ExportJob, _Mapping]] = ...) -> None: ...

class GetExportJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetExportJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: ExportJob
    def __init__(self, job: _Optional[_Union[ExportJob, _Mapping]] = ...) -> None: ...

class ListExportJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: _common_pb2.JobState
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.JobState, str]] = ...) -> None: ...

class ListExportJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[ExportJob]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[ExportJob, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelExportJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelExportJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: ExportJob
    def __init__(self, job: _Optional[_Union[ExportJob, _Mapping]] = ...) -> None: ...

class WatchExportJobRequest(_message.Message):
    __slots__ = ("job_id", "after_sequence")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_sequence: int
    def __init__(self, job_id: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class WatchExportJobResponse(_message.Message):
    __slots__ = ("sequence", "state", "time", "state_changed", "variant", "message")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGED_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    state: _common_pb2.JobState
    time: _timestamp_pb2.Timestamp
    state_changed: str
    variant: VariantReport
    message: str
    def __init__(self, sequence: _Optional[int] = ..., state: _Optional[_Union[_common_pb2.JobState, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state_changed: _Optional[str] = ..., variant: _Optional[_Union[VariantReport, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...

class ImportHeader(_message.Message):
    __slots__ = ("model_name", "description", "tags", "size_bytes", "task", "format", "calibration_npz", "calibration_text")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_NPZ_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_TEXT_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    description: str
    tags: _containers.ScalarMap[str, str]
    size_bytes: int
    task: str
    format: str
    calibration_npz: bytes
    calibration_text: bytes
    def __init__(self, model_name: _Optional[str] = ..., description: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., size_bytes: _Optional[int] = ..., task: _Optional[str] = ..., format: _Optional[str] = ..., calibration_npz: _Optional[bytes] = ..., calibration_text: _Optional[bytes] = ...) -> None: ...

class ImportModelRequest(_message.Message):
    __slots__ = ("header", "chunk", "sha256")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    header: ImportHeader
    chunk: bytes
    sha256: str
    def __init__(self, header: _Optional[_Union[ImportHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ..., sha256: _Optional[str] = ...) -> None: ...

class ImportModelResponse(_message.Message):
    __slots__ = ("registered", "signature", "opset", "reference_rows")
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    OPSET_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ROWS_FIELD_NUMBER: _ClassVar[int]
    registered: _common_pb2.VersionRef
    signature: _common_pb2.Signature
    opset: int
    reference_rows: int
    def __init__(self, registered: _Optional[_Union[_common_pb2.VersionRef, _Mapping]] = ..., signature: _Optional[_Union[_common_pb2.Signature, _Mapping]] = ..., opset: _Optional[int] = ..., reference_rows: _Optional[int] = ...) -> None: ...
