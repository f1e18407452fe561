"""A text job's request: TrainingSpec.text parsed once by the codec into JobSpec.text, its checks, its
stored form, and the CLI flags that build it."""

from __future__ import annotations

import argparse

import pytest

from aiaas.cli import training_commands, training_spec
from aiaas.common.v1 import common_pb2
from aiaas.training.v1 import training_pb2
from aiaas_services.training import codec
from aiaas_services.training.spec import ConfigError, JobSpec, ModelRef


def text_spec(**text: object) -> training_pb2.TrainingSpec:
    spec = training_pb2.TrainingSpec(model_name="topics")
    spec.data.registry.ref.model_name, spec.data.registry.ref.version = "topics-data", 1
    spec.data.registry.artifact_name = "data.csv"
    spec.text.SetInParent()
    for field, value in text.items():
        if isinstance(value, common_pb2.VersionRef):
            getattr(spec.text, field).CopyFrom(value)
        else:
            setattr(spec.text, field, value)
    return spec


def check(spec: JobSpec) -> None:
    spec.check(max_epochs=100, max_world_size=4)


def test_modes_and_defaults() -> None:
    finetune = codec.job_spec_from_proto(text_spec(base=common_pb2.VersionRef(model_name="minilm", alias="prod")))
    assert finetune.text is not None and finetune.text.mode == "finetune" and finetune.text.role == "base"
    assert finetune.text.source == ModelRef("minilm", 0, "prod") and finetune.text.max_length == 128
    assert (finetune.train.epochs, finetune.train.batch_size, finetune.train.learning_rate) == (3, 16, 5e-5)
    assert finetune.train.optimizer == "adamw" and finetune.architecture == {}
    check(finetune)
    distill = codec.job_spec_from_proto(text_spec(teacher=common_pb2.VersionRef(model_name="topics", version=2)))
    assert distill.text is not None and (distill.text.mode, distill.text.role) == ("distill", "teacher")
    assert (distill.text.temperature, distill.text.alpha, distill.text.max_length) == (2.0, 0.7, 64)
    assert (distill.train.epochs, distill.train.learning_rate) == (15, 1e-3)
    scratch = codec.job_spec_from_proto(text_spec(max_length=32))
    assert scratch.text is not None and scratch.text.mode == "scratch" and scratch.text.source is None
    check(scratch)
    assert JobSpec.from_json(distill.to_json()) == distill and JobSpec.from_json(scratch.to_json()) == scratch


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ({"task": "token-classification"}, "spec.text.task"),
        ({"base": common_pb2.VersionRef(model_name="minilm")}, "a version or an alias"),
        (
            {
                "base": common_pb2.VersionRef(model_name="a", version=1),
                "teacher": common_pb2.VersionRef(model_name="b", version=1),
            },
            "not both",
        ),
        ({"max_length": 4}, "max_length"),
        ({"alpha": 1.5}, "alpha"),
        ({"student_hidden_size": 63}, "divisible by student_heads"),
    ],
)
def test_bad_text_specs_name_the_field(text: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        check(codec.job_spec_from_proto(text_spec(**text)))


def test_a_text_job_needs_a_text_table_and_no_architecture() -> None:
    spec = text_spec()
    spec.data.registry.artifact_name = "data.npz"
    with pytest.raises(ConfigError, match=r"\.csv, \.jsonl or \.json"):
        check(codec.job_spec_from_proto(spec))
    spec = text_spec()
    spec.architecture.mlp.SetInParent()
    with pytest.raises(ConfigError, match="architecture is not used"):
        check(codec.job_spec_from_proto(spec))
    spec = text_spec()
    spec.data.sklearn = "digits"
    with pytest.raises(ConfigError, match=r"spec\.data\.registry"):
        check(codec.job_spec_from_proto(spec))


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    training_commands.register(parser.add_subparsers())
    return parser.parse_args(["train", *argv])


def test_cli_flags_build_text_specs() -> None:
    data = ("--data", "registry:topics-data/1/data.csv")
    spec = training_spec.build_spec(parse("topics", "--finetune", "minilm:1", *data, "--max-length", "32"))
    assert spec.text.base == common_pb2.VersionRef(model_name="minilm", version=1) and spec.text.max_length == 32
    assert not spec.architecture.WhichOneof("kind") and spec.data.registry.artifact_name == "data.csv"
    spec = training_spec.build_spec(
        parse("s", "--distill", "topics@production", *data, "--temperature", "3", "--export", "fp32", "--alias", "prod")
    )
    assert spec.text.teacher.alias == "production" and spec.text.temperature == 3.0
    assert spec.export.set_alias == "prod"
    assert training_spec.build_spec(parse("s", "--from-scratch", *data)).HasField("text")
    for argv, words in (
        (("s", "--finetune", "a:1", "--distill", "b:1", *data), "choose one"),
        (("s", "--finetune", "a:1", "--arch", "mlp", *data), "takes no --arch"),
        (("s", "--finetune", "a:1", "--data", "sklearn:digits"), "registry:MODEL/VERSION/data.csv"),
        (("s", "--max-length", "8", "--data", "sklearn:digits"), "need --finetune"),
        (("s", "--finetune", "minilm", *data), "model:NUMBER or model@ALIAS"),
    ):
        with pytest.raises(ValueError, match=words):
            training_spec.build_spec(parse(*argv))
