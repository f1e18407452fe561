"""Fixtures: one registry process per metadata backend (SQLite, PostgreSQL), shared by the session.

PostgreSQL comes from AIAAS_TEST_POSTGRES_URL when set, else a throwaway cluster started here. Without
PostgreSQL the postgres cases skip locally but FAIL in CI (env CI=true).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from moto.server import ThreadedMotoServer

from aiaas.client.registry import RegistryClient
from tests.integration.registry.postgres import create_database, find_pg_bin, start_cluster
from tests.support.processes import ServiceProcess, start_service

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """An S3-compatible endpoint (moto's server on loopback), one per test module."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server URL (database 'postgres')."""
    given = os.environ.get("AIAAS_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    if find_pg_bin() is None:
        message = "PostgreSQL not installed (run .ci/install-system.sh) and AIAAS_TEST_POSTGRES_URL not set"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    cluster = start_cluster()
    try:
        yield cluster.url()
    finally:
        cluster.stop()


def registry_env(backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment selecting a backend; a fresh PostgreSQL database per call."""
    env = {"AIAAS_REGISTRY_WATCH_POLL_SECONDS": "0.5", "OTEL_TRACES_EXPORTER": "none"}
    if backend == "postgres":
        server = request.getfixturevalue("postgres_server")
        env["AIAAS_REGISTRY_DATABASE_URL"] = create_database(server)
    return env


@pytest.fixture(scope="session", params=BACKENDS)
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A registry process on one backend, shared by the tests of that backend."""
    backend = request.param
    home = tmp_path_factory.mktemp(f"registry-{backend}")
    service = start_service("registry", home, env=registry_env(backend, request))
    service.env["backend"] = backend
    yield service
    service.terminate()


@pytest.fixture
async def client(registry: ServiceProcess) -> AsyncIterator[RegistryClient]:
    """An async client on a fresh channel to the shared registry."""
    async with grpc.aio.insecure_channel(
        registry.address, options=[("grpc.max_receive_message_length", 64 << 20)]
    ) as channel:
        yield RegistryClient(channel, actor="tester")


@pytest.fixture
def model_name() -> str:
    """A model name no other test uses."""
    return f"m-{uuid.uuid4().hex[:10]}"


def blob_dir(service: ServiceProcess) -> Path:
    """The registry's local blob folder."""
    return service.home / "registry" / "blobs"
