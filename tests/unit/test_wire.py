"""aiaas.wire matches the protos: the same numbers and names, so services and clients can use it on the wire."""

from __future__ import annotations

import pytest

from aiaas import wire
from aiaas.common.v1 import common_pb2
from aiaas.registry.v1 import registry_pb2


@pytest.mark.parametrize(
    ("ours", "theirs", "prefix"),
    [
        (wire.ModelFormat, registry_pb2.ModelFormat, "MODEL_FORMAT_"),
        (wire.VersionStatus, registry_pb2.VersionStatus, "VERSION_STATUS_"),
        (wire.EventType, registry_pb2.EventType, "EVENT_TYPE_"),
        (wire.JobState, common_pb2.JobState, "JOB_STATE_"),
        (wire.CalibrationMethod, common_pb2.CalibrationMethod, "CALIBRATION_METHOD_"),
    ],
)
def test_enums_match_the_protos(ours: type, theirs: object, prefix: str) -> None:
    proto = {name.removeprefix(prefix): number for name, number in theirs.items()}  # type: ignore[attr-defined]
    assert {member.name: int(member) for member in ours} == proto  # type: ignore[attr-defined]


def test_text_is_the_lowercase_name() -> None:
    assert wire.ModelFormat.PYTORCH_CHECKPOINT.text == "pytorch_checkpoint"
    assert wire.JobState.SUCCEEDED.text == "succeeded"


def test_members_go_into_messages_as_numbers() -> None:
    # the stubs type these fields as the generated enum; any int with its numbers is what goes on the wire
    version = registry_pb2.ModelVersion(format=wire.ONNX, status=wire.READY)  # type: ignore[arg-type]
    assert version.format == registry_pb2.MODEL_FORMAT_ONNX
    assert version.status == wire.VersionStatus.READY


@pytest.mark.parametrize("name", ["digits-mlp", "a", "v1.2_x", "A" * 128])
def test_valid_names(name: str) -> None:
    assert wire.is_valid_name(name)


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "a b", "a..b", "A" * 129])
def test_invalid_names(name: str) -> None:
    assert not wire.is_valid_name(name)


def test_aliases() -> None:
    assert wire.is_valid_alias("production")
    assert not wire.is_valid_alias("12")
    assert not wire.is_valid_alias("a.b")
