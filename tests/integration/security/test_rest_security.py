# mypy: disable-error-code="arg-type"
# (requests types `json=` as JsonType, which nested dict literals of mixed values do not narrow to)
"""The REST front door under the service's security settings: TLS / mutual TLS, bearer scopes, audit, body limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from aiaas_services.inference.examples import build_repository
from tests.support.certs import make_certs
from tests.support.processes import start_service


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mtls"])
def test_rest_speaks_tls_with_the_grpc_certificates(tmp_path: Path, mutual: bool) -> None:
    certs = make_certs(tmp_path / "certs")
    env = {"AIAAS_TLS_CERT": str(certs.server_cert), "AIAAS_TLS_KEY": str(certs.server_key)}
    if mutual:
        env["AIAAS_TLS_CLIENT_CA"] = str(certs.ca)
    service = start_service("inference", tmp_path / "home", env=env, health_tls=certs)
    try:
        url = f"https://localhost:{service.http_port}/v2/health/live"
        client_pair = (str(certs.client_cert), str(certs.client_key))
        assert requests.get(url, verify=str(certs.ca), cert=client_pair, timeout=5).status_code == 200
        with pytest.raises(requests.exceptions.ConnectionError):  # plaintext HTTP against the TLS port
            requests.get(url.replace("https", "http"), timeout=5)
        if mutual:  # no client certificate: refused (TLS 1.3 reports it after the handshake, as a disconnect)
            with pytest.raises(requests.exceptions.ConnectionError):
                requests.get(url, verify=str(certs.ca), timeout=5)
        else:
            assert requests.get(url, verify=str(certs.ca), timeout=5).status_code == 200
    finally:
        assert service.terminate() == 0


def test_rest_bearer_scopes_audit_and_body_limit(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        json.dumps(
            {
                "reader": {"principal": "app", "scopes": ["read"]},
                "admin": {"principal": "ops", "scopes": ["read", "write"]},
            }
        )
    )
    repository = build_repository(tmp_path / "repo", ("mlp",))
    home = tmp_path / "home"
    env = {
        "AIAAS_AUTH_TOKENS_FILE": str(tokens),
        "AIAAS_INFERENCE_MODEL_REPOSITORY": str(repository),
        "AIAAS_INFERENCE_MAX_MESSAGE_BYTES": "65536",
    }
    service = start_service("inference", home, env=env)
    url = service.http_url
    read = {"Authorization": "Bearer reader"}
    body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]}
    try:
        assert requests.get(f"{url}/v2/health/ready", timeout=5).status_code == 200  # probes stay open
        reply = requests.post(f"{url}/v2/models/mlp/infer", json=body, timeout=5)
        assert reply.status_code == 401 and "Authorization: Bearer" in reply.json()["error"]
        reply = requests.post(f"{url}/v2/models/mlp/infer", json=body, headers={"Authorization": "Bearer x"}, timeout=5)
        assert reply.status_code == 401 and "unknown bearer token" in reply.json()["error"]
        assert requests.post(f"{url}/v2/models/mlp/infer", json=body, headers=read, timeout=5).status_code == 200
        reply = requests.post(f"{url}/v2/repository/models/mlp/unload", headers=read, timeout=5)
        assert reply.status_code == 403 and "'write' scope" in reply.json()["error"]
        admin = {"Authorization": "Bearer admin"}
        assert requests.post(f"{url}/v2/repository/models/mlp/unload", headers=admin, timeout=30).status_code == 200
        reply = requests.post(f"{url}/v2/models/mlp/infer", json=body, headers=read, timeout=5)
        assert reply.status_code == 503 and "unloaded" in reply.json()["error"]
        assert requests.post(f"{url}/v2/repository/models/mlp/load", headers=admin, timeout=60).status_code == 200
        big = {"inputs": [{"name": "input", "shape": [400, 64], "datatype": "FP32", "data": [0.5] * 25600}]}
        reply = requests.post(f"{url}/v2/models/mlp/infer", json=big, headers=read, timeout=5)
        assert reply.status_code == 413 and "limit of 65536" in reply.json()["error"]
        assert requests.post(f"{url}/v2/models/mlp/infer", json=body, headers=read, timeout=5).status_code == 200
    finally:
        assert service.terminate() == 0
    entries = [json.loads(line) for line in (home / "audit" / "inference.jsonl").read_text().splitlines()]
    rest = [(e["principal"], e["method"], e["code"]) for e in entries if e["method"].startswith("POST /v2")]
    assert rest == [
        ("ops", "POST /v2/repository/models/{name}/unload", "OK"),
        ("ops", "POST /v2/repository/models/{name}/load", "OK"),
    ]
