"""Per-model scopes, rate limits and usage metering with real processes: a registry that keeps the usage,
and an inference service serving two of its models to two tokens."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from aiaas.cli.main import main as cli
from aiaas.oip.v2 import grpc_service_pb2 as pb
from aiaas.oip.v2 import grpc_service_pb2_grpc
from tests.support.processes import ServiceProcess, start_service

MODELS = ("digits-mlp", "other-mlp")


def infer_request(model: str, rows: int) -> pb.ModelInferRequest:
    x = np.random.default_rng(rows).random((rows, 64), dtype=np.float32)
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.append(pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=x.shape))
    request.raw_input_contents.append(x.tobytes())
    return request


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    from aiaas.client.registry import ONNX, SyncRegistryClient
    from aiaas_services.inference.examples import export_mlp

    root = tmp_path_factory.mktemp("scopes")
    registry_tokens = root / "registry-tokens.json"
    registry_tokens.write_text(
        json.dumps(
            {
                "deployer": {"principal": "deployer", "scopes": ["read", "write"]},
                "inference-svc": {"principal": "inference", "scopes": ["read", "write"]},
                "foo-writer": {"principal": "foo-ci", "scopes": ["read:foo", "write:models/foo"]},
            }
        )
    )
    inference_tokens = root / "inference-tokens.json"
    inference_tokens.write_text(
        json.dumps(
            {
                "acme-token": {"principal": "acme", "scopes": ["read:digits-*"], "rate_per_second": 0.5, "burst": 3},
                "globex-token": {"principal": "globex", "scopes": ["read"]},
                # For the REST door (test_rest_door_has_the_same_scopes_limits_quotas_and_usage):
                "webapp-token": {
                    "principal": "webapp",
                    "scopes": ["read:digits-*"],
                    "rate_per_second": 0.5,
                    "burst": 4,
                },
                "metered-token": {
                    "principal": "metered",
                    "scopes": ["read"],
                    "quota": {"requests": 3, "per_seconds": 86400},
                },
                "both-token": {"principal": "both", "scopes": ["read"]},
            }
        )
    )
    env = {"OTEL_TRACES_EXPORTER": "none"}
    registry = start_service("registry", root / "registry", env={**env, "AIAAS_AUTH_TOKENS_FILE": str(registry_tokens)})
    inference = None
    try:
        with SyncRegistryClient(registry.address, metadata=[("authorization", "Bearer deployer")]) as client:
            for seed, name in enumerate(MODELS):
                version = client.push(name, {"model.onnx": export_mlp(root / f"{name}.onnx", seed=seed)}, format=ONNX)
                client.set_alias(name, "production", version.version)
        inference = start_service(
            "inference",
            root / "inference",
            env={
                **env,
                "AIAAS_AUTH_TOKENS_FILE": str(inference_tokens),
                "AIAAS_INFERENCE_REGISTRY_TARGET": registry.address,
                "AIAAS_INFERENCE_MODELS": ",".join(MODELS),
                "AIAAS_SERVICE_TOKEN": "inference-svc",
                "AIAAS_INFERENCE_USAGE_FLUSH_SECONDS": "0.3",
            },
        )
        with grpc.insecure_channel(inference.address) as channel:
            stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
            deadline = time.monotonic() + 90
            for name in MODELS:
                ready = pb.ModelReadyRequest(name=name)
                while not stub.ModelReady(ready, metadata=[("authorization", "Bearer globex-token")]).ready:
                    assert time.monotonic() < deadline, inference.log()[-3000:]
                    time.sleep(0.2)
        yield registry, inference
    finally:
        if inference is not None:
            inference.terminate()
        registry.terminate()


def usage_report(registry: ServiceProcess, capsys: pytest.CaptureFixture[str], *extra: str) -> list[dict[str, Any]]:
    capsys.readouterr()
    code = cli(["usage", "--target", registry.address, "--token", "deployer", "--json", *extra])
    out = capsys.readouterr().out
    assert code == 0, out
    report: list[dict[str, Any]] = json.loads(out)
    return report


def assert_usage_settles(
    registry: ServiceProcess,
    inference: ServiceProcess,
    capsys: pytest.CaptureFixture[str],
    expected: dict[tuple[str, str], tuple[int, int]],
) -> None:
    """Within 30 s the usage report of ``expected``'s principals shows exactly its (requests, rows)."""
    principals = {principal for principal, _ in expected}
    deadline = time.monotonic() + 30
    while True:
        report = [e for e in usage_report(registry, capsys) if e["principal"] in principals]
        got = {(e["principal"], e["model"]): (int(e["requests"]), int(e["rows"])) for e in report}
        if got == expected or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert got == expected, inference.log()[-3000:]
    assert all(e["compute_seconds"] > 0 for e in report)


