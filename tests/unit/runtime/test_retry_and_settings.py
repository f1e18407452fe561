"""Retry policy (idempotent calls only) and the settings loader."""

from __future__ import annotations

import dataclasses
import json
import typing

import grpc
import pytest

from aiaas.client.retry import is_idempotent, retry_options, retry_service_config
from aiaas_services.runtime.errors import InvalidArgument, NotFound, status_for
from aiaas_services.runtime.settings import ServiceSettings, load_settings, setting


def test_only_reads_are_retried() -> None:
    config = json.loads(retry_service_config())
    names = {(n["service"], n["method"]) for n in config["methodConfig"][0]["name"]}
    assert ("aiaas.registry.v1.RegistryService", "GetVersion") in names
    assert ("aiaas.registry.v1.RegistryService", "DownloadArtifact") in names
    assert ("inference.GRPCInferenceService", "ModelInfer") in names
    for write in ("SetAlias", "CreateVersion", "UploadArtifact", "DeleteModel"):
        assert ("aiaas.registry.v1.RegistryService", write) not in names
    assert ("aiaas.training.v1.TrainingService", "StartTrainingJob") not in names
    assert config["methodConfig"][0]["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert is_idempotent("ListVersions") and not is_idempotent("RollbackAlias")


def test_grpc_accepts_the_retry_config() -> None:
    # An invalid service config makes channel creation or the first call fail loudly.
    channel = grpc.insecure_channel("127.0.0.1:1", options=retry_options())
    with pytest.raises(grpc.RpcError) as info:
        channel.unary_unary("/inference.GRPCInferenceService/ServerLive")(b"", timeout=0.5)
    assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    channel.close()


@dataclasses.dataclass(frozen=True)
class DemoSettings(ServiceSettings):
    env_prefix: typing.ClassVar[str] = "AIAAS_DEMO_"
    service_name: typing.ClassVar[str] = "demo"
    workers: int = setting(2, "worker processes")
    models: list[str] = setting([], "models")
    fast: bool = setting(False, "go fast")


def test_settings_env_then_flags() -> None:
    env = {"AIAAS_DEMO_WORKERS": "4", "AIAAS_HOME": "/data", "AIAAS_DEMO_MODELS": "a, b", "AIAAS_DEMO_FAST": "yes"}
    settings = load_settings(DemoSettings, ["--workers", "8"], env)
    assert settings.workers == 8  # flag beats env
    assert settings.home == "/data"  # shared field from the unprefixed variable
    assert settings.models == ["a", "b"]
    assert settings.fast is True


def test_settings_reject_garbage() -> None:
    with pytest.raises(ValueError, match="AIAAS_DEMO_WORKERS"):
        load_settings(DemoSettings, [], {"AIAAS_DEMO_WORKERS": "many"})
    with pytest.raises(SystemExit):
        load_settings(DemoSettings, ["--fast", "maybe"], {})


def test_error_table() -> None:
    assert status_for(NotFound("model 'x' not found")) == (grpc.StatusCode.NOT_FOUND, "model 'x' not found")
    assert status_for(InvalidArgument("bad"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    code, message = status_for(RuntimeError("/secret/path exploded"))
    assert code == grpc.StatusCode.INTERNAL and "/secret" not in message
    assert status_for(NotImplementedError())[0] == grpc.StatusCode.UNIMPLEMENTED
