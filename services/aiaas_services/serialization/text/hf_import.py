"""Register a vetted Hugging Face folder as a checkpoint of format HF (one artifact per file).

The version is created PENDING with every file as a required artifact, the files are uploaded, and only
then is it set READY; a failed upload sets it FAILED, so nothing half-registered can be served or exported.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from aiaas.client.registry import RegistryClient
from aiaas.wire import HF
from aiaas_services.runtime.errors import InvalidArgument
from aiaas_services.serialization.records import Imported, ImportHeader
from aiaas_services.serialization.registration import register_upload
from aiaas_services.serialization.settings import SerializationSettings
from aiaas_services.textmodel import signature
from aiaas_services.textmodel.folder import TASKS, FolderRefused, HfFolder, unpack, vet

__all__ = ["TASKS", "import_folder"]

MEDIA_TYPES = {".json": "application/json", ".txt": "text/plain", ".safetensors": "application/octet-stream"}


async def import_folder(
    registry: RegistryClient, settings: SerializationSettings, header: ImportHeader, archive: Path, dest: Path
) -> Imported:
    """Unpack, vet and register the uploaded folder; InvalidArgument says why a folder is refused."""
    dest.mkdir(parents=True)

    def check() -> HfFolder:
        kept, skipped = unpack(archive, dest, settings.max_import_bytes, settings.max_import_bytes)
        return vet(dest, kept, skipped, header.task)

    try:
        folder = await asyncio.to_thread(check)
    except FolderRefused as exc:
        raise InvalidArgument(f"folder refused: {exc}") from exc
    digest = await asyncio.to_thread(_digest, archive)
    info = signature.of_task(header.task, folder.hidden_size, len(folder.labels))
    tags = dict(header.tags) | {
        "task": header.task,
        "imported": "true",
        "model_type": folder.model_type,
        "architecture": folder.architecture,
        "max_positions": str(folder.max_positions),
    }
    if folder.skipped:
        tags["skipped_files"] = ",".join(folder.skipped)[:500]
    ref = await register_upload(
        registry,
        header.model_name,
        [(name, dest / name, MEDIA_TYPES.get(Path(name).suffix, "application/octet-stream")) for name in folder.files],
        format=HF,
        variant="",
        info=info,
        tags=tags,
        description=header.description or f"imported Hugging Face {folder.architecture or folder.model_type}",
        step="registering the imported folder",
        export_settings={"source": "hf-folder", "upload_sha256": digest},
    )
    return Imported(ref, info.opset, info.inputs, info.outputs)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
