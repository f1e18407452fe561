import datetime

from aiaas.common.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_FORMAT_UNSPECIFIED: _ClassVar[ModelFormat]
    MODEL_FORMAT_PYTORCH_CHECKPOINT: _ClassVar[ModelFormat]
    MODEL_FORMAT_ONNX: _ClassVar[ModelFormat]
    MODEL_FORMAT_DATASET: _ClassVar[ModelFormat]
    MODEL_FORMAT_HF: _ClassVar[ModelFormat]

class VersionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERSION_STATUS_UNSPECIFIED: _ClassVar[VersionStatus]
    VERSION_STATUS_PENDING: _ClassVar[VersionStatus]
    VERSION_STATUS_READY: _ClassVar[VersionStatus]
    VERSION_STATUS_FAILED: _ClassVar[VersionStatus]
    VERSION_STATUS_REJECTED: _ClassVar[VersionStatus]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_MODEL_CREATED: _ClassVar[EventType]
    EVENT_TYPE_MODEL_UPDATED: _ClassVar[EventType]
    EVENT_TYPE_MODEL_DELETED: _ClassVar[EventType]
    EVENT_TYPE_VERSION_CREATED: _ClassVar[EventType]
    EVENT_TYPE_VERSION_STATUS_CHANGED: _ClassVar[EventType]
    EVENT_TYPE_ALIAS_MOVED: _ClassVar[EventType]
    EVENT_TYPE_ALIAS_DELETED: _ClassVar[EventType]
    EVENT_TYPE_VERSION_UPDATED: _ClassVar[EventType]
MODEL_FORMAT_UNSPECIFIED: ModelFormat
MODEL_FORMAT_PYTORCH_CHECKPOINT: ModelFormat
MODEL_FORMAT_ONNX: ModelFormat
MODEL_FORMAT_DATASET: ModelFormat
MODEL_FORMAT_HF: ModelFormat
VERSION_STATUS_UNSPECIFIED: VersionStatus
VERSION_STATUS_PENDING: VersionStatus
VERSION_STATUS_READY: VersionStatus
VERSION_STATUS_FAILED: VersionStatus
VERSION_STATUS_REJECTED: VersionStatus
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_MODEL_CREATED: EventType
EVENT_TYPE_MODEL_UPDATED: EventType
EVENT_TYPE_MODEL_DELETED: EventType
EVENT_TYPE_VERSION_CREATED: EventType
EVENT_TYPE_VERSION_STATUS_CHANGED: EventType
EVENT_TYPE_ALIAS_MOVED: EventType
EVENT_TYPE_ALIAS_DELETED: EventType
EVENT_TYPE_VERSION_UPDATED: EventType