def test_model_scope_rate_limit_and_exact_usage(
    stack: tuple[ServiceProcess, ServiceProcess], capsys: pytest.CaptureFixture[str]
) -> None:
    registry, inference = stack
    acme = [("authorization", "Bearer acme-token")]
    globex = [("authorization", "Bearer globex-token")]
    with grpc.insecure_channel(inference.address) as channel:
        stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as denied:  # outside the token's models (this spends one token)
            stub.ModelInfer(infer_request("other-mlp", 2), metadata=acme)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "may not read model 'other-mlp'" in denied.value.details()

        for _ in range(2):  # the rest of the burst of 3
            assert stub.ModelInfer(infer_request("digits-mlp", 4), metadata=acme).outputs[0].shape == [4, 10]
        with pytest.raises(grpc.RpcError) as limited:
            stub.ModelInfer(infer_request("digits-mlp", 4), metadata=acme)
        assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        trailing = dict(limited.value.trailing_metadata() or ())
        assert trailing["retry-after"] in ("1", "2"), trailing
        assert 0 < int(trailing["grpc-retry-pushback-ms"]) <= 2000
        time.sleep(int(trailing["retry-after"]))
        assert stub.ModelInfer(infer_request("digits-mlp", 4), metadata=acme).outputs[0].shape == [4, 10]

        for rows in (1, 5):  # an unlimited token, on both models
            stub.ModelInfer(infer_request("other-mlp", rows), metadata=globex)
        stub.ModelInfer(infer_request("digits-mlp", 2), metadata=globex)
        with pytest.raises(grpc.RpcError) as unknown:
            stub.ModelInfer(infer_request("digits-mlp", 2), metadata=[("authorization", "Bearer nope")])
        assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED

    expected = {
        ("acme", "digits-mlp"): (3, 12),
        ("globex", "digits-mlp"): (1, 2),
        ("globex", "other-mlp"): (2, 6),
    }
    assert_usage_settles(registry, inference, capsys, expected)
    only_acme = usage_report(registry, capsys, "--principal", "acme", "--since", "1h")
    assert [(e["model"], int(e["requests"])) for e in only_acme] == [("digits-mlp", 3)]
    assert usage_report(registry, capsys, "--since", "2999-01-01T00:00") == []

    # The table form, as a person reads it.
    capsys.readouterr()
    assert cli(["usage", "--target", registry.address, "--token", "deployer", "--model", "other-mlp"]) == 0
    table = capsys.readouterr().out
    assert "globex" in table and "other-mlp" in table and "acme" not in table

    # Usage reports are written by the inference service's own token, and audited like every write.
    audit = (registry.home / "audit" / "registry.jsonl").read_text()
    assert '"principal": "inference"' in audit and "RecordUsage" in audit


def test_usage_needs_auth_like_every_read(stack: tuple[ServiceProcess, ServiceProcess], capsys: Any) -> None:
    registry, _ = stack
    assert cli(["usage", "--target", registry.address, "--json"]) == 1
    assert "UNAUTHENTICATED" in capsys.readouterr().err


