# mypy: disable-error-code="arg-type"
# (requests types `json=` as JsonType, which nested dict literals of mixed values do not narrow to)
"""Serve what is deployed: with a registry and no model list, every model with alias `production` is served,
found from the registry's events (alias set -> served within seconds, alias deleted -> unloaded), no restart."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import requests

from aiaas.client.registry import ONNX, RegistryClient
from aiaas_services.inference.examples import export_mlp
from tests.integration.inference.test_registry_hot_swap import registry_call
from tests.support.processes import ServiceProcess, start_service

BODY = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.25] * 64}]}


def wait_for(condition: Callable[[], bool], seconds: float, what: str, service: ServiceProcess) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"{what} not within {seconds}s:\n{service.log()[-3000:]}"
        time.sleep(0.1)
    return time.monotonic() - started


def test_alias_set_serves_and_alias_delete_unloads_without_restart(registry_process: ServiceProcess, tmp_path) -> None:  # type: ignore[no-untyped-def]
    early = export_mlp(tmp_path / "early.onnx", seed=11)
    late = export_mlp(tmp_path / "late.onnx", seed=12)
    never = export_mlp(tmp_path / "never.onnx", seed=13)

    async def before(client: RegistryClient) -> None:
        version = await client.push("deployed-early", {"model.onnx": early}, format=ONNX, variant="fp32")
        await client.set_alias("deployed-early", "production", version.version)
        await client.push("deployed-never", {"model.onnx": never}, format=ONNX, variant="fp32")  # no alias

    registry_call(registry_process.address, before)
    service = start_service(
        "inference", tmp_path / "inference", env={"AIAAS_INFERENCE_REGISTRY_TARGET": registry_process.address}
    )
    url = service.http_url

    def ready(name: str) -> bool:
        return requests.get(f"{url}/v2/models/{name}/ready", timeout=5).status_code == 200

    try:
        wait_for(lambda: ready("deployed-early"), 60, "the model aliased before start-up", service)
        assert requests.post(f"{url}/v2/models/deployed-early/infer", json=BODY, timeout=5).status_code == 200
        assert requests.get(f"{url}/v2/models/deployed-never/ready", timeout=5).status_code == 404

        async def deploy(client: RegistryClient) -> None:
            version = await client.push("deployed-late", {"model.onnx": late}, format=ONNX, variant="fp32")
            await client.set_alias("deployed-late", "production", version.version)

        registry_call(registry_process.address, deploy)
        took = wait_for(lambda: ready("deployed-late"), 30, "alias set after start-up", service)
        reply = requests.post(f"{url}/v2/models/deployed-late/infer", json=BODY, timeout=5)
        assert reply.status_code == 200 and took < 30
        out = np.asarray(reply.json()["outputs"][0]["data"], np.float32)
        assert out.shape == (10,)

        registry_call(registry_process.address, lambda c: c.delete_alias("deployed-early", "production"))
        wait_for(lambda: not ready("deployed-early"), 30, "unload after the alias was deleted", service)
        reply = requests.post(f"{url}/v2/models/deployed-early/infer", json=BODY, timeout=5)
        assert reply.status_code == 404
        assert ready("deployed-late")  # the other model is untouched
        assert service.process.poll() is None
    finally:
        assert service.terminate() == 0
