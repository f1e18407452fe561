from aiaas.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExplainRequest(_message.Message):
    __slots__ = ("ref", "inputs", "target", "method", "steps", "baseline", "text")
    REF_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.VersionRef
    inputs: _containers.RepeatedScalarFieldContainer[float]
    target: int
    method: str
    steps: int
    baseline: _containers.RepeatedScalarFieldContainer[float]
    text: str
    def __init__(self, ref: _Optional[_Union[_common_pb2.VersionRef, _Mapping]] = ..., inputs: _Optional[_Iterable[float]] = ..., target: _Optional[int] = ..., method: _Optional[str] = ..., steps: _Optional[int] = ..., baseline: _Optional[_Iterable[float]] = ..., text: _Optional[str] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("model_name", "version", "explained_model", "explained_version", "method", "target", "attributions", "prediction", "baseline_prediction", "completeness_error", "tokens")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPLAINED_MODEL_FIELD_NUMBER: _ClassVar[int]
    EXPLAINED_VERSION_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    BASELINE_PREDICTION_FIELD_NUMBER: _ClassVar[int]
    COMPLETENESS_ERROR_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    version: int
    explained_model: str
    explained_version: int
    method: str
    target: int
    attributions: _containers.RepeatedScalarFieldContainer[float]
    prediction: float
    baseline_prediction: float
    completeness_error: float
    tokens: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model_name: _Optional[str] = ..., version: _Optional[int] = ..., explained_model: _Optional[str] = ..., explained_version: _Optional[int] = ..., method: _Optional[str] = ..., target: _Optional[int] = ..., attributions: _Optional[_Iterable[float]] = ..., prediction: _Optional[float] = ..., baseline_prediction: _Optional[float] = ..., completeness_error: _Optional[float] = ..., tokens: _Optional[_Iterable[str]] = ...) -> None: ...
