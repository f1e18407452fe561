"""Wires the registry (database, blob store, servicer) into the shared runtime."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import grpc

from aiaas.registry.v1 import registry_pb2, registry_pb2_grpc
from aiaas.usage.v1 import usage_pb2, usage_pb2_grpc
from aiaas_services.registry import db
from aiaas_services.registry.blobs import BlobStore, open_blob_store
from aiaas_services.registry.catalog import Registry
from aiaas_services.registry.encryption import EncryptedBlobStore, check_unencrypted_store
from aiaas_services.registry.keyring import Keyring
from aiaas_services.registry.servicer import RegistryServicer
from aiaas_services.registry.settings import RegistrySettings
from aiaas_services.registry.store import RegistryStore
from aiaas_services.registry.usage_servicer import UsageServicer

logger = logging.getLogger(__name__)


def build_registry(settings: RegistrySettings) -> Registry:
    """The registry's store and blob store as the settings choose them (no migrations run yet)."""
    data = settings.home_path / "registry"
    data.mkdir(parents=True, exist_ok=True)
    url = settings.database_url or db.sqlite_url(data / "registry.db")
    engine = db.create_db_engine(url, pool_size=settings.db_threads)
    blobs = open_blobs(settings, data)
    return Registry(
        RegistryStore(engine),
        blobs,
        settings.db_threads,
        settings.watch_poll_seconds,
        settings.verify_reads,
        settings.max_artifact_bytes,
    )


def open_blobs(settings: RegistrySettings, data: Path) -> BlobStore:
    """The blob store, encrypted at rest when a keyring is configured (EncryptionConfigError if it cannot work)."""
    blobs = open_blob_store(
        settings.blob_store, data / "blobs", settings.s3_endpoint_url, settings.s3_region, settings.s3_part_size
    )
    keyring = Keyring.from_settings(settings.encryption_key_file, settings.encryption_keys)
    if keyring is None:
        check_unencrypted_store(blobs)
        return blobs
    logger.info("registry blobs encrypted at rest (primary key %s)", keyring.primary)
    return EncryptedBlobStore(blobs, keyring)


class RegistryApp:
    """The registry service as the runtime sees it."""

    def __init__(self, settings: RegistrySettings) -> None:
        self.settings = settings
        self.registry = build_registry(settings)

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        registry_pb2_grpc.add_RegistryServiceServicer_to_server(RegistryServicer(self.registry), server)
        usage_pb2_grpc.add_UsageServiceServicer_to_server(UsageServicer(self.registry), server)
        return [
            registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name,
            usage_pb2.DESCRIPTOR.services_by_name["UsageService"].full_name,
        ]

    async def start(self) -> None:
        """Apply migrations and remove partial uploads a crash left, before health turns SERVING."""
        await self.registry.run(db.migrate, self.registry.store.engine)
        await self.registry.clean_start()
        logger.info("registry database %s ready", self.registry.store.engine.url.render_as_string(hide_password=True))

    async def drain(self) -> None:
        """Before the server stops: end watch streams so they do not hold the grace period.

        Called by the runtime when it supports a drain step; ``close`` calls it too.
        """
        await self.registry.drain()

    async def close(self) -> None:
        """Stop the threads and close database connections."""
        await self.registry.drain()
        self.registry.close()
        self.registry.store.engine.dispose()
