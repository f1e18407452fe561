"""Wire-level names the client library and the services share: metadata keys, enums, variant and name rules.

Plain Python (no grpc, no generated code), so a service's domain modules may import it. The enums' numbers
are the proto enums' numbers and a member's ``text`` is the lowercase form the CLI and JSON show
(``ModelFormat.ONNX.text == "onnx"``); tests/unit/test_wire.py checks both against the generated code.
"""

from __future__ import annotations

import enum
import re

# -- gRPC metadata keys ---------------------------------------------------------------------------
ACTOR_METADATA = "x-aiaas-actor"
"""Who a registry call acts for (the request's own ``actor`` field wins)."""
UPLOAD_ACCEPTED_METADATA = "x-aiaas-upload-accepted"
"""Initial-metadata key the registry sends once an upload's header passed its checks."""
AUTHORIZATION_METADATA = "authorization"
"""``Bearer <token>`` when the services run with tokens."""


class _WireEnum(enum.IntEnum):
    """An int enum (the proto's numbers) with a lowercase string form."""

    @property
    def text(self) -> str:
        """``PYTORCH_CHECKPOINT`` -> ``"pytorch_checkpoint"``."""
        return self.name.lower()


class ModelFormat(_WireEnum):
    """What a registry version holds (``aiaas.registry.v1.ModelFormat``)."""

    UNSPECIFIED = 0
    PYTORCH_CHECKPOINT = 1
    ONNX = 2
    DATASET = 3
    HF = 4  # a Hugging Face folder: config.json, *.safetensors, tokenizer files


class VersionStatus(_WireEnum):
    """Lifecycle of a registry version (``aiaas.registry.v1.VersionStatus``)."""

    UNSPECIFIED = 0
    PENDING = 1
    READY = 2
    FAILED = 3
    REJECTED = 4


class EventType(_WireEnum):
    """What a registry watch event reports (``aiaas.registry.v1.EventType``)."""

    UNSPECIFIED = 0
    MODEL_CREATED = 1
    MODEL_UPDATED = 2
    MODEL_DELETED = 3
    VERSION_CREATED = 4
    VERSION_STATUS_CHANGED = 5
    ALIAS_MOVED = 6
    ALIAS_DELETED = 7
    VERSION_UPDATED = 8


class JobState(_WireEnum):
    """State of a training or export job (``aiaas.common.v1.JobState``)."""

    UNSPECIFIED = 0
    QUEUED = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4
    CANCELLED = 5


TERMINAL_JOB_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class CalibrationMethod(_WireEnum):
    """How INT8 static quantization calibrates (``aiaas.common.v1.CalibrationMethod``; 0 means MINMAX)."""

    UNSPECIFIED = 0
    MINMAX = 1
    ENTROPY = 2
    PERCENTILE = 3


# Short names used by clients and metadata.
PYTORCH_CHECKPOINT = ModelFormat.PYTORCH_CHECKPOINT
ONNX = ModelFormat.ONNX
DATASET = ModelFormat.DATASET
HF = ModelFormat.HF
PENDING = VersionStatus.PENDING
READY = VersionStatus.READY
FAILED = VersionStatus.FAILED
REJECTED = VersionStatus.REJECTED

VARIANTS = ("fp32", "fp16", "int8-dynamic", "int8-static")
"""The ONNX variants the serialization service makes, by the names ExportOptions.variants uses."""

READ_PREFIXES: tuple[str, ...] = (
    "Get",
    "List",
    "Watch",
    "Download",
    "Server",
    "ModelReady",
    "ModelMetadata",
    "ModelInfer",
    "ModelStreamInfer",
    "ModelConfig",
    "ModelStatistics",
    "RepositoryIndex",
    "Explain",  # computes attributions, stores nothing
)
"""RPC method names that start with one of these only read: clients may retry them, and a read-scoped
token may call them. Every other method writes."""

# -- names ----------------------------------------------------------------------------------------
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,127}$")
"""A model or artifact name: letters, digits, '-', '_', '.', 1-128 chars, not starting with '.' (and no '..')."""
ALIAS_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
"""An alias: letters, digits, '-', '_', 1-64 chars, and not a plain number (that means a version)."""


def is_valid_name(value: str) -> bool:
    """Whether ``value`` is a valid model or artifact name."""
    return bool(NAME_PATTERN.match(value or "")) and ".." not in value


def is_valid_alias(value: str) -> bool:
    """Whether ``value`` is a valid alias."""
    return bool(ALIAS_PATTERN.match(value or "")) and not value.isdigit()
