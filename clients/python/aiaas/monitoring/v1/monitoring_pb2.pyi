from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetDriftRequest(_message.Message):
    __slots__ = ("model_name", "version")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    version: str
    def __init__(self, model_name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class FeatureDrift(_message.Message):
    __slots__ = ("index", "psi", "name")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PSI_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    index: int
    psi: float
    name: str
    def __init__(self, index: _Optional[int] = ..., psi: _Optional[float] = ..., name: _Optional[str] = ...) -> None: ...

class GetDriftResponse(_message.Message):
    __slots__ = ("model_name", "version", "window_rows", "min_rows", "threshold", "max_psi", "prediction_psi", "features", "history", "reference", "drifted", "feedback_rows", "live_accuracy", "windows")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_ROWS_FIELD_NUMBER: _ClassVar[int]
    MIN_ROWS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_PSI_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_PSI_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    DRIFTED_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_ROWS_FIELD_NUMBER: _ClassVar[int]
    LIVE_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    version: str
    window_rows: int
    min_rows: int
    threshold: float
    max_psi: float
    prediction_psi: float
    features: _containers.RepeatedCompositeFieldContainer[FeatureDrift]
    history: _containers.RepeatedScalarFieldContainer[float]
    reference: str
    drifted: bool
    feedback_rows: int
    live_accuracy: float
    windows: int
    def __init__(self, model_name: _Optional[str] = ..., version: _Optional[str] = ..., window_rows: _Optional[int] = ..., min_rows: _Optional[int] = ..., threshold: _Optional[float] = ..., max_psi: _Optional[float] = ..., prediction_psi: _Optional[float] = ..., features: _Optional[_Iterable[_Union[FeatureDrift, _Mapping]]] = ..., history: _Optional[_Iterable[float]] = ..., reference: _Optional[str] = ..., drifted: _Optional[bool] = ..., feedback_rows: _Optional[int] = ..., live_accuracy: _Optional[float] = ..., windows: _Optional[int] = ...) -> None: ...

class RecordFeedbackRequest(_message.Message):
    __slots__ = ("model_name", "request_id", "labels")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    request_id: str
    labels: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, model_name: _Optional[str] = ..., request_id: _Optional[str] = ..., labels: _Optional[_Iterable[int]] = ...) -> None: ...

class RecordFeedbackResponse(_message.Message):
    __slots__ = ("version", "correct_rows", "live_accuracy", "feedback_rows")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CORRECT_ROWS_FIELD_NUMBER: _ClassVar[int]
    LIVE_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_ROWS_FIELD_NUMBER: _ClassVar[int]
    version: str
    correct_rows: int
    live_accuracy: float
    feedback_rows: int
    def __init__(self, version: _Optional[str] = ..., correct_rows: _Optional[int] = ..., live_accuracy: _Optional[float] = ..., feedback_rows: _Optional[int] = ...) -> None: ...
