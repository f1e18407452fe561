from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class CalibrationMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CALIBRATION_METHOD_UNSPECIFIED: _ClassVar[CalibrationMethod]
    CALIBRATION_METHOD_MINMAX: _ClassVar[CalibrationMethod]
    CALIBRATION_METHOD_ENTROPY: _ClassVar[CalibrationMethod]
    CALIBRATION_METHOD_PERCENTILE: _ClassVar[CalibrationMethod]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
CALIBRATION_METHOD_UNSPECIFIED: CalibrationMethod
CALIBRATION_METHOD_MINMAX: CalibrationMethod
CALIBRATION_METHOD_ENTROPY: CalibrationMethod
CALIBRATION_METHOD_PERCENTILE: CalibrationMethod

class VersionRef(_message.Message):
    __slots__ = ("model_name", "version", "alias")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    version: int
    alias: str
    def __init__(self, model_name: _Optional[str] = ..., version: _Optional[int] = ..., alias: _Optional[str] = ...) -> None: ...

class TensorSpec(_message.Message):
    __slots__ = ("name", "datatype", "shape")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATATYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    datatype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., datatype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class Signature(_message.Message):
    __slots__ = ("inputs", "outputs")
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    inputs: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    outputs: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    def __init__(self, inputs: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ...) -> None: ...

class CalibrationOptions(_message.Message):
    __slots__ = ("method", "per_channel", "num_samples", "calibration_data", "calibration_artifact")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PER_CHANNEL_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_DATA_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    method: CalibrationMethod
    per_channel: bool
    num_samples: int
    calibration_data: VersionRef
    calibration_artifact: str
    def __init__(self, method: _Optional[_Union[CalibrationMethod, str]] = ..., per_channel: _Optional[bool] = ..., num_samples: _Optional[int] = ..., calibration_data: _Optional[_Union[VersionRef, _Mapping]] = ..., calibration_artifact: _Optional[str] = ...) -> None: ...

class VariantTolerance(_message.Message):
    __slots__ = ("max_abs_error", "max_metric_drop", "min_top1_agreement", "min_worst_row_cosine", "min_p1_cosine", "max_rel_error")
    MAX_ABS_ERROR_FIELD_NUMBER: _ClassVar[int]
    MAX_METRIC_DROP_FIELD_NUMBER: _ClassVar[int]
    MIN_TOP1_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    MIN_WORST_ROW_COSINE_FIELD_NUMBER: _ClassVar[int]
    MIN_P1_COSINE_FIELD_NUMBER: _ClassVar[int]
    MAX_REL_ERROR_FIELD_NUMBER: _ClassVar[int]
    max_abs_error: float
    max_metric_drop: float
    min_top1_agreement: float
    min_worst_row_cosine: float
    min_p1_cosine: float
    max_rel_error: float
    def __init__(self, max_abs_error: _Optional[float] = ..., max_metric_drop: _Optional[float] = ..., min_top1_agreement: _Optional[float] = ..., min_worst_row_cosine: _Optional[float] = ..., min_p1_cosine: _Optional[float] = ..., max_rel_error: _Optional[float] = ...) -> None: ...

class ExportOptions(_message.Message):
    __slots__ = ("variants", "opset", "calibration", "pruning_sparsity", "tolerances", "reduce_range", "set_alias", "fixed_quantization", "keep_fp32", "structured_pruning")
    class TolerancesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: VariantTolerance
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[VariantTolerance, _Mapping]] = ...) -> None: ...
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    OPSET_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    PRUNING_SPARSITY_FIELD_NUMBER: _ClassVar[int]
    TOLERANCES_FIELD_NUMBER: _ClassVar[int]
    REDUCE_RANGE_FIELD_NUMBER: _ClassVar[int]
    SET_ALIAS_FIELD_NUMBER: _ClassVar[int]
    FIXED_QUANTIZATION_FIELD_NUMBER: _ClassVar[int]
    KEEP_FP32_FIELD_NUMBER: _ClassVar[int]
    STRUCTURED_PRUNING_FIELD_NUMBER: _ClassVar[int]
    variants: _containers.RepeatedScalarFieldContainer[str]
    opset: int
    calibration: CalibrationOptions
    pruning_sparsity: float
    tolerances: _containers.MessageMap[str, VariantTolerance]
    reduce_range: bool
    set_alias: str
    fixed_quantization: bool
    keep_fp32: str
    structured_pruning: float
    def __init__(self, variants: _Optional[_Iterable[str]] = ..., opset: _Optional[int] = ..., calibration: _Optional[_Union[CalibrationOptions, _Mapping]] = ..., pruning_sparsity: _Optional[float] = ..., tolerances: _Optional[_Mapping[str, VariantTolerance]] = ..., reduce_range: _Optional[bool] = ..., set_alias: _Optional[str] = ..., fixed_quantization: _Optional[bool] = ..., keep_fp32: _Optional[str] = ..., structured_pruning: _Optional[float] = ...) -> None: ...

class MetricPoint(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
