"""The shared service config: targets naming several replicas, round_robin, health checking, retries."""

from __future__ import annotations

import asyncio
import collections
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from aiaas.client.channels import aio_channel, balanced, dial, resolve_target, service_config


def test_several_targets_become_one_static_ipv4_list() -> None:
    assert resolve_target("127.0.0.1:8001") == "127.0.0.1:8001"
    assert resolve_target("dns:///inference:8001") == "dns:///inference:8001"
    assert resolve_target("127.0.0.1:1, 127.0.0.2:2") == "ipv4:127.0.0.1:1,127.0.0.2:2"
    assert resolve_target(["127.0.0.1:1", "localhost:2"]).startswith("ipv4:127.0.0.1:1,127.0.0.1:2")
    assert resolve_target("[::1]:1,[::1]:2") == "ipv6:[::1]:1,[::1]:2"
    with pytest.raises(ValueError, match="host:port"):
        resolve_target("127.0.0.1:1,nowhere")
    with pytest.raises(ValueError, match="scheme"):
        resolve_target("dns:///a:1,127.0.0.1:2")


def test_only_targets_naming_several_replicas_are_health_checked() -> None:
    assert balanced("a:1,b:2") and balanced("dns:///inference:8001") and not balanced("a:1")
    assert "healthCheckConfig" not in json.loads(dict(dial("127.0.0.1:1")[1])["grpc.service_config"])
    config = json.loads(dict(dial("127.0.0.1:1,127.0.0.1:2")[1])["grpc.service_config"])
    assert config["healthCheckConfig"] == {"serviceName": ""}
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    retried = {(n["service"], n["method"]) for n in service_config()["methodConfig"][0]["name"]}
    assert ("inference.GRPCInferenceService", "ModelInfer") in retried
    assert ("inference.GRPCInferenceService", "RepositoryModelLoad") not in retried


async def _replica(name: str) -> tuple[grpc.aio.Server, HealthServicer, int]:
    async def who(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return name.encode()

    server = grpc.aio.server()
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("t.T", {"Who": grpc.unary_unary_rpc_method_handler(who)})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    return server, health, port


async def test_round_robin_skips_a_replica_that_is_not_serving() -> None:
    (a, health_a, port_a), (b, _, port_b) = await _replica("a"), await _replica("b")
    channel = aio_channel(f"127.0.0.1:{port_a},127.0.0.1:{port_b}")
    who = channel.unary_unary("/t.T/Who")

    async def split(calls: int = 40) -> collections.Counter[bytes]:
        return collections.Counter([await who(b"", timeout=5, wait_for_ready=True) for _ in range(calls)])

    try:
        first = await split()  # the first calls may go to whichever subchannel connected first
        assert set(first) == {b"a", b"b"} and min(first.values()) >= 15, first
        await health_a.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        await asyncio.sleep(0.3)
        assert await split() == {b"b": 40}
        await health_a.set("", health_pb2.HealthCheckResponse.SERVING)
        await asyncio.sleep(0.3)
        assert (await split())[b"a"] >= 15
    finally:
        await channel.close()
        await a.stop(0)
        await b.stop(0)


def test_the_readme_service_config_for_raw_stubs_agrees_with_ours() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    snippet = readme.split("<!-- service-config -->\n```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)
    namespace["channel"].close()
    pasted, ours = json.loads(namespace["SERVICE_CONFIG"]), service_config()
    assert pasted["loadBalancingConfig"] == ours["loadBalancingConfig"]
    assert pasted["healthCheckConfig"] == ours["healthCheckConfig"]
    assert pasted["methodConfig"][0]["retryPolicy"] == ours["methodConfig"][0]["retryPolicy"]
    assert all(name in ours["methodConfig"][0]["name"] for name in pasted["methodConfig"][0]["name"])
