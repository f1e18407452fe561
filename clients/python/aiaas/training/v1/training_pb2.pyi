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

class Activation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTIVATION_UNSPECIFIED: _ClassVar[Activation]
    ACTIVATION_RELU: _ClassVar[Activation]
    ACTIVATION_GELU: _ClassVar[Activation]
    ACTIVATION_TANH: _ClassVar[Activation]
    ACTIVATION_SIGMOID: _ClassVar[Activation]
    ACTIVATION_SILU: _ClassVar[Activation]

class RnnCell(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RNN_CELL_UNSPECIFIED: _ClassVar[RnnCell]
    RNN_CELL_RNN: _ClassVar[RnnCell]
    RNN_CELL_LSTM: _ClassVar[RnnCell]
    RNN_CELL_GRU: _ClassVar[RnnCell]

class OptimizerKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPTIMIZER_KIND_UNSPECIFIED: _ClassVar[OptimizerKind]
    OPTIMIZER_KIND_SGD: _ClassVar[OptimizerKind]
    OPTIMIZER_KIND_ADAM: _ClassVar[OptimizerKind]
    OPTIMIZER_KIND_ADAMW: _ClassVar[OptimizerKind]

class LrSchedule(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LR_SCHEDULE_UNSPECIFIED: _ClassVar[LrSchedule]
    LR_SCHEDULE_CONSTANT: _ClassVar[LrSchedule]
    LR_SCHEDULE_STEP: _ClassVar[LrSchedule]
    LR_SCHEDULE_COSINE: _ClassVar[LrSchedule]
ACTIVATION_UNSPECIFIED: Activation
ACTIVATION_RELU: Activation
ACTIVATION_GELU: Activation
ACTIVATION_TANH: Activation
ACTIVATION_SIGMOID: Activation
ACTIVATION_SILU: Activation
RNN_CELL_UNSPECIFIED: RnnCell
RNN_CELL_RNN: RnnCell
RNN_CELL_LSTM: RnnCell
RNN_CELL_GRU: RnnCell
OPTIMIZER_KIND_UNSPECIFIED: OptimizerKind
OPTIMIZER_KIND_SGD: OptimizerKind
OPTIMIZER_KIND_ADAM: OptimizerKind
OPTIMIZER_KIND_ADAMW: OptimizerKind
LR_SCHEDULE_UNSPECIFIED: LrSchedule
LR_SCHEDULE_CONSTANT: LrSchedule
LR_SCHEDULE_STEP: LrSchedule
LR_SCHEDULE_COSINE: LrSchedule

class LinearSpec(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MlpSpec(_message.Message):
    __slots__ = ("hidden_sizes", "activation", "dropout")
    HIDDEN_SIZES_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    DROPOUT_FIELD_NUMBER: _ClassVar[int]
    hidden_sizes: _containers.RepeatedScalarFieldContainer[int]
    activation: Activation
    dropout: float
    def __init__(self, hidden_sizes: _Optional[_Iterable[int]] = ..., activation: _Optional[_Union[Activation, str]] = ..., dropout: _Optional[float] = ...) -> None: ...

class CnnSpec(_message.Message):
    __slots__ = ("channels", "height", "width", "conv_channels", "hidden_sizes", "dropout")
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    CONV_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_SIZES_FIELD_NUMBER: _ClassVar[int]
    DROPOUT_FIELD_NUMBER: _ClassVar[int]
    channels: int
    height: int
    width: int
    conv_channels: _containers.RepeatedScalarFieldContainer[int]
    hidden_sizes: _containers.RepeatedScalarFieldContainer[int]
    dropout: float
    def __init__(self, channels: _Optional[int] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., conv_channels: _Optional[_Iterable[int]] = ..., hidden_sizes: _Optional[_Iterable[int]] = ..., dropout: _Optional[float] = ...) -> None: ...

class RnnSpec(_message.Message):
    __slots__ = ("cell", "hidden_size", "num_layers", "sequence_length", "bidirectional", "dropout")
    CELL_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_SIZE_FIELD_NUMBER: _ClassVar[int]
    NUM_LAYERS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    BIDIRECTIONAL_FIELD_NUMBER: _ClassVar[int]
    DROPOUT_FIELD_NUMBER: _ClassVar[int]
    cell: RnnCell
    hidden_size: int
    num_layers: int
    sequence_length: int
    bidirectional: bool
    dropout: float
    def __init__(self, cell: _Optional[_Union[RnnCell, str]] = ..., hidden_size: _Optional[int] = ..., num_layers: _Optional[int] = ..., sequence_length: _Optional[int] = ..., bidirectional: _Optional[bool] = ..., dropout: _Optional[float] = ...) -> None: ...

class TransformerSpec(_message.Message):
    __slots__ = ("sequence_length", "d_model", "num_heads", "num_layers", "dim_feedforward", "dropout")
    SEQUENCE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    D_MODEL_FIELD_NUMBER: _ClassVar[int]
    NUM_HEADS_FIELD_NUMBER: _ClassVar[int]
    NUM_LAYERS_FIELD_NUMBER: _ClassVar[int]
    DIM_FEEDFORWARD_FIELD_NUMBER: _ClassVar[int]
    DROPOUT_FIELD_NUMBER: _ClassVar[int]
    sequence_length: int
    d_model: int
    num_heads: int
    num_layers: int
    dim_feedforward: int
    dropout: float
    def __init__(self, sequence_length: _Optional[int] = ..., d_model: _Optional[int] = ..., num_heads: _Optional[int] = ..., num_layers: _Optional[int] = ..., dim_feedforward: _Optional[int] = ..., dropout: _Optional[float] = ...) -> None: ...

class VaeSpec(_message.Message):
    __slots__ = ("latent_size", "hidden_sizes", "beta")
    LATENT_SIZE_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_SIZES_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    latent_size: int
    hidden_sizes: _containers.RepeatedScalarFieldContainer[int]
    beta: float
    def __init__(self, latent_size: _Optional[int] = ..., hidden_sizes: _Optional[_Iterable[int]] = ..., beta: _Optional[float] = ...) -> None: ...

class Architecture(_message.Message):
    __slots__ = ("linear", "mlp", "cnn", "rnn", "transformer", "vae")
    LINEAR_FIELD_NUMBER: _ClassVar[int]
    MLP_FIELD_NUMBER: _ClassVar[int]
    CNN_FIELD_NUMBER: _ClassVar[int]
    RNN_FIELD_NUMBER: _ClassVar[int]
    TRANSFORMER_FIELD_NUMBER: _ClassVar[int]
    VAE_FIELD_NUMBER: _ClassVar[int]
    linear: LinearSpec
    mlp: MlpSpec
    cnn: CnnSpec
    rnn: RnnSpec
    transformer: TransformerSpec
    vae: VaeSpec
    def __init__(self, linear: _Optional[_Union[LinearSpec, _Mapping]] = ..., mlp: _Optional[_Union[MlpSpec, _Mapping]] = ..., cnn: _Optional[_Union[CnnSpec, _Mapping]] = ..., rnn: _Optional[_Union[RnnSpec, _Mapping]] = ..., transformer: _Optional[_Union[TransformerSpec, _Mapping]] = ..., vae: _Optional[_Union[VaeSpec, _Mapping]] = ...) -> None: ...

class SyntheticData(_message.Message):
    __slots__ = ("kind", "num_samples", "num_features", "num_classes", "noise", "slope", "intercept")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    NUM_FEATURES_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    NOISE_FIELD_NUMBER: _ClassVar[int]
    SLOPE_FIELD_NUMBER: _ClassVar[int]
    INTERCEPT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    num_samples: int
    num_features: int
    num_classes: int
    noise: float
    slope: float
    intercept: float
    def __init__(self, kind: _Optional[str] = ..., num_samples: _Optional[int] = ..., num_features: _Optional[int] = ..., num_classes: _Optional[int] = ..., noise: _Optional[float] = ..., slope: _Optional[float] = ..., intercept: _Optional[float] = ...) -> None: ...

class RegistryDataset(_message.Message):
    __slots__ = ("ref", "artifact_name", "task")
    REF_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.VersionRef
    artifact_name: str
    task: str
    def __init__(self, ref: _Optional[_Union[_common_pb2.VersionRef, _Mapping]] = ..., artifact_name: _Optional[str] = ..., task: _Optional[str] = ...) -> None: ...

class DataSpec(_message.Message):
    __slots__ = ("sklearn", "synthetic", "registry", "validation_fraction", "test_fraction", "no_standardize")
    SKLEARN_FIELD_NUMBER: _ClassVar[int]
    SYNTHETIC_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FRACTION_FIELD_NUMBER: _ClassVar[int]
    TEST_FRACTION_FIELD_NUMBER: _ClassVar[int]
    NO_STANDARDIZE_FIELD_NUMBER: _ClassVar[int]
    sklearn: str
    synthetic: SyntheticData
    registry: RegistryDataset
    validation_fraction: float
    test_fraction: float
    no_standardize: bool
    def __init__(self, sklearn: _Optional[str] = ..., synthetic: _Optional[_Union[SyntheticData, _Mapping]] = ..., registry: _Optional[_Union[RegistryDataset, _Mapping]] = ..., validation_fraction: _Optional[float] = ..., test_fraction: _Optional[float] = ..., no_standardize: _Optional[bool] = ...) -> None: ...

class OptimizerSpec(_message.Message):
    __slots__ = ("kind", "learning_rate", "momentum", "weight_decay", "l1_penalty", "schedule", "step_size", "gamma", "grad_clip_norm")
    KIND_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    MOMENTUM_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    L1_PENALTY_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    STEP_SIZE_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    GRAD_CLIP_NORM_FIELD_NUMBER: _ClassVar[int]
    kind: OptimizerKind
    learning_rate: float
    momentum: float
    weight_decay: float
    l1_penalty: float
    schedule: LrSchedule
    step_size: int
    gamma: float
    grad_clip_norm: float
    def __init__(self, kind: _Optional[_Union[OptimizerKind, str]] = ..., learning_rate: _Optional[float] = ..., momentum: _Optional[float] = ..., weight_decay: _Optional[float] = ..., l1_penalty: _Optional[float] = ..., schedule: _Optional[_Union[LrSchedule, str]] = ..., step_size: _Optional[int] = ..., gamma: _Optional[float] = ..., grad_clip_norm: _Optional[float] = ...) -> None: ...

class EarlyStopping(_message.Message):
    __slots__ = ("metric", "patience", "min_delta")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    PATIENCE_FIELD_NUMBER: _ClassVar[int]
    MIN_DELTA_FIELD_NUMBER: _ClassVar[int]
    metric: str
    patience: int
    min_delta: float
    def __init__(self, metric: _Optional[str] = ..., patience: _Optional[int] = ..., min_delta: _Optional[float] = ...) -> None: ...

class TrainingSpec(_message.Message):
    __slots__ = ("model_name", "architecture", "data", "optimizer", "epochs", "batch_size", "seed", "early_stopping", "device", "world_size", "export", "tags", "description", "text")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    EARLY_STOPPING_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    WORLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    architecture: Architecture
    data: DataSpec
    optimizer: OptimizerSpec
    epochs: int
    batch_size: int
    seed: int
    early_stopping: EarlyStopping
    device: str
    world_size: int
    export: _common_pb2.ExportOptions
    tags: _containers.ScalarMap[str, str]
    description: str
    text: TextSpec
    def __init__(self, model_name: _Optional[str] = ..., architecture: _Optional[_Union[Architecture, _Mapping]] = ..., data: _Optional[_Union[DataSpec, _Mapping]] = ..., optimizer: _Optional[_Union[OptimizerSpec, _Mapping]] = ..., epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., seed: _Optional[int] = ..., early_stopping: _Optional[_Union[EarlyStopping, _Mapping]] = ..., device: _Optional[str] = ..., world_size: _Optional[int] = ..., export: _Optional[_Union[_common_pb2.ExportOptions, _Mapping]] = ..., tags: _Optional[_Mapping[str, str]] = ..., description: _Optional[str] = ..., text: _Optional[_Union[TextSpec, _Mapping]] = ...) -> None: ...

class TextSpec(_message.Message):
    __slots__ = ("task", "base", "teacher", "max_length", "freeze_encoder", "temperature", "alpha", "student_vocab_size", "student_hidden_size", "student_layers", "student_heads")
    TASK_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    TEACHER_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    FREEZE_ENCODER_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    STUDENT_VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    STUDENT_HIDDEN_SIZE_FIELD_NUMBER: _ClassVar[int]
    STUDENT_LAYERS_FIELD_NUMBER: _ClassVar[int]
    STUDENT_HEADS_FIELD_NUMBER: _ClassVar[int]
    task: str
    base: _common_pb2.VersionRef
    teacher: _common_pb2.VersionRef
    max_length: int
    freeze_encoder: bool
    temperature: float
    alpha: float
    student_vocab_size: int
    student_hidden_size: int
    student_layers: int
    student_heads: int
    def __init__(self, task: _Optional[str] = ..., base: _Optional[_Union[_common_pb2.VersionRef, _Mapping]] = ..., teacher: _Optional[_Union[_common_pb2.VersionRef, _Mapping]] = ..., max_length: _Optional[int] = ..., freeze_encoder: _Optional[bool] = ..., temperature: _Optional[float] = ..., alpha: _Optional[float] = ..., student_vocab_size: _Optional[int] = ..., student_hidden_size: _Optional[int] = ..., student_layers: _Optional[int] = ..., student_heads: _Optional[int] = ...) -> None: ...

class EpochMetrics(_message.Message):
    __slots__ = ("epoch", "train", "validation", "learning_rate", "seconds")
    class TrainEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ValidationEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TRAIN_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    train: _containers.ScalarMap[str, float]
    validation: _containers.ScalarMap[str, float]
    learning_rate: float
    seconds: float
    def __init__(self, epoch: _Optional[int] = ..., train: _Optional[_Mapping[str, float]] = ..., validation: _Optional[_Mapping[str, float]] = ..., learning_rate: _Optional[float] = ..., seconds: _Optional[float] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "state", "spec", "failure_reason", "current_epoch", "total_epochs", "history", "test_metrics", "confusion_matrix", "num_classes", "registered", "export_job_id", "trace_id", "dataset_digest", "created_at", "started_at", "finished_at", "device")
    class TestMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    CURRENT_EPOCH_FIELD_NUMBER: _ClassVar[int]
    TOTAL_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    TEST_METRICS_FIELD_NUMBER: _ClassVar[int]
    CONFUSION_MATRIX_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    EXPORT_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_DIGEST_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: _common_pb2.JobState
    spec: TrainingSpec
    failure_reason: str
    current_epoch: int
    total_epochs: int
    history: _containers.RepeatedCompositeFieldContainer[EpochMetrics]
    test_metrics: _containers.ScalarMap[str, float]
    confusion_matrix: _containers.RepeatedScalarFieldContainer[int]
    num_classes: int
    registered: _common_pb2.VersionRef
    export_job_id: str
    trace_id: str
    dataset_digest: str
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    device: str
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.JobState, str]] = ..., spec: _Optional[_Union[TrainingSpec, _Mapping]] = ..., failure_reason: _Optional[str] = ..., current_epoch: _Optional[int] = ..., total_epochs: _Optional[int] = ..., history: _Optional[_Iterable[_Union[EpochMetrics, _Mapping]]] = ..., test_metrics: _Optional[_Mapping[str, float]] = ..., confusion_matrix: _Optional[_Iterable[int]] = ..., num_classes: _Optional[int] = ..., registered: _Optional[_Union[_common_pb2.VersionRef, _Mapping]] = ..., export_job_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., dataset_digest: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., device: _Optional[str] = ...) -> None: ...

class StartTrainingJobRequest(_message.Message):
    __slots__ = ("spec", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: TrainingSpec
    request_id: str
    def __init__(self, spec: _Optional[_Union[TrainingSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class StartTrainingJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: _common_pb2.JobState
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.JobState, str]] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id", "after_sequence")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_sequence: int
    def __init__(self, job_id: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("sequence", "state", "time", "state_changed", "epoch", "message")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGED_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    state: _common_pb2.JobState
    time: _timestamp_pb2.Timestamp
    state_changed: str
    epoch: EpochMetrics
    message: str
    def __init__(self, sequence: _Optional[int] = ..., state: _Optional[_Union[_common_pb2.JobState, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state_changed: _Optional[str] = ..., epoch: _Optional[_Union[EpochMetrics, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...