class RegisteredModel(_message.Message):
    __slots__ = ("name", "description", "tags", "aliases", "latest_version", "created_at", "updated_at")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AliasesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    tags: _containers.ScalarMap[str, str]
    aliases: _containers.ScalarMap[str, int]
    latest_version: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., aliases: _Optional[_Mapping[str, int]] = ..., latest_version: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Lineage(_message.Message):
    __slots__ = ("parent_version", "training_job_id", "export_job_id", "dataset_digest", "hyperparameters", "export_settings", "quantization_settings", "trace_id", "parent_model_name")
    class HyperparametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ExportSettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class QuantizationSettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PARENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRAINING_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EXPORT_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_DIGEST_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    EXPORT_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    QUANTIZATION_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    parent_version: int
    training_job_id: str
    export_job_id: str
    dataset_digest: str
    hyperparameters: _containers.ScalarMap[str, str]
    export_settings: _containers.ScalarMap[str, str]
    quantization_settings: _containers.ScalarMap[str, str]
    trace_id: str
    parent_model_name: str
    def __init__(self, parent_version: _Optional[int] = ..., training_job_id: _Optional[str] = ..., export_job_id: _Optional[str] = ..., dataset_digest: _Optional[str] = ..., hyperparameters: _Optional[_Mapping[str, str]] = ..., export_settings: _Optional[_Mapping[str, str]] = ..., quantization_settings: _Optional[_Mapping[str, str]] = ..., trace_id: _Optional[str] = ..., parent_model_name: _Optional[str] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("name", "sha256", "size_bytes", "media_type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    sha256: str
    size_bytes: int
    media_type: str
    def __init__(self, name: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., media_type: _Optional[str] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("model_name", "version", "format", "variant", "status", "status_reason", "signature", "metrics", "tags", "lineage", "artifacts", "description", "created_by", "created_at", "updated_at", "aliases", "required_artifacts")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_REASON_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    version: int
    format: ModelFormat
    variant: str
    status: VersionStatus
    status_reason: str
    signature: _common_pb2.Signature
    metrics: _containers.ScalarMap[str, float]
    tags: _containers.ScalarMap[str, str]
    lineage: Lineage
    artifacts: _containers.RepeatedCompositeFieldContainer[Artifact]
    description: str
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    aliases: _containers.RepeatedScalarFieldContainer[str]
    required_artifacts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model_name: _Optional[str] = ..., version: _Optional[int] = ..., format: _Optional[_Union[ModelFormat, str]] = ..., variant: _Optional[str] = ..., status: _Optional[_Union[VersionStatus, str]] = ..., status_reason: _Optional[str] = ..., signature: _Optional[_Union[_common_pb2.Signature, _Mapping]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., tags: _Optional[_Mapping[str, str]] = ..., lineage: _Optional[_Union[Lineage, _Mapping]] = ..., artifacts: _Optional[_Iterable[_Union[Artifact, _Mapping]]] = ..., description: _Optional[str] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., aliases: _Optional[_Iterable[str]] = ..., required_artifacts: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateModelRequest(_message.Message):
    __slots__ = ("name", "description", "tags", "exist_ok", "request_id")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    EXIST_OK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    tags: _containers.ScalarMap[str, str]
    exist_ok: bool
    request_id: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., exist_ok: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: RegisteredModel
    def __init__(self, model: _Optional[_Union[RegisteredModel, _Mapping]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: RegisteredModel
    def __init__(self, model: _Optional[_Union[RegisteredModel, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "name_prefix")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NAME_PREFIX_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    name_prefix: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., name_prefix: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "next_page_token")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[RegisteredModel]
    next_page_token: str
    def __init__(self, models: _Optional[_Iterable[_Union[RegisteredModel, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateModelRequest(_message.Message):
    __slots__ = ("name", "description", "tags", "remove_tags", "update_description", "request_id")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_TAGS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    tags: _containers.ScalarMap[str, str]
    remove_tags: _containers.RepeatedScalarFieldContainer[str]
    update_description: bool
    request_id: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., remove_tags: _Optional[_Iterable[str]] = ..., update_description: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class UpdateModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: RegisteredModel
    def __init__(self, model: _Optional[_Union[RegisteredModel, _Mapping]] = ...) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("name", "force", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    force: bool
    request_id: str
    def __init__(self, name: _Optional[str] = ..., force: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = ("deleted_versions",)
    DELETED_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    deleted_versions: int
    def __init__(self, deleted_versions: _Optional[int] = ...) -> None: ...

class CreateVersionRequest(_message.Message):
    __slots__ = ("model_name", "format", "variant", "signature", "metrics", "tags", "lineage", "description", "create_model", "required_artifacts", "artifacts", "ready", "request_id")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATE_MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    format: ModelFormat
    variant: str
    signature: _common_pb2.Signature
    metrics: _containers.ScalarMap[str, float]
    tags: _containers.ScalarMap[str, str]
    lineage: Lineage
    description: str
    create_model: bool
    required_artifacts: _containers.RepeatedScalarFieldContainer[str]
    artifacts: _containers.RepeatedCompositeFieldContainer[InlineArtifact]
    ready: bool
    request_id: str
    def __init__(self, model_name: _Optional[str] = ..., format: _Optional[_Union[ModelFormat, str]] = ..., variant: _Optional[str] = ..., signature: _Optional[_Union[_common_pb2.Signature, _Mapping]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., tags: _Optional[_Mapping[str, str]] = ..., lineage: _Optional[_Union[Lineage, _Mapping]] = ..., description: _Optional[str] = ..., create_model: _Optional[bool] = ..., required_artifacts: _Optional[_Iterable[str]] = ..., artifacts: _Optional[_Iterable[_Union[InlineArtifact, _Mapping]]] = ..., ready: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class InlineArtifact(_message.Message):
    __slots__ = ("name", "media_type", "content", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    media_type: str
    content: bytes
    sha256: str
    def __init__(self, name: _Optional[str] = ..., media_type: _Optional[str] = ..., content: _Optional[bytes] = ..., sha256: _Optional[str] = ...) -> None: ...

class CreateVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: ModelVersion
    def __init__(self, version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class GetVersionRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.VersionRef
    def __init__(self, ref: _Optional[_Union[_common_pb2.VersionRef, _Mapping]] = ...) -> None: ...

class GetVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: ModelVersion
    def __init__(self, version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class ListVersionsRequest(_message.Message):
    __slots__ = ("model_name", "page_size", "page_token", "status", "format", "parent_version")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    PARENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    page_size: int
    page_token: str
    status: VersionStatus
    format: ModelFormat
    parent_version: int
    def __init__(self, model_name: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., status: _Optional[_Union[VersionStatus, str]] = ..., format: _Optional[_Union[ModelFormat, str]] = ..., parent_version: _Optional[int] = ...) -> None: ...

class ListVersionsResponse(_message.Message):
    __slots__ = ("versions", "next_page_token")
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    next_page_token: str
    def __init__(self, versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateVersionRequest(_message.Message):
    __slots__ = ("ref", "metrics", "tags", "description", "update_description", "request_id")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REF_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.VersionRef
    metrics: _containers.ScalarMap[str, float]
    tags: _containers.ScalarMap[str, str]
    description: str
    update_description: bool
    request_id: str
    def __init__(self, ref: _Optional[_Union[_common_pb2.VersionRef, _Mapping]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., tags: _Optional[_Mapping[str, str]] = ..., description: _Optional[str] = ..., update_description: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class UpdateVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: ModelVersion
    def __init__(self, version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class SetVersionStatusRequest(_message.Message):
    __slots__ = ("ref", "status", "reason", "request_id")
    REF_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.VersionRef
    status: VersionStatus
    reason: str
    request_id: str
    def __init__(self, ref: _Optional[_Union[_common_pb2.VersionRef, _Mapping]] = ..., status: _Optional[_Union[VersionStatus, str]] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class SetVersionStatusResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: ModelVersion
    def __init__(self, version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("model_name", "version", "artifact_name", "media_type", "size_bytes")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_NAME_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    version: int
    artifact_name: str
    media_type: str
    size_bytes: int
    def __init__(self, model_name: _Optional[str] = ..., version: _Optional[int] = ..., artifact_name: _Optional[str] = ..., media_type: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class UploadArtifactRequest(_message.Message):
    __slots__ = ("header", "chunk", "sha256")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: bytes
    sha256: str
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ..., sha256: _Optional[str] = ...) -> None: ...

class UploadArtifactResponse(_message.Message):
    __slots__ = ("artifact", "deduplicated")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    artifact: Artifact
    deduplicated: bool
    def __init__(self, artifact: _Optional[_Union[Artifact, _Mapping]] = ..., deduplicated: _Optional[bool] = ...) -> None: ...

class DownloadArtifactRequest(_message.Message):
    __slots__ = ("ref", "artifact_name", "offset", "chunk_size")
    REF_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.VersionRef
    artifact_name: str
    offset: int
    chunk_size: int
    def __init__(self, ref: _Optional[_Union[_common_pb2.VersionRef, _Mapping]] = ..., artifact_name: _Optional[str] = ..., offset: _Optional[int] = ..., chunk_size: _Optional[int] = ...) -> None: ...

class DownloadArtifactResponse(_message.Message):
    __slots__ = ("description", "chunk")
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    description: ArtifactDescription
    chunk: bytes
    def __init__(self, description: _Optional[_Union[ArtifactDescription, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class ArtifactDescription(_message.Message):
    __slots__ = ("artifact", "version", "offset")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    artifact: Artifact
    version: int
    offset: int
    def __init__(self, artifact: _Optional[_Union[Artifact, _Mapping]] = ..., version: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class AliasMove(_message.Message):
    __slots__ = ("model_name", "alias", "from_version", "to_version", "actor", "reason", "moved_at")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MOVED_AT_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    alias: str
    from_version: int
    to_version: int
    actor: str
    reason: str
    moved_at: _timestamp_pb2.Timestamp
    def __init__(self, model_name: _Optional[str] = ..., alias: _Optional[str] = ..., from_version: _Optional[int] = ..., to_version: _Optional[int] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ..., moved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetAliasRequest(_message.Message):
    __slots__ = ("model_name", "alias", "version", "actor", "reason", "request_id")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    alias: str
    version: int
    actor: str
    reason: str
    request_id: str
    def __init__(self, model_name: _Optional[str] = ..., alias: _Optional[str] = ..., version: _Optional[int] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class SetAliasResponse(_message.Message):
    __slots__ = ("move",)
    MOVE_FIELD_NUMBER: _ClassVar[int]
    move: AliasMove
    def __init__(self, move: _Optional[_Union[AliasMove, _Mapping]] = ...) -> None: ...

class DeleteAliasRequest(_message.Message):
    __slots__ = ("model_name", "alias", "actor", "request_id")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    alias: str
    actor: str
    request_id: str
    def __init__(self, model_name: _Optional[str] = ..., alias: _Optional[str] = ..., actor: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteAliasResponse(_message.Message):
    __slots__ = ("move",)
    MOVE_FIELD_NUMBER: _ClassVar[int]
    move: AliasMove
    def __init__(self, move: _Optional[_Union[AliasMove, _Mapping]] = ...) -> None: ...

class RollbackAliasRequest(_message.Message):
    __slots__ = ("model_name", "alias", "actor", "reason", "request_id")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    alias: str
    actor: str
    reason: str
    request_id: str
    def __init__(self, model_name: _Optional[str] = ..., alias: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class RollbackAliasResponse(_message.Message):
    __slots__ = ("move",)
    MOVE_FIELD_NUMBER: _ClassVar[int]
    move: AliasMove
    def __init__(self, move: _Optional[_Union[AliasMove, _Mapping]] = ...) -> None: ...

class ListAliasHistoryRequest(_message.Message):
    __slots__ = ("model_name", "alias", "page_size", "page_token")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    alias: str
    page_size: int
    page_token: str
    def __init__(self, model_name: _Optional[str] = ..., alias: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAliasHistoryResponse(_message.Message):
    __slots__ = ("moves", "next_page_token")
    MOVES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    moves: _containers.RepeatedCompositeFieldContainer[AliasMove]
    next_page_token: str
    def __init__(self, moves: _Optional[_Iterable[_Union[AliasMove, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("sequence", "type", "model_name", "version", "alias", "from_version", "status", "time", "actor")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    type: EventType
    model_name: str
    version: int
    alias: str
    from_version: int
    status: VersionStatus
    time: _timestamp_pb2.Timestamp
    actor: str
    def __init__(self, sequence: _Optional[int] = ..., type: _Optional[_Union[EventType, str]] = ..., model_name: _Optional[str] = ..., version: _Optional[int] = ..., alias: _Optional[str] = ..., from_version: _Optional[int] = ..., status: _Optional[_Union[VersionStatus, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("after_sequence", "model_names")
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAMES_FIELD_NUMBER: _ClassVar[int]
    after_sequence: int
    model_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, after_sequence: _Optional[int] = ..., model_names: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchEventsResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: Event
    def __init__(self, event: _Optional[_Union[Event, _Mapping]] = ...) -> None: ...

class CollectGarbageRequest(_message.Message):
    __slots__ = ("dry_run",)
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    def __init__(self, dry_run: _Optional[bool] = ...) -> None: ...

class CollectGarbageResponse(_message.Message):
    __slots__ = ("blobs_deleted", "bytes_freed")
    BLOBS_DELETED_FIELD_NUMBER: _ClassVar[int]
    BYTES_FREED_FIELD_NUMBER: _ClassVar[int]
    blobs_deleted: int
    bytes_freed: int
    def __init__(self, blobs_deleted: _Optional[int] = ..., bytes_freed: _Optional[int] = ...) -> None: ...
