"""Text jobs the training service refuses before a job exists: the base or teacher is unknown, not a
Hugging Face checkpoint, or not a classifier; the task is not offered; the table is empty, unlabelled or
has a bad row. Each is a clear gRPC status whose message names the field or row, and nothing is registered."""

from __future__ import annotations

from pathlib import Path
from typing import TypeAlias

import grpc
import pytest

from aiaas.client.registry import DATASET, SyncRegistryClient
from aiaas.common.v1 import common_pb2
from aiaas.serialization.v1 import serialization_pb2 as pb
from aiaas.training.v1 import training_pb2, training_pb2_grpc
from tests.integration.text.conftest import MODEL, TOPICS_DATA

Stub: TypeAlias = training_pb2_grpc.TrainingServiceStub
TARGET = "refused-text"


def spec_for(data: tuple[str, int, str], **text: common_pb2.VersionRef | str) -> training_pb2.TrainingSpec:
    spec = training_pb2.TrainingSpec(model_name=TARGET, epochs=1)
    spec.data.registry.ref.model_name, spec.data.registry.ref.version = data[0], data[1]
    spec.data.registry.artifact_name = data[2]
    spec.text.SetInParent()
    for field, value in text.items():
        if isinstance(value, str):
            setattr(spec.text, field, value)
        else:
            getattr(spec.text, field).CopyFrom(value)
    return spec


def refused(stub: Stub, spec: training_pb2.TrainingSpec) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        stub.StartTrainingJob(training_pb2.StartTrainingJobRequest(spec=spec), timeout=60)
    return caught.value


def upload(registry: SyncRegistryClient, tmp_path: Path, name: str, payload: bytes) -> tuple[str, int, str]:
    path = tmp_path / name
    path.write_bytes(payload)
    version = registry.push("refused-data", {name: path}, format=DATASET, create_model=True)
    return ("refused-data", int(version.version), name)


def test_bad_sources_are_refused(
    training_stub: Stub, text_registry: SyncRegistryClient, topics_data: int, imported: pb.ImportModelResponse
) -> None:
    data = (TOPICS_DATA, topics_data, "data.csv")
    cases: list[tuple[dict[str, common_pb2.VersionRef | str], str, str]] = [
        ({"base": common_pb2.VersionRef(model_name="no-such-model", version=1)}, "NOT_FOUND", "no-such-model:1"),
        ({"base": common_pb2.VersionRef(model_name=MODEL, version=99)}, "NOT_FOUND", "no such model version"),
        (
            {"base": common_pb2.VersionRef(model_name=TOPICS_DATA, version=topics_data)},
            "FAILED_PRECONDITION",
            "not a Hugging Face checkpoint",
        ),
        (
            {"teacher": common_pb2.VersionRef(model_name=MODEL, version=imported.registered.version)},
            "FAILED_PRECONDITION",
            "a teacher must be a sequence-classification model",
        ),
        ({"base": common_pb2.VersionRef(model_name=MODEL, alias="nope")}, "NOT_FOUND", "minilm@nope"),
        ({"base": common_pb2.VersionRef(model_name=MODEL)}, "INVALID_ARGUMENT", "a version or an alias"),
        ({"task": "token-classification"}, "INVALID_ARGUMENT", "spec.text.task"),
        (
            {
                "base": common_pb2.VersionRef(model_name=MODEL, version=1),
                "teacher": common_pb2.VersionRef(model_name=MODEL, version=1),
            },
            "INVALID_ARGUMENT",
            "not both",
        ),
    ]
    for text, code, words in cases:
        error = refused(training_stub, spec_for(data, **text))
        assert error.code().name == code and words in (error.details() or ""), (text, error)


@pytest.mark.parametrize(
    ("name", "payload", "words"),
    [
        ("empty.csv", b"text,label\n", "has no rows"),
        ("unlabelled.csv", b"text\nhello\nworld\n", "columns text and label"),
        ("bad-row.csv", b"text,label\na b,x\nc d,x\ne f,y\ng h,y,extra\n", "row 5: more fields than the header"),
        ("blank-label.csv", b"text,label\na b,x\nc d,\n", "row 3"),
        ("one-class.jsonl", b'{"text": "a", "label": "x"}\n{"text": "b", "label": "x"}\n', "two labels"),
        ("few.csv", b"text,label\na,x\nb,x\nc,y\nd,y\ne,z\nf,z\n", "cannot be split"),
        ("data.npz", b"x", "must end with .csv, .jsonl or .json"),
    ],
)
def test_bad_tables_are_refused(
    training_stub: Stub, text_registry: SyncRegistryClient, tmp_path: Path, name: str, payload: bytes, words: str
) -> None:
    error = refused(training_stub, spec_for(upload(text_registry, tmp_path, name, payload)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and words in (error.details() or ""), error


def test_nothing_was_registered(training_stub: Stub, text_registry: SyncRegistryClient) -> None:
    spec = spec_for(("refused-missing-data", 1, "data.csv"))
    error = refused(training_stub, spec)
    assert error.code() == grpc.StatusCode.NOT_FOUND and "refused-missing-data" in (error.details() or "")
    with pytest.raises(grpc.RpcError) as caught:
        text_registry.get_model(TARGET)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
