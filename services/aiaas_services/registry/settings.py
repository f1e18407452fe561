"""Settings of the registry service (env prefix AIAAS_REGISTRY_)."""

from __future__ import annotations

import dataclasses
import typing

from aiaas_services.runtime.settings import ServiceSettings, setting


@dataclasses.dataclass(frozen=True)
class RegistrySettings(ServiceSettings):
    """Registry service: models, versions, aliases, lineage and artifacts."""

    env_prefix: typing.ClassVar[str] = "AIAAS_REGISTRY_"
    service_name: typing.ClassVar[str] = "registry"

    port: int = setting(50051, "Port to listen on; 0 picks a free one (see port_file).")
    database_url: str = setting(
        "", "SQLAlchemy URL of the metadata database; empty = SQLite at <home>/registry/registry.db (WAL)."
    )
    blob_store: str = setting(
        "", "Where artifact bytes live: a folder path, or s3://bucket/prefix; empty = <home>/registry/blobs."
    )
    s3_endpoint_url: str = setting("", "S3 endpoint URL for an S3-compatible server (empty = AWS default).")
    s3_region: str = setting("us-east-1", "S3 region name.")
    max_artifact_bytes: int = setting(
        64 * 1024**3, "Largest artifact an upload may store (RESOURCE_EXHAUSTED beyond); 0 = no limit."
    )
    s3_part_size: int = setting(8 * 1024 * 1024, "Multipart upload part size in bytes (>= 5 MiB).")
    db_threads: int = setting(8, "Threads that run database and file work off the event loop.")
    watch_poll_seconds: float = setting(
        1.0, "How often an idle watcher re-reads the event table (catches writes of other replicas)."
    )
    verify_reads: bool = setting(
        True,
        "Hash the whole stored blob while serving a download, resumed ones too (the stream ends with DATA_LOSS "
        "on rot); off saves reading the skipped prefix of a resumed download.",
    )
    encryption_key_file: str = setting(
        "",
        "File of AES-256 key-encryption keys (base64, one a line; the first wraps new blobs' keys, the others only "
        "unwrap, during a rotation). Set = blobs encrypted at rest. Empty = encryption_keys, else off.",
    )
    encryption_keys: str = setting("", "The same keys inline, comma-separated (prefer the key file).")