def test_write_scope_limited_to_one_model_covers_streamed_uploads(
    stack: tuple[ServiceProcess, ServiceProcess], tmp_path: Path
) -> None:
    from aiaas.client.registry import SyncRegistryClient

    registry, _ = stack
    weights = tmp_path / "w.bin"
    weights.write_bytes(os.urandom(300_000))
    with SyncRegistryClient(registry.address, metadata=[("authorization", "Bearer deployer")]) as deployer:
        other = deployer.create_version("bar")
    with SyncRegistryClient(registry.address, metadata=[("authorization", "Bearer foo-writer")]) as writer:
        version = writer.push("foo", {"w.bin": weights}, inline_bytes=0)  # header, then chunks naming no model
        assert version.model_name == "foo" and version.artifacts[0].size_bytes == 300_000
        with pytest.raises(grpc.RpcError) as denied:
            writer.upload_file("bar", other.version, "w.bin", weights)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "may not write model 'bar'" in (denied.value.details() or "")
        with pytest.raises(grpc.RpcError) as listing:
            writer.list_models()
        assert listing.value.code() == grpc.StatusCode.PERMISSION_DENIED and "not about one model" in (
            listing.value.details() or ""
        )


def rest_body(rows: int, binary: bool) -> tuple[bytes, dict[str, str]]:
    """An infer body of ``rows`` rows, JSON or with the binary tensor extension."""
    x = np.random.default_rng(rows).random((rows, 64), dtype=np.float32)
    tensor: dict[str, Any] = {"name": "input", "shape": [rows, 64], "datatype": "FP32"}
    if not binary:
        tensor["data"] = x.reshape(-1).tolist()
        return json.dumps({"inputs": [tensor]}).encode(), {"Content-Type": "application/json"}
    tensor["parameters"] = {"binary_data_size": x.nbytes}
    header = json.dumps({"inputs": [tensor]}).encode()
    return header + x.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


def test_rest_door_has_the_same_scopes_limits_quotas_and_usage(
    stack: tuple[ServiceProcess, ServiceProcess], capsys: pytest.CaptureFixture[str]
) -> None:
    import requests

    registry, inference = stack
    url = inference.http_url

    def post(token: str, model: str, rows: int, binary: bool = False) -> requests.Response:
        body, headers = rest_body(rows, binary)
        headers["Authorization"] = f"Bearer {token}"
        return requests.post(f"{url}/v2/models/{model}/infer", data=body, headers=headers, timeout=30)

    # A token limited to digits-*: refused on the other model (each refusal spends one of its burst of 4, as on
    # gRPC), for metadata as for inference.
    reply = requests.get(f"{url}/v2/models/other-mlp", headers={"Authorization": "Bearer webapp-token"}, timeout=10)
    assert reply.status_code == 403 and "may not read model 'other-mlp'" in reply.json()["error"]
    denied = post("webapp-token", "other-mlp", 2)
    assert denied.status_code == 403 and "may not read model 'other-mlp'" in denied.json()["error"]
    assert post("webapp-token", "digits-mlp", 2).status_code == 200
    assert post("webapp-token", "digits-mlp", 3, binary=True).status_code == 200
    limited = post("webapp-token", "digits-mlp", 4)
    assert limited.status_code == 429 and "rate limit of 0.5 calls/s" in limited.json()["error"]
    assert limited.headers["Retry-After"] in ("1", "2"), limited.headers
    time.sleep(int(limited.headers["Retry-After"]))
    assert post("webapp-token", "digits-mlp", 5).status_code == 200

    # A quota of 3 calls a day: the fourth is 429 with a JSON message and the wait until the quota renews.
    for rows in (1, 2, 3):
        assert post("metered-token", "other-mlp", rows, binary=rows == 2).status_code == 200
    spent = post("metered-token", "other-mlp", 1)
    assert spent.status_code == 429 and "quota of 3 calls per 86400s" in spent.json()["error"]
    assert int(spent.headers["Retry-After"]) > 60

    # One token over both doors: one usage row, counted exactly.
    with grpc.insecure_channel(inference.address) as channel:
        stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        stub.ModelInfer(infer_request("digits-mlp", 2), metadata=[("authorization", "Bearer both-token")])
    assert post("both-token", "digits-mlp", 3, binary=True).status_code == 200
    assert post("both-token", "digits-mlp", 4).status_code == 200

    expected = {
        ("webapp", "digits-mlp"): (3, 10),
        ("metered", "other-mlp"): (3, 6),
        ("both", "digits-mlp"): (3, 9),
    }
    assert_usage_settles(registry, inference, capsys, expected)
