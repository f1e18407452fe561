"""Register a vetted Hugging Face folder as a checkpoint of format HF (one artifact per file).

The version is created PENDING with every file as a required artifact, the files are uploaded, and only
then is it set READY; a failed upload sets it FAILED, so nothing half-registered can be served or exported.
With calibration sentences in the header, ``reference.json`` (drift reference statistics, see
serialization/reference.py) is registered with the files.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

from aiaas.client.registry import RegistryClient
from aiaas.wire import HF
from aiaas_services.runtime.errors import InvalidArgument
from aiaas_services.serialization import reference
from aiaas_services.serialization.records import Imported, ImportHeader
from aiaas_services.serialization.registration import register_upload
from aiaas_services.serialization.settings import SerializationSettings
from aiaas_services.serialization.text import calibration
from aiaas_services.textmodel import signature
from aiaas_services.textmodel.folder import TASKS, FolderRefused, HfFolder, unpack, vet

__all__ = ["TASKS", "calibration_sentences", "import_folder"]

MEDIA_TYPES = {".json": "application/json", ".txt": "text/plain", ".safetensors": "application/octet-stream"}
REFERENCE_ARTIFACT = "reference.json"


def calibration_sentences(payload: bytes) -> tuple[str, ...]:
    """The header's calibration sentences: JSON lines (``{"text": ...}``) when the first line is a JSON
    object, else one sentence per line. ``calibration.SentencesRefused`` says what to fix."""
    jsonl = payload.lstrip()[:1] == b"{"
    return calibration.parse(payload, "calibration_text.jsonl" if jsonl else "calibration_text")


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
    files = [
        (name, dest / name, MEDIA_TYPES.get(Path(name).suffix, "application/octet-stream")) for name in folder.files
    ]
    rows = 0
    if header.calibration_text:
        target = dest.parent / REFERENCE_ARTIFACT
        rows = await _reference(folder, header, target)
        files = [f for f in files if f[0] != REFERENCE_ARTIFACT] + [(REFERENCE_ARTIFACT, target, "application/json")]
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
        files,
        format=HF,
        variant="",
        info=info,
        tags=tags,
        description=header.description or f"imported Hugging Face {folder.architecture or folder.model_type}",
        step="registering the imported folder",
        export_settings={"source": "hf-folder", "upload_sha256": digest},
    )
    return Imported(ref, info.opset, info.inputs, info.outputs, rows)


async def _reference(folder: HfFolder, header: ImportHeader, target: Path) -> int:
    """Write the reference statistics of the header's calibration sentences to ``target``; the rows used."""
    try:
        texts = calibration_sentences(header.calibration_text)
        stats, rows = await asyncio.to_thread(
            reference.folder_reference, folder.path, header.task, folder.max_positions, texts
        )
    except (calibration.SentencesRefused, FolderRefused) as exc:
        raise InvalidArgument(f"calibration sentences refused: {exc}") from exc
    await asyncio.to_thread(target.write_text, json.dumps(stats))
    return rows


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
