"""Prometheus helpers and the /metrics endpoint (a real HTTP server on a free loopback port)."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client import REGISTRY

from aiaas_services.runtime import metrics
from aiaas_services.runtime.settings import ServiceSettings


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_job_transitions_move_one_job_between_states() -> None:
    before = {state: sample("aiaas_jobs", {"kind": "unit", "state": state}) for state in ("QUEUED", "RUNNING")}
    metrics.record_job_transition("unit", None, "QUEUED")
    metrics.record_job_transition("unit", "QUEUED", "RUNNING")
    assert sample("aiaas_jobs", {"kind": "unit", "state": "QUEUED"}) == before["QUEUED"]
    assert sample("aiaas_jobs", {"kind": "unit", "state": "RUNNING"}) == before["RUNNING"] + 1


def test_artifact_bytes() -> None:
    before = sample("aiaas_artifact_bytes_total", {"direction": "upload"})
    metrics.add_artifact_bytes("upload", 1234)
    assert sample("aiaas_artifact_bytes_total", {"direction": "upload"}) == before + 1234


def test_endpoint_is_off_by_default_and_serves_when_asked(tmp_path: Path) -> None:
    stop = metrics.start_metrics_server(ServiceSettings())
    stop()
    assert not metrics.metrics_enabled()
    port_file = tmp_path / "svc.port"
    stop = metrics.start_metrics_server(ServiceSettings(metrics_port=0, port_file=str(port_file)))
    try:
        assert metrics.metrics_enabled()
        port = int(Path(str(port_file) + ".metrics").read_text())
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert "aiaas_rpc_server_duration_seconds" in body
        assert "aiaas_artifact_bytes_total" in body
    finally:
        stop()
    assert not metrics.metrics_enabled()
