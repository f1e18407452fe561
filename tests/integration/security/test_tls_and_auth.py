"""TLS, mutual TLS, bearer-token scopes and the audit log, on a real service process."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aiaas.oip.v2 import grpc_service_pb2, grpc_service_pb2_grpc
from aiaas.training.v1 import training_pb2, training_pb2_grpc
from aiaas_services.runtime.auth import required_scope
from tests.support.certs import make_certs, write_tokens
from tests.support.processes import start_inference, start_service, wait_model_ready


def test_scopes_by_method_name() -> None:
    assert required_scope("/grpc.health.v1.Health/Check") is None
    assert required_scope("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo") is None
    assert required_scope("/inference.GRPCInferenceService/ModelInfer") == "read"
    assert required_scope("/aiaas.registry.v1.RegistryService/GetVersion") == "read"
    assert required_scope("/aiaas.registry.v1.RegistryService/DownloadArtifact") == "read"
    assert required_scope("/aiaas.registry.v1.RegistryService/SetAlias") == "write"
    assert required_scope("/aiaas.training.v1.TrainingService/StartTrainingJob") == "write"
    assert required_scope("/inference.GRPCInferenceService/RepositoryModelLoad") == "write"


def _tls_env(certs_dir: Path, mutual: bool) -> tuple[dict[str, str], object]:
    certs = make_certs(certs_dir)
    env = {"AIAAS_TLS_CERT": str(certs.server_cert), "AIAAS_TLS_KEY": str(certs.server_key)}
    if mutual:
        env["AIAAS_TLS_CLIENT_CA"] = str(certs.ca)
    return env, certs


def _health(channel: grpc.Channel) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mtls"])
def test_tls_server(tmp_path: Path, mutual: bool) -> None:
    env, certs = _tls_env(tmp_path / "certs", mutual)
    service = start_service("inference", tmp_path / "home", env=env, health_tls=certs)  # type: ignore[arg-type]
    try:
        ca = certs.ca.read_bytes()  # type: ignore[attr-defined]
        client_pair = (certs.client_key.read_bytes(), certs.client_cert.read_bytes())  # type: ignore[attr-defined]
        with grpc.secure_channel(service.address, grpc.ssl_channel_credentials(ca, *client_pair)) as channel:
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING

        # Plaintext never works against a TLS port.
        with grpc.insecure_channel(service.address) as channel, pytest.raises(grpc.RpcError):
            _health(channel)

        # Without a client certificate, mutual TLS refuses the handshake; plain TLS accepts it.
        with grpc.secure_channel(service.address, grpc.ssl_channel_credentials(ca)) as channel:
            if mutual:
                with pytest.raises(grpc.RpcError) as refused:
                    _health(channel)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            else:
                assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
    finally:
        assert service.terminate() == 0


def test_bearer_tokens_scopes_and_audit(tmp_path: Path) -> None:
    tokens = write_tokens(
        tmp_path / "tokens.json",
        {
            "reader-token": {"principal": "dashboard", "scopes": ["read"]},
            "writer-token": {"principal": "ci-bot", "scopes": ["read", "write"]},
        },
    )
    home = tmp_path / "home"
    service = start_service("training", home, env={"AIAAS_AUTH_TOKENS_FILE": str(tokens)})
    try:
        with grpc.insecure_channel(service.address) as channel:
            # Health stays open for probes.
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
            stub = training_pb2_grpc.TrainingServiceStub(channel)

            def call_get(token: str | None) -> grpc.StatusCode:
                metadata = [("authorization", f"Bearer {token}")] if token else []
                try:
                    stub.GetJob(training_pb2.GetJobRequest(job_id="nope"), metadata=metadata, timeout=10)
                except grpc.RpcError as exc:
                    return exc.code()
                return grpc.StatusCode.OK

            def call_cancel(token: str) -> grpc.RpcError:
                with pytest.raises(grpc.RpcError) as info:
                    stub.CancelJob(
                        training_pb2.CancelJobRequest(job_id="nope"),
                        metadata=[("authorization", f"Bearer {token}")],
                        timeout=10,
                    )
                return info.value

            assert call_get(None) == grpc.StatusCode.UNAUTHENTICATED
            assert call_get("made-up") == grpc.StatusCode.UNAUTHENTICATED
            # Past authentication, the service itself answers (not UNAUTHENTICATED/PERMISSION_DENIED).
            assert call_get("reader-token") not in (
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.PERMISSION_DENIED,
            )
            denied = call_cancel("reader-token")
            assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "write" in (denied.details() or "")
            allowed = call_cancel("writer-token")
            assert allowed.code() not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
    finally:
        assert service.terminate() == 0

    entries = [json.loads(line) for line in (home / "audit" / "training.jsonl").read_text().splitlines()]
    writes = [e for e in entries if e["method"].endswith("/CancelJob")]
    assert [e["principal"] for e in writes] == ["ci-bot"], entries
    assert all(e["time"] > 0 and e["code"] for e in writes)


def test_inference_reads_need_only_read_scope(tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens.json", {"r": {"principal": "app", "scopes": ["read"]}})
    service = start_service("inference", tmp_path / "home", env={"AIAAS_AUTH_TOKENS_FILE": str(tokens)})
    try:
        with grpc.insecure_channel(service.address) as channel:
            stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
            live = stub.ServerLive(grpc_service_pb2.ServerLiveRequest(), metadata=[("authorization", "Bearer r")])
            assert live.live
            with pytest.raises(grpc.RpcError) as info:
                stub.ServerLive(grpc_service_pb2.ServerLiveRequest())
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        assert service.terminate() == 0


def test_services_present_their_token_to_an_authenticated_registry(tmp_path: Path) -> None:
    """Inference reads models from a registry that demands tokens, using its `service_token`."""
    from aiaas.client.registry import ONNX, SyncRegistryClient
    from aiaas_services.inference.examples import export_mlp

    tokens = write_tokens(
        tmp_path / "tokens.json",
        {
            "deployer": {"principal": "deployer", "scopes": ["read", "write"]},
            "inference-svc": {"principal": "inference", "scopes": ["read"]},
        },
    )
    registry = start_service("registry", tmp_path / "registry", env={"AIAAS_AUTH_TOKENS_FILE": str(tokens)})
    served = None
    try:
        model = export_mlp(tmp_path / "m.onnx", seed=4)
        with SyncRegistryClient(
            registry.address, actor="deployer", metadata=[("authorization", "Bearer deployer")]
        ) as client:
            version = client.push("secured-mlp", {"model.onnx": model}, format=ONNX, variant="fp32")
            client.set_alias("secured-mlp", "production", version.version)
        served = start_inference(
            tmp_path / "inference", registry.address, "secured-mlp", {"AIAAS_SERVICE_TOKEN": "inference-svc"}
        )
        wait_model_ready(served, "secured-mlp", 60)
        audit = (tmp_path / "registry" / "audit" / "registry.jsonl").read_text()
        assert '"principal": "deployer"' in audit and "SetAlias" in audit
    finally:
        if served is not None:
            served.terminate()
        registry.terminate()


def test_registry_upload_size_limit(tmp_path: Path) -> None:
    """Uploads over AIAAS_REGISTRY_MAX_ARTIFACT_BYTES are refused (inline in CreateVersion, or streamed)
    and leave nothing."""
    from aiaas.client.registry import INLINE_BYTES, SyncRegistryClient

    registry = start_service("registry", tmp_path / "registry", env={"AIAAS_REGISTRY_MAX_ARTIFACT_BYTES": "4096"})
    try:
        big = tmp_path / "big.bin"
        big.write_bytes(b"x" * 10_000)
        small = tmp_path / "small.bin"
        small.write_bytes(b"y" * 100)
        with SyncRegistryClient(registry.address, actor="t") as client:
            for inline_bytes in (INLINE_BYTES, 0):  # 0: every file is streamed
                with pytest.raises(grpc.RpcError) as info:
                    client.push("limited", {"blob.bin": big}, inline_bytes=inline_bytes)
                assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "4096" in (info.value.details() or "")
                ok = client.push("limited", {"blob.bin": small}, inline_bytes=inline_bytes)
                assert [a.size_bytes for a in ok.artifacts] == [100]
        leftovers = [p for p in (tmp_path / "registry" / "registry" / "blobs").rglob("*") if p.is_file()]
        assert len(leftovers) == 1, leftovers
    finally:
        registry.terminate()
